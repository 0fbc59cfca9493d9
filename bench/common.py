"""What every benchmark shares: figures, timing helpers, the machine, and the report files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from rag.settings import PROJECT_ROOT, SHARED_DATA

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
NEWS_CSV = SHARED_DATA / "news" / "NewsArticles.csv"
SQUAD_JSON = SHARED_DATA / "squad" / "dev-v1.1.json"


@dataclass(frozen=True)
class Figure:
    """One measured number, with the bar it is held to (if any)."""

    bench: str
    name: str
    value: float
    unit: str
    bar: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class Report:
    """The figures of one ``python -m bench`` run and where it ran."""

    figures: list[Figure] = field(default_factory=list)
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    machine: dict[str, Any] = field(default_factory=lambda: machine())

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def table(self) -> Table:
        table = Table(title=f"bench · {self.machine['summary']}", show_lines=False)
        for column in ("bench", "figure", "value", "bar", "met", "note"):
            table.add_column(column, justify="right" if column == "value" else "left")
        for f in self.figures:
            met = "" if f.met is None else ("[green]yes[/green]" if f.met else "[red]no[/red]")
            table.add_row(f.bench, f.name, f"{f.value:,.3g} {f.unit}", f.bar, met, f.note)
        return table

    def markdown(self) -> str:
        """The table in Markdown, for the README's performance section."""
        lines = [
            f"Measured {self.started} on {self.machine['summary']}.",
            "",
            "| bench | figure | value | bar | met | note |",
            "|---|---|---:|---|---|---|",
        ]
        for f in self.figures:
            met = "" if f.met is None else ("yes" if f.met else "**no**")
            value = f"{f.value:,.3g} {f.unit}".strip()
            lines.append(f"| {f.bench} | {f.name} | {value} | {f.bar} | {met} | {f.note} |")
        return "\n".join(lines) + "\n"

    def write(self, directory: Path, console: Console) -> list[Path]:
        """Print the table; write ``bench.json``, ``bench.md`` and ``bench.png``."""
        from bench.plot import plot

        directory.mkdir(parents=True, exist_ok=True)
        console.print(self.table())
        data: dict[str, Any] = {"started": self.started, "machine": self.machine}
        data["figures"] = [asdict(f) for f in self.figures]
        json_path = directory / "bench.json"
        json_path.write_text(json.dumps(data, indent=2) + "\n")
        markdown_path = directory / "bench.md"
        markdown_path.write_text(self.markdown())
        png_path = plot(self.figures, directory / "bench.png", self.machine["summary"])
        console.print(f"wrote {json_path}, {markdown_path} and {png_path}")
        return [json_path, markdown_path, png_path]


def machine() -> dict[str, Any]:
    """CPU model, cores, memory and library versions (figures drift between machines).

    Versions come from package metadata: importing PyTorch here would start its thread
    pool before the encoder sets it up."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cores = os.cpu_count() or 0
    return {
        "summary": f"{cores} cores · {cpu} · {memory_gib:.0f} GiB",
        "cpu": cpu,
        "cores": cores,
        "memory_gib": round(memory_gib, 1),
        "python": platform.python_version(),
        **{name: version(name) for name in ("torch", "onnxruntime", "faiss-cpu", "numpy")},
        "load_average": os.getloadavg(),
    }


def timed(action: Callable[[], object]) -> float:
    """Seconds ``action`` took."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def latencies_ms(action: Callable[[], object], repeats: int, warm_up: int = 3) -> list[float]:
    """Milliseconds of ``repeats`` calls, after ``warm_up`` untimed ones."""
    for _ in range(warm_up):
        action()
    return [timed(action) * 1000 for _ in range(repeats)]


def p50(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def p95(values: Sequence[float]) -> float:
    if len(values) < 2:
        return float(values[0])
    return float(statistics.quantiles(values, n=100, method="inclusive")[94])


def ratio_figure(bench: str, name: str, value: float, floor: float, *, note: str = "") -> Figure:
    """A ratio held to ``value >= floor``."""
    return Figure(bench, name, value, "x", bar=f">= {floor:g}x", met=value >= floor, note=note)
