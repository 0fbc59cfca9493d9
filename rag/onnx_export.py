"""Export the sentence-transformer to ONNX, offline, from the installed weights.

The graph holds the whole sentence-transformer (BERT, mean pooling, L2 normalisation),
so ONNX Runtime returns the final vectors; a second output gives the token vectors
(BERT's last hidden states) that sentence vectors are pooled from. After
``torch.onnx.export`` the ``fp32`` graph goes through ONNX Runtime's BERT optimiser
(fused attention, LayerNorm and GELU); the ``int8`` graph is the raw export with the
weights of every MatMul quantised per channel (dynamic quantisation; ONNX Runtime fuses
the rest when it loads the graph). Quantising the raw graph, attention left in float32,
was faster here than quantising the optimised one (measured by bench/backends.py).
Every export is checked against PyTorch on probe sentences before it is
cached under ``<cache_dir>/<key>/``, where the key changes with the weights, the ONNX
Runtime version and this recipe.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from rag.encoders import SENTENCE_OUTPUT, TOKEN_OUTPUT, load_sentence_transformer

if TYPE_CHECKING:
    import onnx

Precision = Literal["fp32", "int8"]

RECIPE_VERSION = 3
"""Bump when the export steps change, so that cached graphs are rebuilt."""
MIN_COSINE: dict[Precision, float] = {"fp32": 0.9999, "int8": 0.98}
"""Least cosine similarity to the PyTorch vectors that an export must reach."""
PROBES = (
    "What aid did Macron commit to Ukraine?",
    "The Senate voted on the nomination this afternoon, and the tally was split evenly, "
    "requiring the vice president to break the impasse.",
    "Short.",
)
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class OnnxExportError(RuntimeError):
    """The model cannot be exported, or the export does not reproduce PyTorch's vectors."""


def exported_graph(model_path: Path, cache_dir: Path, precision: Precision) -> Path:
    """The ONNX graph for the model in ``model_path``, exported (once) if not cached."""
    target = cache_dir / f"{model_path.name}-{_fingerprint(model_path)}" / f"{precision}.onnx"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as work:
            built = export(model_path, Path(work), precision)
            os.replace(built, target)
    return target


def export(model_path: Path, work_dir: Path, precision: Precision, threads: int = 2) -> Path:
    """Export, optimise, optionally quantise and verify; returns the final graph's path."""
    with _quiet():
        return _export(model_path, work_dir, precision, threads)


def _export(model_path: Path, work_dir: Path, precision: Precision, threads: int) -> Path:
    import onnx

    model = load_sentence_transformer(model_path, threads)
    modules = [type(m).__name__ for m in model]
    pooling = getattr(model[1], "pooling_mode", None) if len(model) > 1 else None
    if modules[:2] != ["Transformer", "Pooling"] or pooling != "mean":
        raise OnnxExportError(
            f"ONNX export supports Transformer + mean Pooling models, not {modules} ({pooling})"
        )
    bert: Any = model[0].auto_model
    raw = work_dir / "raw.onnx"
    _torch_export(bert, model.preprocess(list(PROBES)), raw)
    graph = onnx.load(str(raw))
    scale_attention_by_division(graph)
    onnx.save(graph, str(raw))
    final = work_dir / f"{precision}.onnx"
    if precision == "int8":
        quantise_matmuls(raw, final)
    else:
        _optimise(raw, final, bert.config.num_attention_heads, bert.config.hidden_size)
    _verify(final, model, model_path, precision, threads)
    return final


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's, optimiser's and quantiser's advice (warnings and logs)."""
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)
        onnxruntime.set_default_logger_severity(2)


def _torch_export(bert: Any, features: dict[str, Any], path: Path) -> None:
    """Trace BERT + mean pooling + normalisation into one ONNX graph (which also
    outputs the token vectors)."""
    import torch

    class SentenceGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            # the classic additive mask: the pattern ONNX Runtime's attention fusion knows
            additive = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * -10000.0
            tokens = self.bert(
                input_ids=input_ids, attention_mask=additive, token_type_ids=token_type_ids
            ).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(tokens.dtype)
            mean = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1), tokens

    bert.config._attn_implementation = "eager"
    axes = {name: {0: "batch", 1: "tokens"} for name in _INPUTS}
    with torch.no_grad():
        torch.onnx.export(
            SentenceGraph().eval(),
            tuple(features[name] for name in _INPUTS),
            str(path),
            input_names=list(_INPUTS),
            output_names=[SENTENCE_OUTPUT, TOKEN_OUTPUT],
            dynamic_axes={**axes, SENTENCE_OUTPUT: {0: "batch"}, TOKEN_OUTPUT: axes["input_ids"]},
            opset_version=17,
            dynamo=False,
        )


def scale_attention_by_division(graph: onnx.ModelProto) -> None:
    """Rewrite ``(Q @ K) * c`` as ``(Q @ K) / (1 / c)`` before each attention softmax.

    Transformers 5 scales attention scores with a ``Mul``; ONNX Runtime's attention fusion
    then mistakes it for the mask's ``Mul`` and fuses nothing. With the ``Div`` of older
    BERT exports, all six attention blocks fuse (about 1.3x faster int8 inference here).
    """
    from onnx import numpy_helper

    producers = {output: node for node in graph.graph.node for output in node.output}
    constants = {i.name: numpy_helper.to_array(i) for i in graph.graph.initializer}
    for node in graph.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    for softmax in (n for n in graph.graph.node if n.op_type == "Softmax"):
        add = producers.get(softmax.input[0])
        if add is None or add.op_type != "Add":
            continue
        for name in add.input:
            scale = producers.get(name)
            if scale is None or scale.op_type != "Mul" or scale.input[1] not in constants:
                continue
            scores = producers.get(scale.input[0])
            if scores is None or scores.op_type != "MatMul":
                continue
            reciprocal = 1.0 / constants[scale.input[1]].astype(np.float32)
            divisor = numpy_helper.from_array(reciprocal, f"{scale.name}/divisor")
            graph.graph.initializer.append(divisor)
            scale.op_type = "Div"
            scale.input[1] = divisor.name


def _optimise(source: Path, target: Path, heads: int, hidden: int) -> None:
    from onnxruntime.transformers.optimizer import optimize_model

    optimised = optimize_model(str(source), model_type="bert", num_heads=heads, hidden_size=hidden)
    fused = optimised.get_fused_operator_statistics()
    if not fused.get("Attention"):
        raise OnnxExportError(f"ONNX Runtime fused no attention block ({fused})")
    optimised.save_model_to_file(str(target))


def quantise_matmuls(
    source: Path, target: Path, embeddings: bool = False, keep_float: Sequence[str] = ()
) -> None:
    """Dynamic int8 quantisation of every MatMul's constant weights, per channel, except
    the nodes named in ``keep_float``; with ``embeddings``, the embedding tables
    (``Gather``) too, which quarters a small BERT's file (its word embeddings are half its
    weights)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=False,
        op_types_to_quantize=["MatMul", "Gather"] if embeddings else ["MatMul"],
        nodes_to_exclude=list(keep_float),
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True},
    )


def _verify(graph: Path, model: Any, model_path: Path, precision: Precision, threads: int) -> None:
    from rag.encoders import OnnxEncoder

    expected = model.encode(list(PROBES), normalize_embeddings=True, convert_to_numpy=True)
    got = OnnxEncoder(graph, model_path, threads)
    cosine = float(np.min(np.sum(expected * got.encode(PROBES), axis=1)))
    if cosine < MIN_COSINE[precision]:
        raise OnnxExportError(
            f"the {precision} ONNX export drifts from PyTorch (cosine {cosine:.4f} < "
            f"{MIN_COSINE[precision]})"
        )


def _fingerprint(model_path: Path) -> str:
    """Changes with the model files, the ONNX Runtime version and the export recipe."""
    import onnxruntime

    digest = hashlib.sha256(f"{onnxruntime.__version__}|{RECIPE_VERSION}".encode())
    for file in sorted(p for p in model_path.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(model_path)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]
