"""Seeded test articles for the store tests, importable as ``tests.index.articles`` (by
the test modules and conftest, and by their child processes once the project root is on
``sys.path``)."""

from __future__ import annotations

import random

import numpy as np

from index.protocol import NewArticle, StoreIdentity
from rag.articles import create_article
from records import Chunk

DIM = 8
IDENTITY = StoreIdentity("m", DIM, "torch", "float32")
WORDS = ["harbour", "port", "ferry", "minister", "aid", "euros"]
WORDS += ["billion", "talks", "storm", "flood", "bridge", "vote"]


def new_article(n: int, chunks: int = 2, source: str | None = None) -> NewArticle:
    """Article ``n`` (id ``a0000n``, published ``2024-01-<n % 28 + 1>``, at noon UTC when
    ``n`` is odd, as a timestamp): ``chunks``
    one-sentence chunks of seeded words, with seeded unit vectors (the sentence vector of
    each is its chunk's)."""
    rng = random.Random(n)
    sentences = [
        " ".join(rng.choices(WORDS, k=6)).capitalize() + f" number {n}." for _ in range(chunks)
    ]
    published = f"2024-01-{n % 28 + 1:02d}" + ("T12:00:00Z" if n % 2 else "")
    article = create_article(
        f"Title {n}", "\n".join(sentences), id=f"a{n:05d}", source=source, published=published
    )
    spans, start = [], 0
    for ordinal, sentence in enumerate(sentences):
        end = start + len(sentence)
        spans.append(Chunk(article.id, ordinal, start, end, sentence, ((start, end),)))
        start = end + 1
    vectors = np.random.default_rng(n).standard_normal((chunks, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return NewArticle(article, spans, vectors, [vectors[i : i + 1] for i in range(chunks)])
