"""The shipped span reader on its own: offline loading, strides, offsets on any text."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.answering import PassageHit
from rag.chunking import SentenceSplitter
from rag.reader.answerer import SQUAD2_RULE, ReaderAnswerer
from rag.reader.model import GRAPH_FILE, ReaderUnavailableError, SpanReader, reader_fingerprint
from rag.settings import PROJECT_ROOT, Settings
from records import Chunk

FILLER = "The committee met again to review the schedule and the minutes of its last session. "


@pytest.fixture(scope="module")
def reader() -> SpanReader:
    loaded = SpanReader(Settings().reader_path, threads=2)
    loaded.warm_up()
    return loaded


def test_the_reader_ships_in_the_repository_and_loads_offline(
    reader: SpanReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert reader.model_dir == PROJECT_ROOT / "models" / "reader"
    assert (reader.model_dir / GRAPH_FILE).stat().st_size < 50_000_000
    assert len(reader.fingerprint) == 16 and reader.fingerprint == reader_fingerprint(
        reader.model_dir
    )
    passage = (
        "Macron said that France would continue to honour its current commitments, which "
        "include three billion euros in aid this year."
    )
    [reading] = reader.read("What aid did Macron commit?", [passage])
    assert reading is not None and "three billion euros" in passage[reading.start : reading.end]
    assert reading.margin > 0


def test_a_passage_longer_than_the_window_is_read_in_strides(reader: SpanReader) -> None:
    answer_sentence = "The harbour of Odesa reopened on Monday after repairs. "
    passage = FILLER * 30 + answer_sentence + FILLER * 5
    assert len(passage) > 2000  # several 256-token windows
    [reading] = reader.read("When did the harbour of Odesa reopen?", [passage])
    assert reading is not None
    found = passage[reading.start : reading.end]
    assert "Monday" in found
    assert reading.start >= passage.index(answer_sentence)


def test_a_missing_reader_is_a_clear_error(tmp_path: object) -> None:
    with pytest.raises(ReaderUnavailableError, match="RAG_ANSWERER=sentence"):
        SpanReader(PROJECT_ROOT / "no-such-reader", threads=1).warm_up()


@settings(max_examples=25, deadline=None)
@given(
    question=st.text(min_size=1, max_size=60),
    words=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=60),
    offset=st.integers(0, 5000),
)
def test_every_answer_reproduces_its_article_text(
    reader: SpanReader, question: str, words: list[str], offset: int
) -> None:
    body = " ".join(words)
    article = "x" * offset + "\n" + body
    sentences = SentenceSplitter().split(article)
    if not sentences:  # nothing but whitespace: no chunk, nothing to read
        assert not article.strip()
        return
    start, end = sentences[0].start, sentences[-1].end
    chunk = Chunk(
        "a1", 0, start, end, article[start:end], tuple((s.start, s.end) for s in sentences)
    )
    hit = PassageHit(chunk, 0.5, np.zeros((len(sentences), 384), dtype=np.float32))
    for candidate in ReaderAnswerer(reader, SQUAD2_RULE, 1).candidates(
        question, np.zeros(384, dtype=np.float32), [hit]
    ):
        assert article[candidate.start : candidate.end] == candidate.text
        assert candidate.text and candidate.text == candidate.text.strip()
        context = candidate.context
        assert article[context.start : context.end] == context.text
        assert context.start <= candidate.start < candidate.end <= context.end
        assert 0.0 <= candidate.score <= 1.0
