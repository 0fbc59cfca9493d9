"""One access-log line and the HTTP metrics of every request."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import ServiceMetrics
from rag.text import printable

logger = logging.getLogger("api.access")

UNMATCHED = "unmatched"
"""The route label of a request no route matches (a 404), so that clients cannot make
up new label values."""

ANSWERED = "answered"
QUESTION = "question"
"""Keys of ``scope["state"]`` (``request.state``) that ``/ask`` sets for its log line."""


class AccessLog:
    """Logs each request once it is answered (method, path without its query string,
    status, duration; for ``/ask`` whether it answered, and the question only with
    ``log_questions``) and observes the HTTP metrics by route template and status.

    Both happen before the response's last byte is sent, so a client that has its
    answer finds it counted.
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: ServiceMetrics,
        routes: list[BaseRoute],
        log_questions: bool = False,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self.log_questions = log_questions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        scope.setdefault("state", {})
        status = 500
        done = False

        async def observed_send(message: Message) -> None:
            nonlocal status, done
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                done = True
                self._record(scope, status, time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            if not done:  # an unhandled error (answered 500 further out) or a lost client
                self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        method: str = scope["method"]
        route = self._route(scope)
        self.metrics.observe_request(method, route, status, seconds)
        path = _one_line(scope["path"])
        fields: dict[str, Any] = {
            "method": method,
            "path": path,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
        }
        message = f"{method} {path} {status} {seconds * 1000:.1f} ms"
        state = scope["state"]
        if ANSWERED in state:
            fields[ANSWERED] = bool(state[ANSWERED])
            message += " answered" if state[ANSWERED] else " abstained"
        if self.log_questions and QUESTION in state:
            fields[QUESTION] = state[QUESTION]
            message += f" question={_one_line(state[QUESTION])!r}"
        logger.info(message, extra=fields)

    def _route(self, scope: Scope) -> str:
        """The template of the route that answered (``/articles/{article_id}``), found
        again for requests answered before routing (a 413 from the body limit)."""
        route = scope.get("route")
        if route is None:
            route = next((r for r in self.routes if r.matches(scope)[0] is not Match.NONE), None)
        path = getattr(route, "path", None)
        return path if isinstance(path, str) and path else UNMATCHED


def _one_line(text: str) -> str:
    """``text`` with control characters and line breaks escaped: it cannot start a
    forged log line."""
    return printable(text).replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
