"""One-article writes over HTTP as the index grows: ``POST /articles`` with one news
article and ``DELETE /articles/{id}`` of it, through ``rag serve`` (one worker, with an
API key), with ``sizes`` news articles indexed (300 and 2,400 by default).

The index is built in process (the encoder is the cost there, and ingest has its own
bench), merged as a long-running service would have, then served; each write is timed at
the client, median of ``repeats``. The articles written are news articles not in the index.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import httpx
from rich.console import Console

from bench.common import NEWS_CSV, Figure, Report
from bench.http_latency import running_service
from rag.articles import parse_bytes
from rag.embedding import Embedder
from rag.pipeline import Pipeline
from rag.settings import Settings

BENCH = "http-writes"
KEY = "bench-writes-key"
ADD_BAR_S = 1.0
DELETE_BAR_S = 0.5
GROWTH_BAR = 1.5


def run(
    report: Report,
    work: Path,
    embedder: Embedder,
    *,
    sizes: tuple[int, ...] = (300, 2_400),
    repeats: int = 5,
    log: Console,
) -> None:
    """Measure add and delete of one article at each index size; report the growth."""
    articles, _ = parse_bytes(NEWS_CSV.read_bytes(), NEWS_CSV.name)
    largest = max(sizes)
    if len(articles) < largest + repeats:
        raise ValueError(f"{NEWS_CSV} holds {len(articles)} articles; {largest + repeats} needed")
    probes = articles[largest : largest + repeats]
    index_dir = work / "http-writes-index"
    settings = Settings(index_dir=index_dir, seed_sample_articles=False)
    indexed = 0
    add_s: dict[int, float] = {}
    delete_s: dict[int, float] = {}
    for size in sorted(sizes):
        log.print(f"{BENCH}: indexing news articles {indexed}-{size}")
        pipeline = Pipeline(settings, embedder)
        pipeline.add([(f"news-{n}", a) for n, a in enumerate(articles[indexed:size], indexed)])
        pipeline.store.merge(force=True)
        chunks = pipeline.stats()["chunks"]
        pipeline.close()
        indexed = size
        adds, deletes = [], []
        with (
            running_service(index_dir, {"RAG_API_KEY": KEY}) as url,
            httpx.Client(base_url=url, timeout=120, headers={"X-API-Key": KEY}) as http,
        ):
            for article in probes:
                body = {"title": article.title, "text": article.text, "id": article.id}
                added = http.post("/articles", json=body)
                added.raise_for_status()
                adds.append(added.elapsed.total_seconds())
                deleted = http.delete(f"/articles/{article.id}")
                deleted.raise_for_status()
                deletes.append(deleted.elapsed.total_seconds())
        add_s[size], delete_s[size] = statistics.median(adds), statistics.median(deletes)
        note = f"{size:,} news articles, {chunks:,} chunks indexed; median of {repeats}"
        report.add(
            Figure(
                BENCH,
                f"add one article at {size:,} articles",
                add_s[size],
                "s",
                bar=f"<= {ADD_BAR_S:g} s",
                met=add_s[size] <= ADD_BAR_S,
                note=note,
            )
        )
        report.add(
            Figure(
                BENCH,
                f"delete one article at {size:,} articles",
                delete_s[size],
                "s",
                bar=f"<= {DELETE_BAR_S:g} s",
                met=delete_s[size] <= DELETE_BAR_S,
                note=note,
            )
        )
    small, large = min(sizes), largest
    growth = (add_s[large] + delete_s[large]) / (add_s[small] + delete_s[small])
    report.add(
        Figure(
            BENCH,
            f"add + delete at {large:,} ÷ at {small:,} articles",
            growth,
            "x",
            bar=f"<= {GROWTH_BAR:g}x",
            met=growth <= GROWTH_BAR,
        )
    )
