"""Chunking keeps exact offsets, respects the token budget and overlaps as configured."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from rag.chunking import Chunker, SentenceSplitter, pack_windows
from records import Article


def count_words(texts: Sequence[str]) -> list[int]:
    return [len(t.split()) for t in texts]


def make_article(text: str) -> Article:
    return Article(id="a", title="t", text=text)


pieces = [*"abc xyz.!?\n\u00a0\u201c\u201d'\t", "Mr. ", "U.S.", "é", "🙂", "\r"]
texts = st.lists(st.sampled_from(pieces), max_size=300).map("".join) | st.text(max_size=300)


@settings(max_examples=300, deadline=None)
@given(texts, st.integers(1, 30), st.integers(0, 3), st.integers(80, 200))
def test_offsets_reproduce_chunk_and_sentence_text(
    text: str, max_tokens: int, overlap: int, max_chars: int
) -> None:
    splitter = SentenceSplitter(max_chars=max_chars)
    for sentence in splitter.split(text):
        assert text[sentence.start : sentence.end] == sentence.text
        assert sentence.text.strip() == sentence.text and sentence.text
        assert len(sentence.text) <= max_chars
    chunker = Chunker(splitter, count_words, max_tokens=max_tokens, overlap_sentences=overlap)
    chunks = chunker.chunk(make_article(text))
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        # the chunk's sentences tile it in order, each reproducing its article text
        spans = list(chunk.sentence_spans())
        assert spans[0].start == chunk.start and spans[-1].end == chunk.end
        assert all(a.end <= b.start for a, b in itertools.pairwise(spans))
        assert all(text[s.start : s.end] == s.text for s in spans)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    # every sentence lies inside some chunk: nothing is dropped
    for sentence in splitter.split(text):
        assert any(c.start <= sentence.start and sentence.end <= c.end for c in chunks)
    assert bool(chunks) == bool(text.strip())


def test_sentences_never_cross_paragraphs() -> None:
    text = "Point one: NATO membership\nThe first point states a thing. It is long."
    sentences = [s.text for s in SentenceSplitter().split(text)]
    assert sentences == [
        "Point one: NATO membership",
        "The first point states a thing.",
        "It is long.",
    ]


def test_abbreviations_do_not_split_sentences() -> None:
    text = "The U.S. position is unlikely to shift. Mr. Rutte agreed."
    assert [s.text for s in SentenceSplitter().split(text)] == [
        "The U.S. position is unlikely to shift.",
        "Mr. Rutte agreed.",
    ]


def test_overlong_sentence_is_cut_at_whitespace() -> None:
    text = " ".join(["word"] * 100)
    pieces = SentenceSplitter(max_chars=80).split(text)
    assert all(len(p.text) <= 80 for p in pieces)
    assert " ".join(p.text for p in pieces) == text


def test_chunks_overlap_by_whole_sentences_within_budget() -> None:
    text = "One two three. Four five six. Seven eight nine. Ten eleven twelve."
    chunker = Chunker(SentenceSplitter(), count_words, max_tokens=6, overlap_sentences=1)
    assert [c.text for c in chunker.chunk(make_article(text))] == [
        "One two three. Four five six.",
        "Four five six. Seven eight nine.",
        "Seven eight nine. Ten eleven twelve.",
    ]


def test_pack_windows() -> None:
    assert pack_windows([3, 3, 3, 3], 6, 0) == [(0, 1), (2, 3)]
    assert pack_windows([3, 3, 3, 3], 6, 1) == [(0, 1), (1, 2), (2, 3)]
    assert pack_windows([10, 1, 1], 5, 1) == [(0, 0), (1, 2)]  # an oversized sentence stands alone
    assert pack_windows([1, 1, 1], 100, 2) == [(0, 2)]
    assert pack_windows([2, 2, 2], 2, 3) == [(0, 0), (1, 1), (2, 2)]  # overlap never stalls
    assert pack_windows([], 10, 1) == []
