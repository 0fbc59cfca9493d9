"""Ship a trained reader: a mostly int8 ONNX graph of it, checked against PyTorch on dev."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from rag.onnx_export import OnnxExportError, quantise_matmuls, scale_attention_by_division
from rag.reader.model import GRAPH_FILE

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export_onnx(model: Any, tokenizer: Any, target_dir: Path) -> Path:
    """Write ``reader.onnx`` (the span head's start/end logits) and the tokenizer into
    ``target_dir``; returns the graph's path.

    Weights are int8 except a few MatMuls (see :func:`kept_in_float`)."""
    import onnx
    import torch

    target_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(target_dir)
    model = model.float().eval()
    model.config._attn_implementation = "eager"
    probe = tokenizer(
        ["What aid did France commit?"],
        ["France said it would keep its commitments, including three billion euros."],
        return_tensors="pt",
    )

    class SpanGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.start_logits, out.end_logits

    axes = {name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "start_logits", "end_logits")}
    with tempfile.TemporaryDirectory() as work:
        raw = Path(work) / "raw.onnx"
        with torch.no_grad():
            torch.onnx.export(
                SpanGraph().eval(),
                tuple(probe[name] for name in _INPUTS),
                str(raw),
                input_names=list(_INPUTS),
                output_names=["start_logits", "end_logits"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
        graph = onnx.load(str(raw))
        scale_attention_by_division(graph)
        onnx.save(graph, str(raw))
        final = target_dir / GRAPH_FILE
        quantise_matmuls(raw, final, embeddings=True, keep_float=kept_in_float(graph))
    return final


def kept_in_float(graph: Any) -> list[str]:
    """The MatMuls left in float32: each block's attention output projection and the
    first block's feed-forward output projection.

    Dynamic quantisation quantises a MatMul's input per tensor, and the inputs of the
    output projections (the attention context, the wide GELU output) lose most to it. On
    the second-epoch reader's dev split (F1, float32 .746): fully int8 .726; attention
    output projections in float .734; every output projection .744 (20% slower than
    fully int8); this choice .739, within the 1-point budget, 6% slower, 27 MB."""
    blocks = sum(1 for node in graph.graph.node if node.op_type == "Softmax")
    projections = [
        node.name
        for node in graph.graph.node  # in topological order: the first block first
        if node.op_type == "MatMul" and node.name.endswith("/output/dense/MatMul")
    ]
    attention = [name for name in projections if name.endswith("/attention/output/dense/MatMul")]
    feed_forward = [name for name in projections if name not in attention]
    if len(attention) != blocks or len(feed_forward) != blocks:
        raise OnnxExportError(
            f"expected an attention and a feed-forward output projection in each of {blocks} "
            f"blocks, found {len(attention)} and {len(feed_forward)}"
        )
    return attention + feed_forward[:1]
