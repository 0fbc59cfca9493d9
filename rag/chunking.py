"""Sentence-aware chunking that keeps exact character offsets.

Invariant: for every span produced here, ``text[span.start:span.end] == span.text``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import syntok.segmenter

from records import Article, Chunk, Span

_PARAGRAPH = re.compile(r"[^\n]+")
_NON_SPACE = re.compile(r"\S+")


class SentenceSplitter:
    """Split text into sentences with exact offsets.

    Paragraphs (lines) are never merged; inside each one syntok finds the sentence
    boundaries (it knows abbreviations such as "Mr." and "U.S."). Sentences longer than
    ``max_chars`` are cut at whitespace so that no unit is too long to embed or to show.
    """

    def __init__(self, max_chars: int = 600) -> None:
        self.max_chars = max_chars

    def split(self, text: str) -> list[Span]:
        """Return the sentences of ``text``, in order, with offsets into ``text``."""
        spans: list[Span] = []
        for paragraph in _PARAGRAPH.finditer(text):
            if not paragraph.group().strip():
                continue
            base = paragraph.start()
            for sub_paragraph in syntok.segmenter.analyze(paragraph.group()):
                for sentence in sub_paragraph:
                    start = base + sentence[0].offset
                    end = base + sentence[-1].offset + len(sentence[-1].value)
                    spans.extend(self._limit_length(text, start, end))
        return spans

    def _limit_length(self, text: str, start: int, end: int) -> list[Span]:
        start, end = _trim(text, start, end)
        if start >= end:
            return []
        if end - start <= self.max_chars:
            return [Span(start, end, text[start:end])]
        pieces: list[Span] = []
        piece_start = piece_end = start
        for word in _NON_SPACE.finditer(text, start, end):
            if word.end() - piece_start > self.max_chars and piece_end > piece_start:
                pieces.append(Span(piece_start, piece_end, text[piece_start:piece_end]))
                piece_start = word.start()
            piece_end = word.end()
            while piece_end - piece_start > self.max_chars:
                cut = piece_start + self.max_chars
                pieces.append(Span(piece_start, cut, text[piece_start:cut]))
                piece_start = cut
        if piece_end > piece_start:
            pieces.append(Span(piece_start, piece_end, text[piece_start:piece_end]))
        return pieces


class Chunker:
    """Pack consecutive sentences into chunks of at most ``max_tokens`` word pieces,
    repeating the last ``overlap_sentences`` sentences at the start of the next chunk."""

    def __init__(
        self,
        splitter: SentenceSplitter,
        count_tokens: Callable[[Sequence[str]], list[int]],
        max_tokens: int = 200,
        overlap_sentences: int = 1,
    ) -> None:
        self.splitter = splitter
        self.count_tokens = count_tokens
        self.max_tokens = max_tokens
        self.overlap_sentences = overlap_sentences

    def chunk(self, article: Article) -> list[Chunk]:
        """Cut one article into overlapping, offset-exact chunks."""
        sentences = self.splitter.split(article.text)
        if not sentences:
            return []
        token_counts = self.count_tokens([s.text for s in sentences])
        windows = pack_windows(token_counts, self.max_tokens, self.overlap_sentences)
        text = article.text
        return [
            Chunk(
                article_id=article.id,
                ordinal=ordinal,
                start=sentences[first].start,
                end=sentences[last].end,
                text=text[sentences[first].start : sentences[last].end],
                sentences=tuple((s.start, s.end) for s in sentences[first : last + 1]),
            )
            for ordinal, (first, last) in enumerate(windows)
        ]


def pack_windows(
    token_counts: Sequence[int], max_tokens: int, overlap: int
) -> list[tuple[int, int]]:
    """Group sentence indices into inclusive ``(first, last)`` windows.

    Each window holds as many whole sentences as fit in ``max_tokens`` (at least one);
    the next window starts ``overlap`` sentences before the previous one ended, but
    always after the previous window's start, so packing always moves forward.
    """
    windows: list[tuple[int, int]] = []
    first = 0
    n = len(token_counts)
    while first < n:
        last = first
        total = token_counts[first]
        while last + 1 < n and total + token_counts[last + 1] <= max_tokens:
            last += 1
            total += token_counts[last]
        windows.append((first, last))
        if last == n - 1:
            break
        first = max(first + 1, last + 1 - overlap)
    return windows


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end
