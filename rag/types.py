"""Result types at the pipeline's boundary, shared by the CLI, the API and the harness."""

from __future__ import annotations

from pydantic import BaseModel, Field


class TextSpan(BaseModel):
    """Verbatim article text with its offsets: ``article.text[start:end] == text``."""

    text: str
    start: int
    end: int


class Answer(BaseModel):
    """A verbatim answer: ``article.text[start:end] == text``, inside ``context``."""

    text: str
    score: float = Field(ge=0.0, le=1.0, description="Calibrated probability the answer is right")
    article_id: str
    title: str
    url: str | None
    start: int = Field(description="Offset of the answer in the article text")
    end: int
    passage_id: str = Field(description="The cited passage the answer was found in")
    context: TextSpan = Field(description="The sentence the answer stands in")
    unsure: bool = Field(
        default=False,
        description="The score is below RAG_UNSURE_BELOW (default .5): more likely wrong "
        "than right; show it as a possible answer, to check against its sentence (absent "
        "from services that speak the contract without it: not marked)",
    )


class Passage(BaseModel):
    """A retrieved chunk of an article, cited as evidence."""

    passage_id: str
    article_id: str
    title: str
    url: str | None
    text: str
    start: int
    end: int
    score: float = Field(ge=0.0, le=1.0, description="Retrieval score (fused, normalised)")


class AskResult(BaseModel):
    """The answers to one question (best first; empty means no answer in the articles)."""

    question: str
    answers: list[Answer]
    passages: list[Passage]
    took_ms: float


class ArticleSummary(BaseModel):
    """An indexed article without its text."""

    id: str
    title: str
    url: str | None
    source: str | None
    published: str | None
    chunks: int


class ArticleDetail(ArticleSummary):
    """An indexed article with the text every offset refers to."""

    dateline: str | None
    text: str


class Rejection(BaseModel):
    """An input that was not ingested, and why."""

    name: str
    reason: str


class IngestReport(BaseModel):
    """What one ingest did."""

    added: list[ArticleSummary] = Field(default_factory=list)
    duplicates: list[Rejection] = Field(default_factory=list)
    rejected: list[Rejection] = Field(default_factory=list)

    @property
    def chunks_added(self) -> int:
        return sum(a.chunks for a in self.added)
