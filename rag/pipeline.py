"""The pipeline: one object holding the loaded resources, used by the CLI, API and harness."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from index.records import ArticleFilter, RecordStore
from index.store import IndexStore, NewArticle, Snapshot
from rag.answering import Answerer, Calibration, Candidate, PassageHit, confident
from rag.articles import Article, ArticleError, iter_article_files, parse_bytes
from rag.chunking import Chunker, SentenceSplitter
from rag.embedding import Embedder
from rag.encoders import Vectors
from rag.extraction import SentenceExtractor
from rag.reader.answerer import SQUAD2_RULE, ReaderAnswerer
from rag.reader.model import SpanReader
from rag.retrieval import BestSentenceScorer, Retriever
from rag.settings import Settings
from rag.text import printable
from rag.types import (
    Answer,
    ArticleDetail,
    ArticleSummary,
    AskResult,
    IngestReport,
    Passage,
    Rejection,
    TextSpan,
)

ProgressCallback = Callable[[int, int], None]
"""Called as ``(chunks_embedded_so_far, chunks_total)`` while ingesting."""
StageCallback = Callable[[str, float], None]
"""Called as ``(stage, seconds)`` for the stages of a question: ``encode`` (the question
vector), ``retrieve`` (finding the passages) and ``read`` (the answerer on them)."""


class Pipeline:
    """Ingest articles and answer questions over them.

    Reads are lock-free: they use the snapshot current when they start. Writes are
    serialised (threads and processes) and publish a new snapshot atomically. A change
    written by another process is picked up on the next read.
    """

    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.embedder = embedder or Embedder.from_settings(settings)
        self.splitter = SentenceSplitter(settings.max_sentence_chars)
        self.chunker = Chunker(
            self.splitter,
            self.embedder.count_tokens,
            max_tokens=settings.chunk_max_tokens,
            overlap_sentences=settings.chunk_overlap_sentences,
        )
        self.retriever = Retriever(
            mode=settings.retrieval_mode,
            fusion=settings.fusion,
            dense_weight=settings.dense_weight,
            rrf_k=settings.rrf_k,
            candidate_pool=settings.candidate_pool,
            rescore_weight=settings.sentence_rescore_weight,
        )
        self.answerer = build_answerer(settings)
        self.store = IndexStore(
            settings.index_dir,
            settings.model_name,
            self.embedder.dimension,
            backend=self.embedder.backend,
        )
        self._snapshot: Snapshot | None = None
        self._reload_lock = threading.Lock()

    @classmethod
    def open(cls, settings: Settings, embedder: Embedder | None = None) -> Pipeline:
        """Load the index, first building it from the sample articles if there is none
        (and ``settings.seed_sample_articles`` is on)."""
        import faiss

        faiss.omp_set_num_threads(settings.faiss_threads)
        pipeline = cls(settings, embedder)
        if isinstance(pipeline.answerer, ReaderAnswerer):
            pipeline.answerer.reader.warm_up()
        pipeline.refresh()
        if pipeline._snapshot is None and settings.seed_sample_articles:
            pipeline.ingest([settings.sample_articles_dir])
        return pipeline

    # -- reading ----------------------------------------------------------------
    def refresh(self) -> Snapshot | None:
        """Switch to the newest index version on disk if it changed; return the snapshot."""
        version = self.store.current_version()
        current = self._snapshot
        if current is not None and current.version == version:
            return current
        with self._reload_lock:
            if self._snapshot is None or self._snapshot.version != version:
                self._snapshot = self.store.load()
            return self._snapshot

    def retrieve(
        self,
        question: str,
        top_k: int = 5,
        where: ArticleFilter | None = None,
        on_stage: StageCallback | None = None,
    ) -> Retrieval:
        """Embed the question and find the ``top_k`` best passages, with their sentence
        vectors (no passages when the index is empty or nothing passes ``where``)."""
        snapshot = self.refresh()
        encoding = time.perf_counter()
        question_vector = self.embedder.embed_query(question)
        if on_stage is not None:
            on_stage("encode", time.perf_counter() - encoding)
        if snapshot is None or not snapshot.vectors.size:
            return Retrieval(snapshot, question_vector, [])
        allowed = None
        if where is not None and not where.is_empty:
            allowed = snapshot.records.chunk_rowids(where)
        records = snapshot.records
        sentence_vectors = _SentenceVectorCache(records)
        rescorer = BestSentenceScorer(sentence_vectors)
        scored = self.retriever.retrieve(
            snapshot.vectors,
            snapshot.lexical,
            question,
            question_vector,
            top_k,
            allowed,
            rescorer if self.settings.sentence_rescore_weight > 0 else None,
        )
        rowids = [s.rowid for s in scored]
        stored, vectors = records.chunks(rowids), sentence_vectors(rowids)
        hits = [PassageHit(stored[s.rowid].chunk, s.score, vectors[s.rowid]) for s in scored]
        return Retrieval(snapshot, question_vector, hits)

    def ask(
        self,
        question: str,
        top_k: int = 5,
        where: ArticleFilter | None = None,
        on_stage: StageCallback | None = None,
    ) -> AskResult:
        """Answer a question with verbatim, cited spans (or sentences, with the sentence
        answerer), each inside its sentence; no answers means abstention. ``on_stage`` is
        told how long each stage took."""
        started = time.perf_counter()
        stages = {"encode": 0.0}
        retrieval = self.retrieve(question, top_k, where, stages.__setitem__)
        retrieved = time.perf_counter()
        stages["retrieve"] = retrieved - started - stages["encode"]
        answers: list[Answer] = []
        passages: list[Passage] = []
        if retrieval.snapshot is not None and retrieval.hits:
            articles = _ArticleCache(retrieval.snapshot.records)
            for hit in retrieval.hits:
                article = articles.get(hit.chunk.article_id)
                passages.append(
                    Passage(
                        passage_id=hit.chunk.passage_id,
                        article_id=article.id,
                        title=article.title,
                        url=article.url,
                        text=hit.chunk.text,
                        start=hit.chunk.start,
                        end=hit.chunk.end,
                        score=round(hit.score, 4),
                    )
                )
            candidates = self.answerer.candidates(
                question, retrieval.question_vector, retrieval.hits
            )
            limit = min(self.settings.max_answers, top_k)
            for candidate in confident(candidates, self.answerer.calibration.threshold, limit):
                article = articles.get(candidate.article_id)
                answers.append(
                    Answer(
                        text=candidate.text,
                        score=round(candidate.score, 4),
                        article_id=article.id,
                        title=article.title,
                        url=article.url,
                        start=candidate.start,
                        end=candidate.end,
                        passage_id=candidate.passage.passage_id,
                        context=TextSpan(
                            text=candidate.context.text,
                            start=candidate.context.start,
                            end=candidate.context.end,
                        ),
                    )
                )
        finished = time.perf_counter()
        stages["read"] = finished - retrieved
        if on_stage is not None:
            for stage, seconds in stages.items():
                on_stage(stage, seconds)
        took_ms = (finished - started) * 1000
        return AskResult(question=question, answers=answers, passages=passages, took_ms=took_ms)

    @property
    def answer_features(self) -> tuple[str, ...]:
        """Names of the features the answerer scores candidates by."""
        return self.answerer.features

    def candidates(
        self, question: str, top_k: int = 5, where: ArticleFilter | None = None
    ) -> list[Candidate]:
        """Every answer candidate the answerer weighs for a question, with its features and
        score, before the threshold: what calibration is fitted on."""
        retrieval = self.retrieve(question, top_k, where)
        return self.answerer.candidates(question, retrieval.question_vector, retrieval.hits)

    def articles(self, offset: int = 0, limit: int = -1) -> list[ArticleSummary]:
        """Indexed articles, in the order they were added."""
        snapshot = self.refresh()
        if snapshot is None:
            return []
        return [_summary(a, n) for a, n in snapshot.records.articles(offset=offset, limit=limit)]

    def article(self, article_id: str) -> ArticleDetail | None:
        """One article with its full text, or ``None`` if it is not indexed."""
        snapshot = self.refresh()
        found = snapshot.records.article(article_id) if snapshot else None
        if found is None or snapshot is None:
            return None
        chunks = len(snapshot.records.chunk_rowids(ArticleFilter(article_ids=(article_id,))))
        return ArticleDetail(
            **_summary(found, chunks).model_dump(), dateline=found.dateline, text=found.text
        )

    def stats(self) -> dict[str, object]:
        """Counts and provenance of the current index."""
        snapshot = self.refresh()
        manifest = snapshot.manifest if snapshot else {}
        return {
            "model_name": self.settings.model_name,
            "answerer": self.settings.answerer,
            "reader": _reader_fingerprint(self.answerer),
            "articles": manifest.get("articles", 0),
            "chunks": manifest.get("chunks", 0),
            "format_version": manifest.get("format_version"),
            "generation": manifest.get("generation", 0),
            "index_dir": str(self.settings.index_dir),
        }

    # -- writing ----------------------------------------------------------------
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
        ``max_article_chars`` rejected, new ones chunked, embedded and committed in batches
        (an interrupted ingest keeps whole batches)."""
        report = report or IngestReport()
        with self.store.writing() as base:
            fresh = self._new_articles(base, list(articles), report)
            self._snapshot = self._embed_and_commit(base, fresh, on_progress, report)
        return report

    def rebuild(self, on_progress: ProgressCallback | None = None) -> IngestReport:
        """Re-create the whole index from the stored article records, re-embedding them.

        Restores a working index when vector, BM25 or manifest files are missing or
        damaged; the damaged version is left in place until pruned.
        """
        report = IngestReport()
        with self.store.locked():
            articles = self.store.stored_articles()
            snapshot = self._embed_and_commit(None, articles, on_progress, report)
            if snapshot is None:  # no articles: an empty, sound index
                snapshot = self.store.commit(None, settings_record=self._settings_record())
            self._snapshot = snapshot
        return report

    def _embed_and_commit(
        self,
        base: Snapshot | None,
        articles: Sequence[Article],
        on_progress: ProgressCallback | None,
        report: IngestReport,
    ) -> Snapshot | None:
        """Chunk, embed and commit articles in batches; returns the last version written."""
        prepared = [(article, self.chunker.chunk(article)) for article in articles]
        total = sum(len(chunks) for _, chunks in prepared)
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            if on_progress is not None:
                on_progress(done, total)

        every = self.settings.ingest_commit_every
        for start in range(0, len(prepared), every):
            batch = prepared[start : start + every]
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
                report.added.append(_summary(article, len(chunks)))
            base = self.store.commit(base, add=items, settings_record=self._settings_record())
        return base

    def delete(self, article_id: str) -> bool:
        """Remove an article from every part of the index; ``False`` if it was not there."""
        with self.store.writing() as base:
            if base is None or base.records.article(article_id) is None:
                return False
            self._snapshot = self.store.commit(
                base, delete=[article_id], settings_record=self._settings_record()
            )
        return True

    def _new_articles(
        self, base: Snapshot | None, articles: list[tuple[str, Article]], report: IngestReport
    ) -> list[Article]:
        fresh: dict[str, Article] = {}
        hashes: dict[str, str] = {}
        limit = self.settings.max_article_chars
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
            existing = base.records.article_by_hash(article.content_hash) if base else None
            duplicate_of = existing.id if existing else hashes.get(article.content_hash)
            if duplicate_of is not None:
                report.duplicates.append(
                    Rejection(name=origin, reason=f"same content as article {duplicate_of}")
                )
                continue
            taken = article.id in fresh or (base is not None and base.records.article(article.id))
            if taken:
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

    def _settings_record(self) -> dict[str, object]:
        return {
            "reader": _reader_fingerprint(self.answerer),
            "chunk_max_tokens": self.settings.chunk_max_tokens,
            "chunk_overlap_sentences": self.settings.chunk_overlap_sentences,
            "max_sentence_chars": self.settings.max_sentence_chars,
        }


def build_answerer(settings: Settings) -> Answerer:
    """The answerer ``settings.answerer`` names, with its calibration (and the threshold
    override, if any)."""
    if settings.answerer == "reader":
        path = settings.reader_calibration_path
        calibration = Calibration.load(path) if path.exists() else SQUAD2_RULE
    else:
        calibration = Calibration.load(settings.calibration_path)
    if settings.answer_threshold is not None:
        calibration = dataclasses.replace(calibration, threshold=settings.answer_threshold)
    if settings.answerer == "sentence":
        return SentenceExtractor(calibration)
    reader = SpanReader(
        settings.reader_path, settings.torch_threads, settings.reader_max_answer_tokens
    )
    return ReaderAnswerer(reader, calibration, settings.reader_passages)


def _reader_fingerprint(answerer: Answerer) -> str | None:
    return answerer.reader.fingerprint if isinstance(answerer, ReaderAnswerer) else None


@dataclass(frozen=True)
class Retrieval:
    """What :meth:`Pipeline.retrieve` found, and in which index version."""

    snapshot: Snapshot | None
    question_vector: Vectors
    hits: list[PassageHit]


class _SentenceVectorCache:
    """Reads chunks' sentence vectors once per request (re-ranking reads them first)."""

    def __init__(self, records: RecordStore) -> None:
        self.records = records
        self._cache: dict[int, Vectors] = {}

    def __call__(self, rowids: Sequence[int]) -> dict[int, Vectors]:
        missing = [rowid for rowid in rowids if rowid not in self._cache]
        if missing:
            self._cache.update(self.records.sentence_vectors(missing))
        return {rowid: self._cache[rowid] for rowid in rowids if rowid in self._cache}


class _ArticleCache:
    """Looks articles up once per request."""

    def __init__(self, records: RecordStore) -> None:
        self.records = records
        self._cache: dict[str, Article] = {}

    def get(self, article_id: str) -> Article:
        if article_id not in self._cache:
            found = self.records.article(article_id)
            assert found is not None, f"chunk refers to missing article {article_id}"
            self._cache[article_id] = found
        return self._cache[article_id]


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


def _summary(article: Article, chunks: int) -> ArticleSummary:
    return ArticleSummary(
        id=article.id,
        title=article.title,
        url=article.url,
        source=article.source,
        published=article.published,
        chunks=chunks,
    )
