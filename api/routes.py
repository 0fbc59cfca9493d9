"""The HTTP endpoints: thin functions that check their input and call the pipeline."""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import time
import unicodedata
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from starlette.datastructures import UploadFile

from api.access import ANSWERED, QUESTION
from api.metrics import ServiceMetrics
from api.models import (
    ArticleId,
    ArticleIn,
    ArticlePage,
    AskFilters,
    AskQuery,
    AskRequest,
    ErrorMessage,
    Health,
    IndexStats,
    Liveness,
    Readiness,
)
from index.protocol import IndexStoreError
from rag.articles import ArticleError, parse_record
from rag.pipeline import Pipeline
from rag.settings import Settings
from rag.types import ArticleDetail, AskResult, IngestReport, Rejection
from records import Article

router = APIRouter()
logger = logging.getLogger(__name__)

MAX_OFFSET = 2**63 - 1
"""The largest offset SQLite takes; a larger one is a 422 here, not an overflow below."""

_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="Must equal RAG_API_KEY; needed for writes."
)
_INVALID: dict[int | str, dict[str, Any]] = {422: {"model": ErrorMessage}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorMessage}}
_WRITE: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorMessage, "description": "Missing or wrong X-API-Key"},
    403: {"model": ErrorMessage, "description": "Writes are disabled (no RAG_API_KEY)"},
}
_ADD_ARTICLES_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        ArticleIn.model_json_schema(),
                        {"type": "array", "items": ArticleIn.model_json_schema()},
                    ]
                },
                "example": {
                    "title": "Harbour reopens after the storm",
                    "text": "The harbour reopened on Monday. Ferries resumed at noon.",
                    "source": "Example Gazette",
                    "published": "2024-10-10",
                },
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "Article files: .txt .md .html .json .jsonl .csv",
                        }
                    },
                }
            },
        },
    }
}


def get_pipeline(request: Request) -> Pipeline:
    """The loaded pipeline; a 503 saying why while the index loads or if it failed to."""
    pipeline: Pipeline | None = request.app.state.pipeline
    if pipeline is None:
        raise HTTPException(503, _not_ready(request).detail, headers={"Retry-After": "5"})
    return pipeline


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]


def require_api_key(
    settings: SettingsDep, key: Annotated[str | None, Security(_api_key_header)]
) -> None:
    """Let a write through only with the configured key (compared in constant time)."""
    expected = _configured_key(settings)
    if not expected:
        raise HTTPException(
            403,
            "this service is read-only: start it with RAG_API_KEY set to enable writes, "
            "then send that key in the X-API-Key header",
        )
    if key is None or not hmac.compare_digest(key.encode(), expected.encode()):
        raise HTTPException(
            401, "missing or wrong X-API-Key header", headers={"WWW-Authenticate": "X-API-Key"}
        )


@router.post("/ask", responses=_INVALID, tags=["questions"])
def ask(
    body: AskRequest,
    request: Request,
    pipeline: PipelineDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> AskResult:
    """Answer a question with verbatim, cited sentences; ``answers: []`` means no answer
    in the indexed articles (the closest passages are still listed)."""
    return _ask(request, pipeline, settings, metrics, body.question, body.top_k, body)


@router.get("/ask", responses=_INVALID, tags=["questions"])
def ask_get(
    query: Annotated[AskQuery, Query()],
    request: Request,
    pipeline: PipelineDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> AskResult:
    """The same as ``POST /ask``, for links and curl: ``/ask?q=…&top_k=…``."""
    return _ask(request, pipeline, settings, metrics, query.q, query.top_k, query)


@router.get("/articles", responses=_INVALID, tags=["articles"])
def list_articles(
    pipeline: PipelineDep,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ArticlePage:
    """The indexed articles, in the order they were added, a page at a time."""
    total = IndexStats.model_validate(pipeline.stats()).articles
    return ArticlePage(
        total=total, offset=offset, limit=limit, articles=pipeline.articles(offset, limit)
    )


@router.get("/articles/{article_id}", responses={**_NOT_FOUND, **_INVALID}, tags=["articles"])
def get_article(article_id: Annotated[ArticleId, Path()], pipeline: PipelineDep) -> ArticleDetail:
    """One article with the full text that answer and passage offsets refer to."""
    found = pipeline.article(article_id)
    if found is None:
        raise _not_found(article_id)
    return found


@router.post(
    "/articles",
    status_code=201,
    dependencies=[Depends(require_api_key)],
    responses={
        200: {"model": IngestReport, "description": "Nothing new: only duplicates"},
        **_WRITE,
        413: {"model": ErrorMessage, "description": "Over RAG_MAX_UPLOAD_BYTES"},
        415: {"model": ErrorMessage},
        422: {"model": ErrorMessage, "description": "Nothing could be added"},
    },
    openapi_extra=_ADD_ARTICLES_BODY,
    tags=["articles"],
)
async def add_articles(
    request: Request,
    response: Response,
    pipeline: PipelineDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> IngestReport:
    """Add articles sent as JSON (one object or a list) or as uploaded files (multipart
    field ``files``). Duplicates are skipped; bad records are reported."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        records = await _json_records(request)
        started = time.perf_counter()
        report = await run_in_threadpool(_add_records, pipeline, records)
    elif content_type == "multipart/form-data":
        files = await _uploaded_files(request)
        started = time.perf_counter()
        report = await run_in_threadpool(pipeline.add_files, files)
    else:
        raise HTTPException(
            415,
            "send articles as JSON (Content-Type: application/json) "
            "or as files (Content-Type: multipart/form-data)",
        )
    metrics.observe_write("add", time.perf_counter() - started, report)
    _log_ingest(report, settings.log_questions)
    if report.rejected and not report.added:
        reasons = "; ".join(f"{r.name}: {r.reason}" for r in report.rejected)
        raise HTTPException(422, f"nothing was added: {reasons}")
    if not report.added:
        response.status_code = 200
    return report


@router.delete(
    "/articles/{article_id}",
    status_code=204,
    dependencies=[Depends(require_api_key)],
    responses={**_WRITE, **_NOT_FOUND, **_INVALID},
    tags=["articles"],
)
def delete_article(
    article_id: Annotated[ArticleId, Path()], pipeline: PipelineDep, metrics: MetricsDep
) -> None:
    """Remove an article and its passages from the index."""
    started = time.perf_counter()
    deleted = pipeline.delete(article_id)
    metrics.observe_write("delete", time.perf_counter() - started, None)
    if not deleted:
        raise _not_found(article_id)
    logger.info("deleted article %s", article_id, extra={"article_id": article_id})


@router.get("/health", tags=["service"])
def health(pipeline: PipelineDep, settings: SettingsDep) -> Health:
    """Whether the service is up, with the model and the index's counts."""
    return Health.model_validate({**pipeline.stats(), "writable": bool(_configured_key(settings))})


# The probes and /metrics are for operators and their tools, not part of the API: they
# stay out of the OpenAPI schema.
@router.get("/health/live", include_in_schema=False)
def live() -> Liveness:
    """The process is up and answering (while the index may still be loading)."""
    return Liveness()


@router.get("/health/ready", include_in_schema=False, response_model=Readiness)
def ready(request: Request) -> Readiness | JSONResponse:
    """200 once the index is loaded and can be read, so a question can be answered;
    503 with the reason before that (loading, failed to load, unreadable)."""
    pipeline: Pipeline | None = request.app.state.pipeline
    if pipeline is None:
        return JSONResponse(_not_ready(request).model_dump(), status_code=503)
    pipeline.refresh()  # an unreadable index is a 503 from the IndexStoreError handler
    return Readiness(status="ready", detail="the index is loaded")


@router.get("/metrics", include_in_schema=False)
def metrics_page(
    request: Request,
    settings: SettingsDep,
    metrics: MetricsDep,
    key: Annotated[str | None, Security(_api_key_header)],
) -> Response:
    """Prometheus metrics: for loopback clients, every client with
    ``RAG_METRICS_PUBLIC=true``, and otherwise holders of the API key."""
    _check_metrics_access(request, settings, key)
    pipeline: Pipeline | None = request.app.state.pipeline
    if pipeline is not None:
        try:
            metrics.observe_index(IndexStats.model_validate(pipeline.stats()))
        except IndexStoreError as error:  # still serve the rest, with the error counted
            logger.error("index unavailable: %s", error)
            metrics.index_errors.inc()
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


def _ask(
    request: Request,
    pipeline: Pipeline,
    settings: Settings,
    metrics: ServiceMetrics,
    question: str,
    top_k: int,
    filters: AskFilters,
) -> AskResult:
    question = question.strip()
    if not _has_visible_text(question):
        raise HTTPException(422, "the question is empty")
    if len(question) > settings.max_question_chars:
        raise HTTPException(
            422,
            f"the question is {len(question):,} characters long; "
            f"the limit is {settings.max_question_chars:,}",
        )
    if settings.log_questions:
        setattr(request.state, QUESTION, question)
    result = pipeline.ask(
        question, top_k=top_k, where=filters.to_filter(), on_stage=metrics.observe_stage
    )
    metrics.observe_answer(result)
    setattr(request.state, ANSWERED, bool(result.answers))
    return result


async def _json_records(request: Request) -> list[Any]:
    """The article records of a JSON body: one object or a list of them."""
    try:
        document = await request.json()
    except json.JSONDecodeError as error:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", error.pos),
                    "msg": "JSON decode error",
                    "ctx": {"error": error.msg},
                }
            ]
        ) from None
    except UnicodeDecodeError:
        raise HTTPException(422, "the request body is not valid UTF-8") from None
    records = document if isinstance(document, list) else [document]
    if not records:
        raise HTTPException(422, "the request body holds no article")
    return records


def _add_records(pipeline: Pipeline, records: list[Any]) -> IngestReport:
    """Add the articles among JSON records; the bad ones are reported as rejected."""
    report = IngestReport()
    articles: list[tuple[str, Article]] = []
    for number, record in enumerate(records, start=1):
        where = f"record {number}"
        try:
            articles.append((where, parse_record(record, where=where)))
        except ArticleError as error:
            report.rejected.append(Rejection(name=where, reason=error.reason))
    return pipeline.add(articles, report=report)


async def _uploaded_files(request: Request) -> list[tuple[str, bytes]]:
    """The files of a multipart upload as ``(file name, content)`` pairs."""
    async with request.form() as form:
        uploads = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        if not uploads:
            raise HTTPException(422, "no file in the upload: send them in a field 'files'")
        return [(upload.filename or "upload", await upload.read()) for upload in uploads]


def _has_visible_text(text: str) -> bool:
    """Whether ``text`` holds a letter, digit, punctuation mark or symbol: zero-width and
    other invisible characters alone make a blank question."""
    return any(unicodedata.category(char)[0] in "LNPS" for char in text)


def _not_ready(request: Request) -> Readiness:
    """Why the pipeline is not there: the index is loading, or it failed to load."""
    if request.app.state.load_failed:
        return Readiness(
            status="failed", detail="the index could not be loaded; see the service log"
        )
    return Readiness(status="loading", detail="the index is loading; try again shortly")


def _check_metrics_access(request: Request, settings: Settings, key: str | None) -> None:
    if settings.metrics_public or _is_loopback(request.client.host if request.client else ""):
        return
    expected = _configured_key(settings)
    if not expected:
        raise HTTPException(
            403,
            "/metrics is served to loopback clients only: set RAG_METRICS_PUBLIC=true to "
            "serve it to everyone, or set RAG_API_KEY and send it in the X-API-Key header",
        )
    if key is None or not hmac.compare_digest(key.encode(), expected.encode()):
        raise HTTPException(
            401, "missing or wrong X-API-Key header", headers={"WWW-Authenticate": "X-API-Key"}
        )


def _is_loopback(host: str) -> bool:
    """Whether a client address is loopback (``127.0.0.0/8``, ``::1``, or IPv4 loopback
    mapped into IPv6); host names and unknown clients are not."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _log_ingest(report: IngestReport, with_titles: bool) -> None:
    """One line per write over HTTP: counts and ids; titles only with ``log_questions``
    (they are article text)."""
    ids = [article.id for article in report.added]
    fields: dict[str, Any] = {"articles_added": ids, "chunks_added": report.chunks_added}
    if with_titles:
        fields["titles"] = [article.title for article in report.added]
    logger.info(
        "added %d articles (%d chunks), skipped %d duplicates, rejected %d",
        len(report.added),
        report.chunks_added,
        len(report.duplicates),
        len(report.rejected),
        extra=fields,
    )


def _not_found(article_id: str) -> HTTPException:
    return HTTPException(404, f"no article with id {article_id!r}")


def _configured_key(settings: Settings) -> str:
    return settings.api_key.get_secret_value() if settings.api_key else ""
