"""The service log: request ids, text or JSON lines, and what may be logged.

Every request gets an id (by ``asgi-correlation-id``'s middleware): the client's
``X-Request-ID`` when it is a sane one (:func:`sane_request_id`), a new one otherwise. It
is returned in the ``X-Request-ID`` response header, and :class:`RequestIdFilter` puts it
in every log line written while the request is handled, whichever logger writes it.

``RAG_LOG_FORMAT=json`` writes one JSON object per line (``python-json-logger``), ``text``
(the default) plain lines. Questions and article text stay out of the log unless
``RAG_LOG_QUESTIONS=true``; paths are logged without their query string (``GET /ask?q=``
carries a question).
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any, Literal

from asgi_correlation_id.context import correlation_id
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from rag.settings import Settings

REQUEST_ID_HEADER = "X-Request-ID"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
JSON_FIELDS = "%(levelname)s %(name)s %(request_id)s %(message)s"
NO_REQUEST = "-"
"""The request id of a line written outside any request (start-up, shutdown)."""

_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+/=@-]{0,127}")


def sane_request_id(value: str) -> bool:
    """Whether a client's request id may be used as it is: 1-128 letters, digits and
    ``._:+/=@-`` (UUIDs, hex, base64, ``req-42``), so it cannot break a log line."""
    return _SANE_ID.fullmatch(value) is not None


def new_request_id() -> str:
    """A fresh request id: 32 hex digits of a random UUID."""
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    """The id of the request being handled, or ``None`` outside a request."""
    return correlation_id.get()


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record: the current request's id, or ``-``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = correlation_id.get() or NO_REQUEST
        return True


def make_formatter(log_format: Literal["text", "json"]) -> logging.Formatter:
    """The formatter of ``RAG_LOG_FORMAT``: JSON objects with ``time``, ``level``,
    ``logger``, ``request_id``, ``message`` and the record's extra fields, or text lines."""
    if log_format == "json":
        return JsonFormatter(
            JSON_FIELDS,
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
            # uvicorn adds an ANSI-coloured copy of some messages
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
        )
    return logging.Formatter(TEXT_FORMAT)


def log_config(settings: Settings) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for the service (uvicorn's ``log_config``):
    every logger, uvicorn's included, writes through one handler to stderr in
    ``RAG_LOG_FORMAT``, with request ids. uvicorn's own access log is off: it would log
    query strings, and the service writes its own (``api.access``)."""
    level = settings.log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "api.logs.RequestIdFilter"}},
        "formatters": {
            "service": {"()": "api.logs.make_formatter", "log_format": settings.log_format}
        },
        "handlers": {
            "service": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "service",
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["service"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
        },
    }
