"""A whole ``rag eval`` run on our small question set: calibration, table, report, plots."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
from rich.console import Console

from eval.harness import VariantResult
from eval.run import SHARED_DATA, EvalOptions, Evaluation
from rag.reader.model import TRAINING_RECORD
from rag.settings import PROJECT_ROOT, Settings
from training.config import ReaderTrainConfig
from training.reader import _split

SHIFTS = SHARED_DATA / "squadshifts" / "new_wiki_v1.0.json"


def _small_sample(path: Path) -> Path:
    """Our question file cut to four answerable and two unanswerable questions a split."""
    records = [
        json.loads(line)
        for line in (PROJECT_ROOT / "eval" / "data" / "sample.jsonl").read_text().splitlines()
    ]
    kept = [
        r
        for split in ("dev", "test")
        for answerable, count in ((True, 4), (False, 2))
        for r in [r for r in records if r["split"] == split and r["answerable"] is answerable][
            :count
        ]
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return path


def test_calibrated_in_process_run_writes_the_report(tmp_path: Path) -> None:
    settings = Settings()
    calibration_path = tmp_path / "calibration.json"
    shutil.copy(settings.reader_calibration_path, calibration_path)
    options = EvalOptions(
        sets=("sample",),
        sample_path=_small_sample(tmp_path / "small.jsonl"),
        variants=("reader", "sentence-answerer"),
        calibrate=True,
        calibration_sets=("sample",),
        report_dir=tmp_path / "reports",
        cache_dir=tmp_path / "cache",
    )
    console = Console(record=True, width=200)
    results = Evaluation(
        options, settings.model_copy(update={"reader_calibration_path": calibration_path}), console
    ).run()

    assert [(r.dataset, r.split, r.variant) for r in results] == [
        ("sample", "dev", "reader"),
        ("sample", "test", "reader"),
        ("sample", "dev", "sentence-answerer"),
        ("sample", "test", "sentence-answerer"),
    ]
    assert all(r.metrics.citation == 1.0 for r in results)
    fitted = json.loads(calibration_path.read_text())
    assert fitted["provenance"]["fitted_on"]["sample"]["questions"] == 6
    dev = results[0].metrics
    # the threshold was chosen on exactly these dev questions, within the budget
    assert dev.false_abstention is not None and dev.false_abstention <= 0.05
    report = json.loads((tmp_path / "reports" / "eval-report.json").read_text())
    assert report["calibration"]["threshold"] == fitted["threshold"]
    assert len(report["results"]) == 4
    assert len(report["results"][0]["questions"]) == 6  # detail for the default variant
    for name in ("recall-at-k.png", "reliability.png", "abstention-trade-off.png"):
        assert (tmp_path / "reports" / name).stat().st_size > 0
    output = console.export_text()
    assert "sample / test" in output
    assert "by where it went wrong" in output
    for record in report["results"]:  # each answerable question is right or one kind of miss
        metrics = record["metrics"]
        assert metrics["accuracy"] + sum(metrics["misses"].values()) == pytest.approx(1.0)
        assert metrics["misses"]["refused"] == pytest.approx(metrics["false_abstention"])


def test_the_harness_runs_on_postgres_with_the_embedded_stores_results(
    tmp_path: Path, postgres_server: object
) -> None:
    from index.postgres.local import LocalPostgres

    assert isinstance(postgres_server, LocalPostgres)
    options = EvalOptions(
        sets=("sample",),
        sample_path=_small_sample(tmp_path / "small.jsonl"),
        variants=("reader",),
        report_dir=tmp_path / "reports",
        cache_dir=tmp_path / "cache",
    )
    console = Console(record=True, width=200)
    embedded = Evaluation(options, Settings(), console).run()
    on_postgres = Settings(store="postgres", database_url=postgres_server.url())
    first = Evaluation(options, on_postgres, console).run()
    again = Evaluation(options, on_postgres, console).run()  # reuses the database built

    def quality(results: list[VariantResult]) -> list[dict[str, object]]:
        return [
            {k: v for k, v in asdict(r.metrics).items() if not k.startswith("latency")}
            for r in results
        ]

    assert quality(first) == quality(embedded)
    assert quality(again) == quality(first)
    report = json.loads((tmp_path / "reports" / "eval-report.json").read_text())
    assert report["settings"]["store"] == "postgres"
    assert "database_url" not in report["settings"]  # it may hold a password


@pytest.mark.skipif(not SHIFTS.is_file(), reason=f"training data not found: {SHIFTS}")
def test_the_held_out_set_is_the_readers_dev_split_never_its_training_data(
    tmp_path: Path,
) -> None:
    # a continued run: its data order is seeded anew, its dev split is its base's
    config = ReaderTrainConfig(
        data_files=(str(SHIFTS),), base_model="unused", seed=14, split_seed=13
    )
    (tmp_path / TRAINING_RECORD).write_text(json.dumps({"config": asdict(config)}))
    settings = Settings().model_copy(update={"reader_path": tmp_path})
    held_out = Evaluation(EvalOptions(sets=("shifts",)), settings, Console()).question_set("shifts")

    train, dev = _split(config)
    asked = {example.id for example in held_out.examples}
    assert asked.isdisjoint(qa.id for qa in train)
    assert {qa.id for qa in dev} <= asked


@pytest.mark.skipif(not SHIFTS.is_file(), reason=f"training data not found: {SHIFTS}")
def test_the_held_out_set_is_asked_answerable_without_its_article_and_as_near_misses(
    tmp_path: Path,
) -> None:
    config = ReaderTrainConfig(data_files=(str(SHIFTS),), base_model="unused")
    (tmp_path / TRAINING_RECORD).write_text(json.dumps({"config": asdict(config)}))
    settings = Settings().model_copy(update={"reader_path": tmp_path})
    evaluation = Evaluation(EvalOptions(sets=("shifts",), limit=40), settings, Console())
    questions = evaluation.question_set("shifts")

    [(split, asked), (near, missed)] = evaluation.splits("shifts", questions, removal=True)
    assert (split, near) == ("dev", "dev near misses")
    answerable = {e.id: e for e in asked.examples if e.answerable}
    assert len(answerable) == 40 and len(asked.examples) == 80  # each also asked removed
    assert 0 < len(missed.examples) < 40 and not any(e.answerable for e in missed.examples)
    for example in missed.examples:
        original = answerable[example.id.removesuffix("#near-miss")]
        assert example.question != original.question and example.context == original.context
    assert evaluation.splits("shifts", questions) == [("dev", questions.select("dev", 40))]
