"""Request and response models of the HTTP API (the results reuse :mod:`rag.types`)."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from rag.text import check_text
from rag.types import ArticleSummary
from records import ARTICLE_ID_PATTERN, ArticleFilter

Text = Annotated[str, AfterValidator(check_text)]
"""A string that is valid text (:mod:`rag.text`): no lone surrogates, no control
characters but tab and line breaks; otherwise a 422 naming the field."""
TopK = Annotated[int, Field(ge=1, le=50, description="How many passages to retrieve (1-50).")]
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_date_only(value: object) -> object:
    """Let only ``YYYY-MM-DD`` strings through: pydantic alone also reads numbers and
    numeric strings as Unix times, which the schema's ``format: date`` does not allow."""
    if isinstance(value, date) or (isinstance(value, str) and _ISO_DATE.fullmatch(value)):
        return value
    raise ValueError("expected a date as YYYY-MM-DD")


IsoDate = Annotated[date, BeforeValidator(_iso_date_only)]
ArticleId = Annotated[
    str,
    Field(
        pattern=ARTICLE_ID_PATTERN.pattern,
        description="1-128 letters, digits, '.', '_' or '-', starting with a letter or digit.",
    ),
]


class AskFilters(BaseModel):
    """Optional restrictions on which articles may answer."""

    source: Text | None = Field(default=None, description="Only articles from this source.")
    published_after: IsoDate | None = Field(
        default=None, description="Only articles published on or after this date."
    )
    published_before: IsoDate | None = Field(
        default=None, description="Only articles published on or before this date."
    )
    article_ids: list[ArticleId] | None = Field(
        default=None, min_length=1, max_length=1000, description="Only these articles."
    )

    def to_filter(self) -> ArticleFilter:
        return ArticleFilter(
            source=self.source,
            published_after=_iso(self.published_after),
            published_before=_iso(self.published_before),
            article_ids=tuple(self.article_ids) if self.article_ids is not None else None,
        )


class AskRequest(AskFilters):
    """The body of ``POST /ask``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"question": "What aid did Macron commit?", "top_k": 5}]},
    )

    question: Text = Field(description="The question, in plain words.")
    top_k: TopK = Field(default=5, strict=True)


class AskQuery(AskFilters):
    """The query string of ``GET /ask``."""

    q: Text = Field(description="The question, in plain words.")
    top_k: TopK = 5


class IndexStats(BaseModel):
    """Counts and provenance of the current index."""

    model_name: str
    articles: int
    chunks: int
    format_version: int | None
    generation: int


class Health(IndexStats):
    """The answer of ``GET /health``."""

    status: Literal["ok"] = "ok"
    writable: bool = Field(description="Whether writes are enabled (RAG_API_KEY is set).")
    answerer: Literal["reader", "sentence"] = Field(description="What picks the answers.")
    reader: str | None = Field(
        description="SHA-256 prefix of the span reader's graph (null with the sentence answerer)."
    )


class Liveness(BaseModel):
    """The answer of ``GET /health/live``: the process is up."""

    status: Literal["alive"] = "alive"


class Readiness(BaseModel):
    """The answer of ``GET /health/ready``: whether a question can be answered now."""

    status: Literal["ready", "loading", "failed"]
    detail: str = Field(description="Why, in a sentence.")


class ArticlePage(BaseModel):
    """One page of the indexed articles, in the order they were added."""

    total: int
    offset: int
    limit: int
    articles: list[ArticleSummary]


class ArticleIn(BaseModel):
    """One article sent as JSON to ``POST /articles`` (a list of them is accepted too)."""

    title: Text
    text: Text
    id: ArticleId | None = Field(default=None, description="Default: a hash of title and text.")
    url: Text | None = None
    source: Text | None = None
    published: Text | None = Field(default=None, description="ISO date, e.g. 2024-10-10.")


class ErrorMessage(BaseModel):
    """Every error response: a sentence saying what was wrong."""

    detail: str


def _iso(day: date | None) -> str | None:
    return None if day is None else day.isoformat()
