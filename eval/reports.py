"""The results table for the terminal and the JSON report."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from eval.calibration import Fitted
from eval.harness import ClosedResult, VariantResult
from eval.metrics import MISS_KINDS, RECALL_DEPTHS, Metrics

TABLE_WIDTH = 160
"""Columns the tables need: give the console at least this width."""


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def metrics_tables(results: Sequence[VariantResult]) -> list[Table]:
    """One table per (question set, split, source file breakdown): a row per variant, a
    column per metric."""
    panels = list(dict.fromkeys(r.title for r in results))
    return [_table(title, [r for r in results if r.title == title]) for title in panels]


def _table(title: str, rows: Sequence[VariantResult]) -> Table:
    first = rows[0].metrics
    caption = (
        f"{first.questions} questions: {first.answerable} answerable, "
        f"{first.unanswerable} unanswerable"
    )
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("variant", no_wrap=True)
    for column in (*(f"R@{k}" for k in RECALL_DEPTHS), "MRR", "acc", "top3", "EM", "F1"):
        table.add_column(column, justify="right")
    for column in ("abst P", "abst R", "false abst", "cite", "p50 ms", "p95 ms"):
        table.add_column(column, justify="right")
    for result in rows:
        m: Metrics = result.metrics
        table.add_row(
            result.variant,
            *(_number(m.recall[k]) for k in RECALL_DEPTHS),
            _number(m.mrr),
            _number(m.accuracy),
            _number(m.top3_accuracy),
            _number(m.exact_match),
            _number(m.f1),
            _number(m.abstention_precision),
            _number(m.abstention_recall),
            _number(m.false_abstention),
            _number(m.citation),
            _number(m.latency_p50_ms, 0),
            _number(m.latency_p95_ms, 0),
        )
    return table


def misses_table(results: Sequence[VariantResult]) -> Table:
    """Where the answerable questions without a right top answer went wrong: a row per
    question set and variant, each kind as a share of the answerable questions."""
    table = Table(
        title="answerable questions without a right top answer, by where it went wrong",
        caption="shares of the answerable questions; 'gold passage first': the reader's miss",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("set", no_wrap=True)
    table.add_column("variant", no_wrap=True)
    table.add_column("wrong", justify="right")
    for kind in MISS_KINDS:
        table.add_column(kind, justify="right")
    for result in results:
        misses = result.metrics.misses
        if misses is None:
            continue
        table.add_row(
            result.title,
            result.variant,
            _number(sum(misses.values())),
            *(_number(misses[kind]) for kind in MISS_KINDS),
        )
    return table


def closed_context_table(results: Sequence[ClosedResult]) -> Table:
    """The reader alone on each question's own paragraph: SQuAD EM and F1."""
    table = Table(title="closed context: the reader given the gold paragraph", box=box.SIMPLE_HEAD)
    table.add_column("set / split", no_wrap=True)
    for column in ("questions", "EM", "F1", "refused", "ms / question"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            f"{r.dataset} / {r.split}",
            str(r.questions),
            _number(r.exact_match),
            _number(r.f1),
            _number(r.refused),
            _number(r.latency_p50_ms, 1),
        )
    return table


def _result_record(result: VariantResult, with_questions: bool) -> dict[str, Any]:
    record: dict[str, Any] = {
        "dataset": result.dataset,
        "split": result.split,
        "source": result.source,
        "variant": result.variant,
        "metrics": dataclasses.asdict(result.metrics),
    }
    if with_questions:
        record["questions"] = [dataclasses.asdict(q) for q in result.questions]
    return record


def write_json(
    path: Path,
    results: Sequence[VariantResult],
    context: dict[str, Any],
    detailed_variants: Sequence[str] = (),
) -> Path:
    """Write the report: run context, every metrics row, and per-question detail for
    the variants named in ``detailed_variants``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **context,
        "results": [
            _result_record(r, r.variant in detailed_variants and r.source is None) for r in results
        ],
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def trade_off_table(fitted: Fitted) -> Table:
    """The abstention trade-off on the dev questions, with the fitted model as caption."""
    weights = ", ".join(f"{n} {w:+.2f}" for n, w in fitted.calibration.weights.items())
    table = Table(
        title=f"Calibration: threshold {fitted.calibration.threshold:.3f}",
        caption=f"logit = {fitted.calibration.bias:+.2f} + {weights}",
        box=box.SIMPLE_HEAD,
    )
    for column in ("threshold", "abst P", "abst R", "false abst"):
        table.add_column(column, justify="right")
    for point in [*fitted.curve, fitted.chosen]:
        style = "bold" if point is fitted.chosen else None
        table.add_row(
            f"{point.threshold:.3f}" + (" (chosen)" if point is fitted.chosen else ""),
            _number(point.abstention_precision),
            _number(point.abstention_recall),
            _number(point.false_abstention),
            style=style,
        )
    return table
