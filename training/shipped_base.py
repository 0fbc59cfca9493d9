"""Continue training from a shipped reader: its float weights, read back from the ONNX graph.

A session's training state (``var/``) does not outlive it, and the repository ships only
the mostly int8 graph (``models/reader/reader.onnx``). To go on from the shipped reader,
its weights are read back from that graph: float initialisers as they are, int8 ones
dequantised (``(q - zero_point) * scale``, per output channel for MatMul weights, per
tensor for the embedding tables), each named after the PyTorch parameter whose node it
feeds. Dequantisation keeps the rounding of int8 (up to half a step per weight): the
second-epoch reader read back scores dev F1 .736 in PyTorch, against .746 for the float
weights it was exported from.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rag.reader.model import GRAPH_FILE, TRAINING_RECORD
from training.config import TrainingSetupError

WEIGHTS_FILE = "model.safetensors"
_COPIED = ("config.json", "tokenizer.json", "tokenizer_config.json", TRAINING_RECORD)
# "/model/bert/encoder/layer.0/attention/self/query/MatMul_quant" -> "bert.encoder.layer.0..."
_MATMUL_NODE = re.compile(r"^/model/(?P<module>.+)/MatMul(?:_quant)?$")
_QUANTISED = "_quantized"
_PARTS = (_QUANTISED, "_scale", "_zero_point")


class ShippedBaseError(TrainingSetupError):
    """A folder that is not a shipped reader, or a graph whose weights cannot all be
    named (not one this project exports): ``rag train-reader`` reports it and exits 2."""


def graph_weights(graph_path: Path) -> dict[str, npt.NDArray[np.float32]]:
    """The PyTorch state dict (``BertForQuestionAnswering`` names, float32) of a reader
    graph written by :func:`training.reader_export.export_onnx`."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(graph_path)).graph
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    stems = {_stem(name) for name in arrays}
    weights = {
        stem.removeprefix("model."): _weight(arrays, stem)
        for stem in stems
        if stem.startswith("model.")  # named after their module by the exporter
    }
    used: set[str] = set()
    for node in graph.node:
        match = _MATMUL_NODE.match(node.name)
        source = _stem(node.input[1]) if len(node.input) > 1 else ""
        if match is None or source not in stems:  # attention's own MatMuls have no weights
            continue
        used.add(source)
        # ONNX multiplies by W^T ([in, out]); torch.nn.Linear keeps W ([out, in]).
        matrix = _weight(arrays, source).T
        weights[match["module"].replace("/", ".") + ".weight"] = np.ascontiguousarray(matrix)
    unnamed = sorted(s for s in stems if s.startswith("onnx::") and s not in used)
    if unnamed:
        raise ShippedBaseError(f"{graph_path}: weights feeding no known layer: {unnamed[:3]}")
    return weights


def recover_base(reader_dir: Path, target_dir: Path) -> Path:
    """Write ``reader_dir``'s weights (read back from its graph) with its configuration,
    tokenizer and training record into ``target_dir``, a directory
    ``BertForQuestionAnswering.from_pretrained`` loads; returns it."""
    import torch
    from safetensors.torch import save_file

    missing = [n for n in (GRAPH_FILE, *_COPIED) if not (reader_dir / n).is_file()]
    if missing:
        raise ShippedBaseError(f"{reader_dir} is not a shipped reader: no {', '.join(missing)}")
    target_dir.mkdir(parents=True, exist_ok=True)
    tensors = {n: torch.tensor(a) for n, a in graph_weights(reader_dir / GRAPH_FILE).items()}
    save_file(tensors, str(target_dir / WEIGHTS_FILE), metadata={"format": "pt"})
    for name in _COPIED:
        shutil.copyfile(reader_dir / name, target_dir / name)
    return target_dir


def is_shipped_reader(directory: Path) -> bool:
    """Whether ``directory`` holds a reader graph but no float weights to start from."""
    return (directory / GRAPH_FILE).is_file() and not (directory / WEIGHTS_FILE).is_file()


def _stem(name: str) -> str:
    """An initialiser's weight: ``x`` for ``x`` and for its int8 parts ``x_quantized``,
    ``x_scale`` and ``x_zero_point``."""
    for suffix in _PARTS:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def _weight(arrays: dict[str, Any], stem: str) -> npt.NDArray[np.float32]:
    """A weight in float32: as stored, or dequantised from its int8 parts."""
    if stem in arrays:
        return np.asarray(arrays[stem], dtype=np.float32)
    values = np.asarray(arrays[stem + _QUANTISED], dtype=np.float32)
    zero_point = np.asarray(arrays[stem + "_zero_point"], dtype=np.float32)
    scale = np.asarray(arrays[stem + "_scale"], dtype=np.float32)
    dequantised: npt.NDArray[np.float32] = (values - zero_point) * scale
    return dequantised
