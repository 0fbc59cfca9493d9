"""The write path: parse files into articles, chunk and embed them, and store them;
delete articles; rebuild the whole index from the stored articles."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from index.protocol import NewArticle, Store, StoreWriter
from rag.articles import ArticleError, iter_article_files, parse_bytes
from rag.chunking import Chunker
from rag.embedding import Embedder
from rag.text import printable
from rag.types import ArticleSummary, IngestReport, Rejection
from records import Article

ProgressCallback = Callable[[int, int], None]
"""Called as ``(chunks_embedded_so_far, chunks_total)`` while ingesting."""


class Indexer:
    """Adds, deletes and rebuilds articles in a store.

    Writers are serialised by the store (threads and processes); each batch of
    ``commit_every`` articles is one transaction, so an interrupted ingest keeps whole
    batches and readers never see part of one.
    """

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        chunker: Chunker,
        *,
        commit_every: int,
        max_article_chars: int,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.chunker = chunker
        self.commit_every = commit_every
        self.max_article_chars = max_article_chars

    def ingest(
        self, paths: Sequence[Path], on_progress: ProgressCallback | None = None
    ) -> IngestReport:
        """Parse files and folders and add their articles; bad files are reported, not fatal."""
        report = IngestReport()
        articles: list[tuple[str, Article]] = []
        try:
            files = list(iter_article_files(paths))
        except ArticleError as error:
            report.rejected.append(_rejection(error, str(paths)))
            return report
        for path in files:
            try:
                data = path.read_bytes()
            except OSError as error:
                report.rejected.append(
                    Rejection(name=printable(str(path)), reason=error.strerror or str(error))
                )
                continue
            articles.extend(_parse_file(str(path), data, report))
        return self.add(articles, on_progress, report)

    def add_files(
        self, files: Iterable[tuple[str, bytes]], on_progress: ProgressCallback | None = None
    ) -> IngestReport:
        """Parse file contents given as ``(file name, bytes)`` (uploads) and add their
        articles; bad files and records are reported, not fatal."""
        report = IngestReport()
        articles = [pair for name, data in files for pair in _parse_file(name, data, report)]
        return self.add(articles, on_progress, report)

    def add(
        self,
        articles: Iterable[tuple[str, Article]],
        on_progress: ProgressCallback | None = None,
        report: IngestReport | None = None,
    ) -> IngestReport:
        """Add ``(origin name, article)`` pairs: duplicates are skipped, articles over
        ``max_article_chars`` rejected, new ones chunked, embedded and committed in batches."""
        report = report or IngestReport()
        with self.store.writing() as writer:
            fresh = self._new_articles(writer, list(articles), report)
            self._embed_and_write(writer, fresh, on_progress, report)
        return report

    def delete(self, article_id: str) -> bool:
        """Remove an article from every part of the index; ``False`` if it was not there."""
        with self.store.writing() as writer:
            if writer.article(article_id) is None:
                return False
            writer.delete([article_id])
        return True

    def rebuild(self, on_progress: ProgressCallback | None = None) -> IngestReport:
        """Re-create the whole index from the stored articles, re-embedding them.

        Restores a working index when its files are damaged, and upgrades one of an
        earlier format; the old index stays in place until the new one is complete.
        """
        report = IngestReport()
        with self.store.rebuilding() as writer:
            articles = self.store.stored_articles()
            self._embed_and_write(writer, articles, on_progress, report)
        return report

    def _embed_and_write(
        self,
        writer: StoreWriter,
        articles: Sequence[Article],
        on_progress: ProgressCallback | None,
        report: IngestReport,
    ) -> None:
        """Chunk, embed and write articles, committing every ``commit_every`` of them."""
        prepared = [(article, self.chunker.chunk(article)) for article in articles]
        total = sum(len(chunks) for _, chunks in prepared)
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            if on_progress is not None:
                on_progress(done, total)

        for start in range(0, len(prepared), self.commit_every):
            batch = prepared[start : start + self.commit_every]
            flat = [c for _, chunks in batch for c in chunks]
            embedded = self.embedder.embed_passages(
                [c.text for c in flat],
                [[(s - c.start, e - c.start) for s, e in c.sentences] for c in flat],
                advance,
            )
            items, offset = [], 0
            for article, chunks in batch:
                end = offset + len(chunks)
                items.append(
                    NewArticle(
                        article,
                        chunks,
                        embedded.passages[offset:end],
                        embedded.sentences[offset:end],
                    )
                )
                offset = end
                report.added.append(summary(article, len(chunks)))
            writer.add(items)
            writer.commit()

    def _new_articles(
        self, writer: StoreWriter, articles: list[tuple[str, Article]], report: IngestReport
    ) -> list[Article]:
        fresh: dict[str, Article] = {}
        hashes: dict[str, str] = {}
        limit = self.max_article_chars
        for origin, article in articles:
            if len(article.text) > limit:
                report.rejected.append(
                    Rejection(
                        name=origin,
                        reason=f"the article text is {len(article.text):,} characters long; "
                        f"the limit is {limit:,} (RAG_MAX_ARTICLE_CHARS)",
                    )
                )
                continue
            existing = writer.article_by_hash(article.content_hash)
            duplicate_of = existing.id if existing else hashes.get(article.content_hash)
            if duplicate_of is not None:
                report.duplicates.append(
                    Rejection(name=origin, reason=f"same content as article {duplicate_of}")
                )
                continue
            if article.id in fresh or writer.article(article.id) is not None:
                report.rejected.append(
                    Rejection(
                        name=origin,
                        reason=f"article id {article.id!r} is already used by different "
                        "content; delete it first or choose another id",
                    )
                )
                continue
            fresh[article.id] = article
            hashes[article.content_hash] = article.id
        return list(fresh.values())


def summary(article: Article, chunks: int) -> ArticleSummary:
    """An article as listed (without its text)."""
    return ArticleSummary(
        id=article.id,
        title=article.title,
        url=article.url,
        source=article.source,
        published=article.published,
        chunks=chunks,
    )


def _parse_file(name: str, data: bytes, report: IngestReport) -> list[tuple[str, Article]]:
    """The ``(name, article)`` pairs in one file; its problems go to ``report.rejected``."""
    try:
        parsed, problems = parse_bytes(data, name)
    except ArticleError as error:
        report.rejected.append(_rejection(error, name))
        return []
    report.rejected.extend(_rejection(problem, name) for problem in problems)
    return [(name, article) for article in parsed]


def _rejection(error: ArticleError, fallback_name: str) -> Rejection:
    return Rejection(name=error.name or fallback_name, reason=error.reason)
