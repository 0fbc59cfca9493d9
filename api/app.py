"""The FastAPI application: the endpoints, the web form, error handling and startup."""

from __future__ import annotations

import logging
import logging.config
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from swagger_ui_bundle import swagger_ui_path

from api.access import AccessLog
from api.logs import (
    REQUEST_ID_HEADER,
    current_request_id,
    log_config,
    new_request_id,
    sane_request_id,
)
from api.metrics import ServiceMetrics
from api.models import IndexStats
from api.routes import router
from index.protocol import IndexStoreError
from rag.pipeline import Pipeline
from rag.settings import Settings

STATIC_DIR = Path(__file__).parent / "static"

logger = logging.getLogger(__name__)

READY_MESSAGE = "index loaded: ready"
"""Logged by each worker once its index is loaded (a harness may count these lines)."""

_PAGE_HEADERS = {
    # Defence in depth: the page's own script builds article text as text nodes.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app(
    settings: Settings,
    pipeline: Pipeline | None = None,
    *,
    load_in_background: bool = False,
    configure_logging: bool = False,
) -> FastAPI:
    """Build the service. Without ``pipeline`` the index is loaded at startup (and built
    from the sample articles when there is none): before the service answers anything,
    or, with ``load_in_background``, on a thread while it already answers ``/health/live``
    (and 503, saying why, where the index is needed). ``configure_logging`` sets up the
    service log from ``RAG_LOG_*`` at startup (:func:`api.logs.log_config`)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if configure_logging:
            logging.config.dictConfig(log_config(settings))
        loading = None
        if app.state.pipeline is None and load_in_background:
            loading = threading.Thread(
                target=_load_pipeline, args=(app, settings), name="load-index", daemon=True
            )
            loading.start()
        else:
            if app.state.pipeline is None:
                app.state.pipeline = await run_in_threadpool(Pipeline.open, settings)
            await run_in_threadpool(_observe_index, app)
        yield
        if loading is not None and loading.is_alive():  # e.g. still indexing the samples
            logger.info("waiting for the index to finish loading before exiting")
            await run_in_threadpool(loading.join, settings.shutdown_timeout_s)

    app = FastAPI(
        title="News QA",
        summary="Extractive, cited answers to questions about indexed news articles.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served below from the installed Swagger UI files, not a CDN
        redoc_url=None,
        exception_handlers={
            RequestValidationError: _invalid_request,
            400: _unreadable_body,
            405: _method_not_allowed,
            IndexStoreError: _index_unavailable,
            Exception: _internal_error,
        },
    )
    app.state.settings = settings
    app.state.pipeline = pipeline
    app.state.load_failed = False
    app.state.metrics = ServiceMetrics()
    app.include_router(router)
    app.add_api_route("/", _page, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_api_route("/docs", _docs, include_in_schema=False)
    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes)
    if settings.cors_origins:  # closed by default: no CORS headers, no preflight answers
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Content-Type", "X-API-Key", REQUEST_ID_HEADER],
            expose_headers=[REQUEST_ID_HEADER],
        )
    app.add_middleware(
        AccessLog,
        metrics=app.state.metrics,
        routes=app.router.routes,
        log_questions=settings.log_questions,
    )
    app.add_middleware(  # outermost but for errors: every other layer sees the id
        CorrelationIdMiddleware,
        header_name=REQUEST_ID_HEADER,
        generator=new_request_id,
        validator=sane_request_id,
    )
    return app


def create_app_from_env() -> FastAPI:
    """The service configured by ``RAG_*`` environment variables: the factory each
    worker process calls (``uvicorn api.app:create_app_from_env --factory``). It answers
    ``/health/live`` at once and loads the index in the background."""
    return create_app(Settings(), load_in_background=True, configure_logging=True)


def _load_pipeline(app: FastAPI, settings: Settings) -> None:
    """Open the pipeline (on the loading thread) and publish it on ``app.state``."""
    try:
        pipeline = Pipeline.open(settings)
    except Exception:
        logger.exception("the index could not be loaded; the service stays unready")
        app.state.load_failed = True
        return
    app.state.pipeline = pipeline
    _observe_index(app)
    logger.info(READY_MESSAGE)


def _observe_index(app: FastAPI) -> None:
    """Set the index gauges from the pipeline's current index."""
    try:
        stats = IndexStats.model_validate(app.state.pipeline.stats())
    except IndexStoreError as error:
        logger.error("index unavailable: %s", error)
        return
    metrics: ServiceMetrics = app.state.metrics
    metrics.observe_index(stats)


class BodyLimit:
    """Answer 413 to a request body over ``max_bytes``, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.message = (
            f"the request body is over the limit of {max_bytes:,} bytes (RAG_MAX_UPLOAD_BYTES)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await JSONResponse({"detail": self.message}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, self.message)  # answered by the exception handlers
            return message

        await self.app(scope, limited_receive, send)


async def _page() -> FileResponse:
    """The web form."""
    return FileResponse(STATIC_DIR / "index.html", headers=_PAGE_HEADERS)


async def _docs() -> HTMLResponse:
    """Swagger UI for the API, from the files of the ``swagger-ui-bundle-v2`` package, so
    it works offline."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="News QA API",
        swagger_js_url="/docs-assets/swagger-ui-bundle.js",
        swagger_css_url="/docs-assets/swagger-ui.css",
        swagger_favicon_url="/docs-assets/favicon-32x32.png",
    )


async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    detail = "; ".join(_describe(problem) for problem in error.errors())
    return JSONResponse({"detail": detail}, status_code=422)


def _describe(problem: Mapping[str, Any]) -> str:
    """One validation problem as a sentence: ``top_k: Input should be …``."""
    if problem["type"] == "json_invalid":
        return f"malformed JSON: {problem['ctx']['error']} at character {problem['loc'][-1]}"
    where = ".".join(str(part) for part in problem["loc"][1:]) or "request body"
    return f"{where}: {problem['msg']}"


async def _unreadable_body(request: Request, error: StarletteHTTPException) -> JSONResponse:
    """A body that cannot be parsed (not UTF-8, broken multipart) is invalid input like
    any other: a 422 saying why."""
    if isinstance(error.__cause__, UnicodeDecodeError):
        detail = "the request body is not valid UTF-8"
    else:
        detail = f"the request body cannot be read: {error.detail}"
    return JSONResponse({"detail": detail}, status_code=422)


async def _method_not_allowed(request: Request, error: StarletteHTTPException) -> JSONResponse:
    """405 whose ``Allow`` header names every method of the path (Starlette's names
    only those of the first route with a matching path)."""
    routes = [*router.routes, *request.app.router.routes]  # the API's and the app's own
    methods = {
        method
        for route in routes
        if isinstance(route, Route) and route.matches(request.scope)[0] is not Match.NONE
        for method in route.methods or ()
    }
    headers = {"Allow": ", ".join(sorted(methods))} if methods else error.headers
    return JSONResponse({"detail": error.detail}, status_code=405, headers=headers)


async def _index_unavailable(request: Request, error: IndexStoreError) -> JSONResponse:
    logger.error("index unavailable: %s", error)
    metrics: ServiceMetrics = request.app.state.metrics
    metrics.index_errors.inc()
    return JSONResponse(
        {"detail": "the index cannot be read right now; see the service log"}, status_code=503
    )


async def _internal_error(request: Request, error: Exception) -> JSONResponse:
    # The server logs the traceback; the client learns nothing about the internals. This
    # answer is sent from outside the other middleware, so it adds the request id itself.
    request_id = current_request_id()
    return JSONResponse(
        {"detail": "internal error: the request failed; see the service log"},
        status_code=500,
        headers={REQUEST_ID_HEADER: request_id} if request_id else None,
    )
