"""Reading the shipped reader's weights back from its mostly int8 graph, to train on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from transformers import AutoTokenizer, BertForQuestionAnswering
from typer.testing import CliRunner

from cli.commands import app
from rag.reader.model import GRAPH_FILE
from rag.settings import PROJECT_ROOT
from training.shipped_base import ShippedBaseError, is_shipped_reader, recover_base

SHIPPED = PROJECT_ROOT / "models" / "reader"


def test_the_shipped_readers_weights_read_back_reproduce_its_graph(tmp_path: Path) -> None:
    assert is_shipped_reader(SHIPPED)
    recovered = recover_base(SHIPPED, tmp_path / "base")
    assert not is_shipped_reader(recovered)
    model, loading = BertForQuestionAnswering.from_pretrained(
        recovered, dtype=torch.float32, output_loading_info=True
    )
    assert not loading["missing_keys"] and not loading["unexpected_keys"]
    tokenizer = AutoTokenizer.from_pretrained(recovered)
    inputs = tokenizer(
        ["Who opened the new bridge?", "How long did the repairs take?"],
        [
            "The mayor, Ana Silva, opened the new bridge over the river on Saturday morning.",
            "The harbour reopened on Monday after repairs that took eleven days.",
        ],
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        ours = model.eval()(**inputs)
    graph = onnxruntime.InferenceSession(str(SHIPPED / GRAPH_FILE))
    start, end = graph.run(None, {name: tensor.numpy() for name, tensor in inputs.items()})
    real = inputs["attention_mask"].numpy().astype(bool)
    # the graph also rounds activations to int8, so logits agree closely, not exactly
    for torch_logits, graph_logits in ((ours.start_logits, start), (ours.end_logits, end)):
        difference = np.abs(torch_logits.numpy() - graph_logits)[real]
        assert float(np.median(difference)) < 0.3
        assert np.corrcoef(torch_logits.numpy()[real], graph_logits[real])[0, 1] > 0.99


def test_a_folder_that_is_not_a_shipped_reader_is_refused(tmp_path: Path) -> None:
    (tmp_path / GRAPH_FILE).write_bytes(b"")
    with pytest.raises(ShippedBaseError, match=r"not a shipped reader: no config\.json"):
        recover_base(tmp_path, tmp_path / "base")
    (tmp_path / "config.json").write_text("{}")
    arguments = ["train-reader", "--base", str(tmp_path), "--work-dir", str(tmp_path / "work")]
    result = CliRunner().invoke(app, [*arguments, "--output", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "not a shipped reader: no tokenizer.json" in result.output
