"""A tiny training run of the span reader, end to end, through the CLI.

It trains for a few steps on 50 real SQuADShifts examples (not to learn anything, but to
keep the training code honest): the run stops early, resumes from its checkpoint, and
ships a mostly int8 ONNX reader with its record and card that the service can load.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import onnx
import pytest
import torch
from typer.testing import CliRunner

from cli.commands import SQUADSHIFTS, app
from eval.datasets import QAExample
from rag.embedding import packaged_model_path
from rag.reader.model import SpanReader, window_spec
from rag.reader.spans import Reading
from rag.reader.windows import WindowSpec
from training.config import ReaderTrainConfig
from training.reader import (
    DevSet,
    _label,
    _removal_negatives,
    _swapped_negatives,
    evaluate,
    marginal_span_loss,
)

DATA = SQUADSHIFTS / "new_wiki_v1.0.json"


@pytest.mark.skipif(not DATA.is_file(), reason=f"training data not found: {DATA}")
def test_a_tiny_run_stops_resumes_and_ships_a_loadable_reader(tmp_path: Path) -> None:
    output, work = tmp_path / "reader", tmp_path / "work"
    arguments = [
        "train-reader",
        "--data",
        str(DATA),
        "--output",
        str(output),
        "--work-dir",
        str(work),
        "--max-train-examples",
        "50",
        "--max-dev-examples",
        "8",
        "--checkpoint-every",
        "2",
        "--eval-every",
        "100",
    ]
    runner = CliRunner()
    first = runner.invoke(app, [*arguments, "--stop-at", "2"])
    assert first.exit_code == 0, first.output
    events = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    planned = next(e for e in events if e["event"] == "data")["steps"]
    assert planned > 2 and next(e for e in events if e["event"] == "shipped")["step"] == 2

    other = runner.invoke(app, [*arguments, "--seed", "99"])
    assert other.exit_code == 2 and "another configuration" in other.output

    second = runner.invoke(app, arguments)
    assert second.exit_code == 0, second.output
    events = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "shipped"] == [2, planned]

    record = json.loads((output / "training.json").read_text())
    assert record["steps"] == planned
    assert ReaderTrainConfig.from_record(record["config"]).fingerprint() == record["fingerprint"]
    assert record["data_sha256"] == {DATA.name: record["data_sha256"][DATA.name]}
    assert len(record["data_sha256"][DATA.name]) == 64
    assert record["dev"]["questions"] == 8 and 0.0 <= record["dev"]["f1"] <= 1.0
    assert 0.0 <= record["dev"]["near_misses_refused"] <= 1.0
    card = (output / "README.md").read_text()
    assert "SQuAD v1.1 dev and the SQuADShifts NYT split were never used" in card
    assert f"{record['dev']['near_misses_refused']:.3f} |" in card
    assert window_spec(output).max_length == 256
    graph = onnx.load(str(output / "reader.onnx"))
    in_float = {
        n.name.removeprefix("/model/bert/encoder/")
        for n in graph.graph.node
        if n.op_type == "MatMul" and n.name.endswith("/output/dense/MatMul")
    }
    attention = {f"layer.{i}/attention/output/dense/MatMul" for i in range(6)}
    assert in_float == attention | {"layer.0/output/dense/MatMul"}
    # int8: query, key, value, feed-forward input of each of the 6 blocks, 5 feed-forward
    # output projections, the span head
    assert sum(n.op_type == "MatMulInteger" for n in graph.graph.node) == 6 * 4 + 5 + 1
    assert (output / "reader.onnx").stat().st_size < 40_000_000

    passage = "The harbour of Odesa reopened on Monday after a week of repairs."
    [reading] = SpanReader(output, threads=1).read("When did the harbour reopen?", [passage])
    assert reading is not None and 0 <= reading.start < reading.end <= len(passage)

    # continue training the shipped reader (its weights read back from its graph) and ship
    # over it, as `--base models/reader` does by default; stop early, then resume: the
    # record names the reader it started from, not the early ship it replaced
    again = output
    continued = [*arguments[:3], "--output", str(again), "--work-dir", str(tmp_path / "work2")]
    continued += [*arguments[7:], "--base", str(output), "--seed", "14"]
    continued += ["--negatives-per-question", "0.5", "--device", "cpu"]
    continued += ["--removal-negatives-per-question", "0.5", "--all-answers"]
    continued += ["--swapped-negatives-per-question", "0.5"]
    early = runner.invoke(app, [*continued, "--stop-at", "1"])
    assert early.exit_code == 0, early.output
    third = runner.invoke(app, continued)
    assert third.exit_code == 0, third.output
    later = json.loads((again / "training.json").read_text())
    assert later["base"]["training"]["fingerprint"] == record["fingerprint"]
    assert len(later["base"]["weights_sha256"]) == 64
    assert later["config"]["split_seed"] == record["config"]["split_seed"]
    assert later["config"]["negatives_per_question"] == 0.5
    assert later["config"]["device"] == "cpu"
    card = (again / "README.md").read_text()
    assert "an earlier reader of this project" in card
    assert "50% of the training questions" in card
    assert "own paragraph less the sentences that hold its" in card
    assert "swapped for another question's that the paragraph lacks" in card
    assert "any of the annotators' answers" in card and later["config"]["all_answers"]
    assert later["fingerprint"] != record["fingerprint"]


def test_missing_training_data_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.json"
    result = CliRunner().invoke(app, ["train-reader", "--data", str(missing)])
    assert result.exit_code == 2
    assert "no such training file" in result.output and "nowhere.json" in result.output
    no_base = CliRunner().invoke(app, ["train-reader", "--base", str(tmp_path)])
    assert no_base.exit_code == 2 and "config.json" in no_base.output


def test_shipping_over_the_work_directorys_weights_is_refused(tmp_path: Path) -> None:
    work = tmp_path / "work"
    clash = ["train-reader", "--work-dir", str(work), "--output", str(work / "trained")]
    result = CliRunner().invoke(app, clash)
    assert result.exit_code == 2 and "ship the reader elsewhere" in result.output
    assert not work.exists()


def test_a_recorded_configuration_reads_back_as_it_was() -> None:
    config = ReaderTrainConfig(data_files=("a.json",), base_model="base", seed=14, split_seed=14)
    recorded = json.loads(json.dumps(dataclasses.asdict(config)))
    assert ReaderTrainConfig.from_record(recorded) == config
    del recorded["split_seed"]  # records from before it was kept split by the seed
    assert ReaderTrainConfig.from_record(recorded).split_seed == 14


@pytest.mark.skipif(not DATA.is_file(), reason=f"training data not found: {DATA}")
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_training_on_a_gpu_that_is_not_there_is_a_clear_error(tmp_path: Path) -> None:
    arguments = ["train-reader", "--data", str(DATA), "--work-dir", str(tmp_path / "work")]
    result = CliRunner().invoke(
        app, [*arguments, "--output", str(tmp_path / "out"), "--device", "cuda"]
    )
    assert result.exit_code == 2 and "PyTorch sees no GPU" in result.output


def test_answer_removal_negatives_keep_the_topic_but_not_the_answer() -> None:
    context = (
        "The bridge opened in 1932. It was built by Dorman Long. Engineers praised its single arch."
    )
    builder = ("Dorman Long", context.index("Dorman Long"))
    asked = QAExample("q1", "Who built the bridge?", context, (builder,), "wiki/Bridge")
    told_twice = context + " It opened in 1932, they said."
    opened = QAExample("q2", "When did it open?", told_twice, (("1932", 21),), "wiki/Bridge")
    pairs = _removal_negatives([asked, opened], 1.0, seed=0)
    assert pairs == [(asked, "The bridge opened in 1932. Engineers praised its single arch.")]
    assert _removal_negatives([asked, opened], 0.0, seed=0) == []


@pytest.mark.parametrize("seed", range(6))
def test_swapped_negatives_ask_about_a_name_or_number_the_paragraph_lacks(seed: int) -> None:
    bridge = "The bridge over the Tyne was opened in 1928 by King George V."
    built = QAExample("q1", "Who opened the Tyne bridge in 1928?", bridge, (("King", 46),), "w/B")
    fair = "The fair drew crowds from across the region."
    held = QAExample("q2", "What did Paris host in 1900 and 1937?", fair, (("fair", 4),), "w/F")
    pairs = _swapped_negatives([built, held], 1.0, seed=seed)
    # only the bridge question names something its paragraph holds (the Tyne, 1928); one
    # of those is swapped for the same kind of term from the other question
    [(asked, paragraph)] = pairs
    assert paragraph == bridge and asked.id == "q1" and asked.answers == built.answers
    assert asked.question in {
        "Who opened the Paris bridge in 1928?",
        "Who opened the Tyne bridge in 1900?",
        "Who opened the Tyne bridge in 1937?",
    }
    assert _swapped_negatives([built, held], 0.0, seed=seed) == []


def test_dev_metrics_count_refusals_of_each_kind_of_pair_apart() -> None:
    paragraph = "The fair opened in 1900 in Paris."
    asked = QAExample("q1", "When did the fair open?", paragraph, (("1900", 19),), "w/F")
    other = QAExample("q2", "Where was the fair?", paragraph, (("Paris", 27),), "w/F")
    dev_set = DevSet(
        questions=[asked, other],
        negatives=[(asked, "Rain fell."), (other, "Snow fell."), (asked, "Wind rose.")],
        near_misses=[(dataclasses.replace(asked, question="When did the fair close?"), paragraph)],
    )
    # the reader answers "1900" for q1, refuses q2, refuses one negative in three
    # (one unread) and answers the near miss
    refuse = {"Where was the fair?", "Snow fell."}

    def read_pairs(questions: Sequence[str], passages: Sequence[str]) -> list[Reading | None]:
        readings: list[Reading | None] = []
        for i, (question, passage) in enumerate(zip(questions, passages, strict=True)):
            null = 9.0 if {question, passage} & refuse else 1.0
            readings.append(None if passage == "Wind rose." else Reading(i, 19, 23, 5.0, null))
        return readings

    metrics = evaluate(read_pairs, dev_set)
    assert (metrics.exact_match, metrics.positives_refused) == (0.5, 0.5)
    assert metrics.negatives_refused == 0.6667  # refused or unread: both count
    assert metrics.near_misses_refused == 0.0


def test_every_annotators_answer_in_a_window_is_a_target_and_only_with_all_answers() -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(packaged_model_path())
    context = "The ferry left Piraeus at dawn on Tuesday with 300 passengers aboard."
    answers = (("dawn on Tuesday", context.index("dawn")), ("Tuesday", context.index("Tuesday")))
    example = QAExample("q1", "When did the ferry leave?", context, answers, "news/Ferry")
    negative = (example, "The harbour was closed for repairs.")
    spec = WindowSpec()
    [first_only, no_answer] = _label(tokenizer, [example], [negative], spec)
    [both, _] = _label(tokenizer, [example], [negative], spec, all_answers=True)

    def words(positions: tuple[int, ...]) -> list[str]:
        spans = [first_only.window.offsets[p] for p in positions]
        return [context[span[0] : span[1]] for span in spans if span is not None]

    assert words(first_only.starts) == ["dawn"] and words(first_only.ends) == ["Tuesday"]
    assert words(both.starts) == ["dawn", "Tuesday"] and both.ends == first_only.ends
    assert no_answer.starts == no_answer.ends == (0,)


def test_the_marginal_span_loss_is_cross_entropy_for_one_answer_and_less_for_several() -> None:
    generator = torch.Generator().manual_seed(0)
    starts, ends = torch.randn(3, 8, generator=generator), torch.randn(3, 8, generator=generator)
    attended = torch.ones(3, 8, dtype=torch.bool)
    gold = torch.tensor([1, 4, 0])
    one = torch.nn.functional.one_hot(gold, 8).bool()
    expected = (
        torch.nn.functional.cross_entropy(starts, gold)
        + torch.nn.functional.cross_entropy(ends, gold)
    ) / 2
    assert torch.allclose(marginal_span_loss(starts, ends, one, one, attended), expected)

    several = one.clone()
    several[:, 5] = True
    assert marginal_span_loss(starts, ends, several, several, attended) < expected

    padded = attended.clone()
    padded[:, 6:] = False  # padding is no candidate: its logits do not count
    raised = starts.clone()
    raised[:, 6:] = 50.0
    assert torch.allclose(
        marginal_span_loss(raised, ends, one, one, padded),
        marginal_span_loss(starts, ends, one, one, padded),
    )
