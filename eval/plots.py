"""PNG plots of a run: recall@k curves per variant and a reliability diagram of scores."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from eval.calibration import TradeOff
from eval.harness import VariantResult
from eval.metrics import ReliabilityBin, expected_calibration_error, recall_at_k


def recall_curves(results: Sequence[VariantResult], path: Path, depth: int = 10) -> Path:
    """One panel per (question set, split); recall@k for k = 1..depth, a line per variant."""
    panels = sorted({(r.dataset, r.split) for r in results})
    figure = Figure(figsize=(5 * len(panels), 4))
    axes = figure.subplots(1, len(panels), squeeze=False)
    ks = list(range(1, depth + 1))
    for axis, (dataset, split) in zip(axes[0], panels, strict=True):
        for result in (r for r in results if (r.dataset, r.split) == (dataset, split)):
            ranks = [q.judgement.gold_rank for q in result.questions if q.judgement.answerable]
            axis.plot(
                ks, [recall_at_k(ranks, k) or 0.0 for k in ks], marker="o", label=result.variant
            )
        axis.set(title=f"{dataset} ({split})", xlabel="k (passages)", ylabel="recall@k", xticks=ks)
        axis.set_ylim(0.0, 1.0)
        axis.grid(alpha=0.3)
        axis.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    return _save(figure, path)


def reliability_diagram(curves: Sequence[tuple[str, Sequence[ReliabilityBin]]], path: Path) -> Path:
    """Mean score against the share of right answers per score bin (diagonal = calibrated),
    with the number of answers per bin underneath."""
    figure = Figure(figsize=(5.5, 6.5))
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    width = 1.0 / max(len(curves), 1)
    for number, (name, bins) in enumerate(curves):
        filled = [b for b in bins if b.count]
        ece = expected_calibration_error(bins)
        label = f"{name} (ECE {ece:.3f})" if ece is not None else name
        top.plot(
            [b.mean_score for b in filled], [b.accuracy for b in filled], marker="o", label=label
        )
        bottom.bar(
            [b.low + (number + 0.5) * width * (b.high - b.low) for b in bins],
            [b.count for b in bins],
            width=width * (bins[0].high - bins[0].low),
            label=name,
        )
    top.set(ylabel="share of right answers", title="Reliability of answer scores")
    top.set_xlim(0.0, 1.0)
    top.set_ylim(0.0, 1.0)
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize="small")
    bottom.set(xlabel="answer score", ylabel="answers")
    bottom.grid(alpha=0.3)
    figure.tight_layout()
    return _save(figure, path)


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def abstention_trade_off(curve: Sequence[TradeOff], chosen: TradeOff, path: Path) -> Path:
    """Abstention precision, recall and false abstention against the threshold, on the
    dev questions the threshold was chosen on; the chosen threshold is marked."""
    figure = Figure(figsize=(6, 4))
    axis = figure.subplots()
    thresholds = [point.threshold for point in curve]
    for name, values in (
        ("abstention precision", [p.abstention_precision for p in curve]),
        ("abstention recall (unanswerable)", [p.abstention_recall for p in curve]),
        ("false abstention (answerable)", [p.false_abstention for p in curve]),
    ):
        axis.plot(thresholds, [float("nan") if v is None else v for v in values], label=name)
    axis.axvline(
        chosen.threshold, color="grey", linestyle="--", label=f"chosen {chosen.threshold:.3f}"
    )
    axis.set(xlabel="answer-score threshold", ylabel="share", title="Abstention trade-off (dev)")
    axis.set_ylim(0.0, 1.02)
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    figure.tight_layout()
    return _save(figure, path)
