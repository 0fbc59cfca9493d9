"""The pipeline: one object holding the loaded resources, used by the CLI, API and harness."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from index.protocol import IndexStoreError, Store, StoreIdentity, StoreView
from index.store import EmbeddedStore, MergePolicy
from rag.answering import Answerer, Calibration, Candidate, PassageHit, confident
from rag.chunking import Chunker, SentenceSplitter
from rag.embedding import Embedder, vector_space
from rag.encoders import Vectors
from rag.extraction import SentenceExtractor
from rag.reader.answerer import SQUAD2_RULE, ReaderAnswerer
from rag.reader.model import SpanReader
from rag.retrieval import BestSentenceScorer, Retriever
from rag.settings import Settings
from rag.types import (
    Answer,
    ArticleDetail,
    ArticleSummary,
    AskResult,
    IngestReport,
    Passage,
    TextSpan,
)
from rag.writing import Indexer, ProgressCallback, summary
from records import Article, ArticleFilter

StageCallback = Callable[[str, float], None]
"""Called as ``(stage, seconds)`` for the stages of a question: ``encode`` (the question
vector), ``retrieve`` (finding the passages) and ``read`` (the answerer on them)."""


class Pipeline:
    """Ingest articles and answer questions over them.

    Reads are lock-free: each uses the store view current when it starts. Writes go
    through the :class:`~rag.writing.Indexer`, serialised across threads and processes;
    a change written by another process is picked up on the next read.
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
        self.store = build_store(settings, self.embedder, self._settings_record())
        self.indexer = Indexer(
            self.store,
            self.embedder,
            self.chunker,
            commit_every=settings.ingest_commit_every,
            max_article_chars=settings.max_article_chars,
        )

    @classmethod
    def open(cls, settings: Settings, embedder: Embedder | None = None) -> Pipeline:
        """Load the index, first building it from the sample articles if there is none
        (and ``settings.seed_sample_articles`` is on)."""
        import faiss

        faiss.omp_set_num_threads(settings.faiss_threads)
        pipeline = cls(settings, embedder)
        if isinstance(pipeline.answerer, ReaderAnswerer):
            pipeline.answerer.reader.warm_up()
        if pipeline.refresh() is None and settings.seed_sample_articles:
            pipeline.ingest([settings.sample_articles_dir])
        return pipeline

    # -- reading ----------------------------------------------------------------
    def refresh(self) -> StoreView | None:
        """The newest view of the index (changes by any process included); ``None`` when
        there is no index yet."""
        return self.store.view()

    def check(self) -> list[str]:
        """Consistency problems of the index (empty when sound)."""
        return self.store.check()

    def retrieve(
        self,
        question: str,
        top_k: int = 5,
        where: ArticleFilter | None = None,
        on_stage: StageCallback | None = None,
    ) -> Retrieval:
        """Embed the question and find the ``top_k`` best passages, with their sentence
        vectors (no passages when the index is empty or nothing passes ``where``)."""
        view = self.refresh()
        encoding = time.perf_counter()
        question_vector = self.embedder.embed_query(question)
        if on_stage is not None:
            on_stage("encode", time.perf_counter() - encoding)
        if view is None or not view.chunks_count:
            return Retrieval(view, question_vector, [])
        allowed = None
        if where is not None and not where.is_empty:
            allowed = view.chunk_rowids(where)
        sentence_vectors = _SentenceVectorCache(view)
        rescorer = BestSentenceScorer(sentence_vectors)
        scored = self.retriever.retrieve(
            view,
            question,
            question_vector,
            top_k,
            allowed,
            rescorer if self.settings.sentence_rescore_weight > 0 else None,
        )
        rowids = [s.rowid for s in scored]
        stored, vectors = view.chunks(rowids), sentence_vectors(rowids)
        hits = [  # a chunk deleted since the view was taken is left out
            PassageHit(stored[s.rowid].chunk, s.score, vectors[s.rowid])
            for s in scored
            if s.rowid in stored and s.rowid in vectors
        ]
        return Retrieval(view, question_vector, hits)

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
        if retrieval.view is not None and retrieval.hits:
            articles = _ArticleCache(retrieval.view)
            for hit in retrieval.hits:
                article = articles.get(hit.chunk.article_id)
                if article is None:
                    continue
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
                if article is None:
                    continue
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
                        unsure=candidate.score < self.settings.unsure_below,
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
        view = self.refresh()
        if view is None:
            return []
        return [summary(a, n) for a, n in view.articles(offset=offset, limit=limit)]

    def article(self, article_id: str) -> ArticleDetail | None:
        """One article with its full text, or ``None`` if it is not indexed."""
        view = self.refresh()
        found = view.article(article_id) if view else None
        if found is None or view is None:
            return None
        chunks = len(view.chunk_rowids(ArticleFilter(article_ids=(article_id,))))
        return ArticleDetail(
            **summary(found, chunks).model_dump(), dateline=found.dateline, text=found.text
        )

    def stats(self) -> dict[str, object]:
        """Counts and provenance of the current index."""
        view = self.refresh()
        described = view.description() if view else {}
        return {
            "model_name": self.settings.model_name,
            "answerer": self.settings.answerer,
            "reader": _reader_fingerprint(self.answerer),
            "articles": described.get("articles", 0),
            "chunks": described.get("chunks", 0),
            "format_version": described.get("format_version"),
            "generation": described.get("generation", 0),
            "index_dir": str(self.settings.index_dir),
        }

    def describe_index(self) -> dict[str, object]:
        """Everything the store says about the current index (``rag check``)."""
        view = self.refresh()
        return view.description() if view else {}

    # -- writing (the Indexer's, here for the faces) -------------------------------
    def ingest(
        self, paths: Sequence[Path], on_progress: ProgressCallback | None = None
    ) -> IngestReport:
        """Parse files and folders and add their articles (see :meth:`Indexer.ingest`)."""
        return self.indexer.ingest(paths, on_progress)

    def add_files(
        self, files: Iterable[tuple[str, bytes]], on_progress: ProgressCallback | None = None
    ) -> IngestReport:
        """Parse uploaded files and add their articles (see :meth:`Indexer.add_files`)."""
        return self.indexer.add_files(files, on_progress)

    def add(
        self,
        articles: Iterable[tuple[str, Article]],
        on_progress: ProgressCallback | None = None,
        report: IngestReport | None = None,
    ) -> IngestReport:
        """Add ``(origin name, article)`` pairs (see :meth:`Indexer.add`)."""
        return self.indexer.add(articles, on_progress, report)

    def delete(self, article_id: str) -> bool:
        """Remove an article; ``False`` if it was not there."""
        return self.indexer.delete(article_id)

    def rebuild(self, on_progress: ProgressCallback | None = None) -> IngestReport:
        """Re-create the index from the stored articles (see :meth:`Indexer.rebuild`)."""
        return self.indexer.rebuild(on_progress)

    def close(self) -> None:
        """Let a background merge finish and release the store."""
        self.store.close()

    def _settings_record(self) -> dict[str, object]:
        return {
            "reader": _reader_fingerprint(self.answerer),
            "chunk_max_tokens": self.settings.chunk_max_tokens,
            "chunk_overlap_sentences": self.settings.chunk_overlap_sentences,
            "max_sentence_chars": self.settings.max_sentence_chars,
        }


def build_store(
    settings: Settings, embedder: Embedder, settings_record: dict[str, object]
) -> Store:
    """The store the settings name, for vectors of this embedder."""
    identity = StoreIdentity(
        settings.model_name,
        embedder.dimension,
        embedder.backend,
        vector_space(embedder.backend),
    )
    if settings.store == "postgres":
        if not settings.database_url:
            raise IndexStoreError(
                "RAG_STORE=postgres needs RAG_DATABASE_URL "
                "(postgresql://user:password@host:5432/database)"
            )
        from index.postgres import PostgresStore  # psycopg: the postgres extra

        return PostgresStore(
            settings.database_url,
            identity,
            read_url=settings.database_read_url,
            pool_size=settings.database_pool_size,
            statement_timeout_ms=settings.database_statement_timeout_ms,
            settings_record=settings_record,
        )
    policy = MergePolicy(settings.merge_min_changes, settings.merge_ratio)
    return EmbeddedStore(settings.index_dir, identity, policy, settings_record)


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
    return ReaderAnswerer(
        reader,
        calibration,
        settings.reader_passages,
        settings.reader_first_passages,
        settings.reader_sure_score,
    )


def _reader_fingerprint(answerer: Answerer) -> str | None:
    return answerer.reader.fingerprint if isinstance(answerer, ReaderAnswerer) else None


@dataclass(frozen=True)
class Retrieval:
    """What :meth:`Pipeline.retrieve` found, and in which view of the index."""

    view: StoreView | None
    question_vector: Vectors
    hits: list[PassageHit]


class _SentenceVectorCache:
    """Reads chunks' sentence vectors once per request (re-ranking reads them first)."""

    def __init__(self, view: StoreView) -> None:
        self.view = view
        self._cache: dict[int, Vectors] = {}

    def __call__(self, rowids: Sequence[int]) -> dict[int, Vectors]:
        missing = [rowid for rowid in rowids if rowid not in self._cache]
        if missing:
            self._cache.update(self.view.sentence_vectors(missing))
        return {rowid: self._cache[rowid] for rowid in rowids if rowid in self._cache}


class _ArticleCache:
    """Looks articles up once per request."""

    def __init__(self, view: StoreView) -> None:
        self.view = view
        self._cache: dict[str, Article] = {}

    def get(self, article_id: str) -> Article | None:
        """The article, or ``None`` when it was deleted since the view was taken."""
        if article_id not in self._cache:
            found = self.view.article(article_id)
            if found is None:
                return None
            self._cache[article_id] = found
        return self._cache[article_id]
