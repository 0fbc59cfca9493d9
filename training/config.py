"""The reader's training configuration, and reading it back from a trained reader's
record (``training.json``). Light to import: the CLI takes its defaults from here."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from rag.reader.windows import WindowSpec

TrainDevice = Literal["auto", "cpu", "cuda"]


class TrainingSetupError(ValueError):
    """A run that cannot start as asked (the message says why): a device that is not
    there, or a checkpoint of another configuration in the work directory."""


@dataclass(frozen=True)
class ReaderTrainConfig:
    """Everything that determines a training run (recorded with the model)."""

    data_files: tuple[str, ...]
    base_model: str
    window: WindowSpec = field(default_factory=WindowSpec)
    batch_size: int = 16
    learning_rate: float = 8e-5
    warmup_fraction: float = 0.06
    weight_decay: float = 0.01
    epochs: float = 1.0
    negatives_per_question: float = 0.25
    """Share of questions also paired with the paragraph BM25 ranks highest among those
    without their answer, labelled "no answer"."""
    dev_fraction: float = 0.05
    seed: int = 13
    """Seeds the data order, the negatives' sample and torch."""
    split_seed: int = 13
    """Seeds the dev split (by article) and the dev sample: keep it across continued runs,
    so a reader continued from another never meets that one's dev articles in training."""
    max_train_examples: int | None = None
    max_dev_examples: int = 600
    checkpoint_every: int = 200
    eval_every: int = 1000
    threads: int = 2
    bf16: bool = True
    device: TrainDevice = "auto"
    """Where to train: ``cpu``, ``cuda`` (a GPU), or ``auto`` (a GPU when there is one)."""
    removal_negatives_per_question: float = 0.0
    """Share of questions also paired with their own paragraph less the sentences that
    hold the answer, labelled "no answer": a negative on the very topic of the question."""
    swapped_negatives_per_question: float = 0.0
    """Share of questions also asked about a name or number their paragraph lacks (one
    that it holds, swapped for another question's), with that paragraph, labelled "no
    answer": the near miss of a question about someone or something else."""
    all_answers: bool = False
    """Train toward every annotator's answer (the likelihood of any of their start and end
    tokens), not only the first annotator's."""

    def fingerprint(self) -> str:
        """A hash of the fields that change the run (resuming requires the same one).
        Fields added after the first shipped reader count only when set, so that the
        recorded fingerprints of earlier runs still hold."""
        fields = dataclasses.asdict(self)
        operational = ("checkpoint_every", "eval_every", "threads", "max_dev_examples", "device")
        for name in operational:
            fields.pop(name, None)
        for name in _ADDED_LATER:
            if fields[name] == config_default(name):
                fields.pop(name)
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_record(cls, recorded: Mapping[str, Any]) -> ReaderTrainConfig:
        """The configuration as a reader's ``training.json`` records it (its ``config``);
        records from before ``split_seed`` was kept split by ``seed``."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {name: value for name, value in recorded.items() if name in names}
        values["data_files"] = tuple(values["data_files"])
        values["window"] = WindowSpec(**values.get("window", {}))
        values.setdefault("split_seed", values["seed"])
        return cls(**values)


_ADDED_LATER = (
    "removal_negatives_per_question",
    "all_answers",
    "swapped_negatives_per_question",
)


def config_default(name: str) -> Any:
    """The default of one :class:`ReaderTrainConfig` field (what the CLI offers)."""
    return ReaderTrainConfig.__dataclass_fields__[name].default
