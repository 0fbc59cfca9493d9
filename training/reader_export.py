"""Ship a trained reader: an int8 ONNX graph of it, checked against PyTorch on dev."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from rag.onnx_export import quantise_matmuls, scale_attention_by_division
from rag.reader.model import GRAPH_FILE

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export_int8(model: Any, tokenizer: Any, target_dir: Path) -> Path:
    """Write ``reader.onnx`` (the span head's start/end logits, int8 MatMul weights) and
    the tokenizer into ``target_dir``; returns the graph's path."""
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
        quantise_matmuls(raw, final, embeddings=True)
    return final
