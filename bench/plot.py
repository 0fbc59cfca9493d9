"""The PNG of a bench run: one panel per benchmark, a bar per figure, bars met in green."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure as Canvas

from bench.common import Figure

COLOURS = {True: "tab:green", False: "tab:red", None: "tab:gray"}


def plot(figures: Sequence[Figure], path: Path, title: str) -> Path:
    """Horizontal bars, grouped by benchmark, labelled with value and unit."""
    benches = list(dict.fromkeys(f.bench for f in figures)) or ["(none)"]
    heights = [max(1, sum(f.bench == b for f in figures)) for b in benches]
    fig = Canvas(figsize=(9, 1.2 + 0.45 * sum(heights)))
    axes = fig.subplots(
        len(benches),
        1,
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for axis, bench in zip(axes[:, 0], benches, strict=True):
        rows = [f for f in figures if f.bench == bench]
        labels = [f"{f.name} ({f.unit})" for f in rows]
        bars = axis.barh(labels, [f.value for f in rows], color=[COLOURS[f.met] for f in rows])
        axis.bar_label(bars, labels=[f"{f.value:,.3g}" for f in rows], padding=3, fontsize=8)
        axis.set_xscale("symlog", linthresh=1)
        axis.invert_yaxis()
        axis.set_title(bench, loc="left", fontsize=10)
        axis.tick_params(axis="y", labelsize=8)
        axis.margins(x=0.15)
    fig.suptitle(f"bench · {title}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
