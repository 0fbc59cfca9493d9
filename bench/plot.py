"""The PNG of a bench run: one panel per benchmark, a bar per figure, bars met in green."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Panel:
    """One panel of :func:`plot_lines`: a line per series, ``{label: (sizes, values)}``."""

    title: str
    unit: str
    series: dict[str, tuple[Sequence[float], Sequence[float]]]
    log_y: bool = False
    """Else a linear y axis from 0, on which a cost that does not grow is a level line."""


def plot_lines(panels: Sequence[Panel], path: Path, title: str, x_label: str) -> Path:
    """Panels side by side, each a line per series against a log-scaled x axis."""
    fig = Canvas(figsize=(4 * len(panels), 3.6))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for axis, panel in zip(axes[0], panels, strict=True):
        for label, (xs, ys) in panel.series.items():
            axis.plot(xs, ys, marker="o", label=label)
            for x, y in zip(xs, ys, strict=True):
                axis.annotate(
                    f"{y:,.3g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points"
                )
        axis.set_xscale("log")
        if panel.log_y:
            axis.set_yscale("log")
        else:
            axis.set_ylim(bottom=0, top=axis.get_ylim()[1] * 1.1)
        axis.set_title(panel.title, loc="left", fontsize=10)
        axis.set_xlabel(x_label, fontsize=8)
        axis.set_ylabel(panel.unit, fontsize=8)
        axis.tick_params(labelsize=8)
        axis.grid(True, which="major", alpha=0.3)
        if len(panel.series) > 1:
            axis.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
