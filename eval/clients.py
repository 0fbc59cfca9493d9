"""Who answers the questions: the pipeline in this process, or a running service over HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import httpx

from rag.pipeline import Pipeline
from rag.types import AskResult
from records import ArticleFilter


@dataclass(frozen=True)
class StoredArticle:
    """The parts of an indexed article the harness needs: its text and where it came from."""

    id: str
    text: str
    source: str | None


class Answerer(Protocol):
    """Anything that answers questions the way ``POST /ask`` does."""

    def ask(self, question: str, top_k: int, excluded: tuple[str, ...] = ()) -> AskResult:
        """The answers and passages for one question (without the ``excluded`` articles)."""
        ...

    def article(self, article_id: str) -> StoredArticle | None:
        """The stored article the offsets refer to, or ``None`` if it is unknown."""
        ...


class InProcessAnswerer:
    """Calls a :class:`Pipeline` directly."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def ask(self, question: str, top_k: int, excluded: tuple[str, ...] = ()) -> AskResult:
        where = ArticleFilter(excluded_article_ids=excluded) if excluded else None
        return self.pipeline.ask(question, top_k=top_k, where=where)

    def article(self, article_id: str) -> StoredArticle | None:
        found = self.pipeline.article(article_id)
        return None if found is None else StoredArticle(found.id, found.text, found.source)


class HttpAnswerer:
    """Calls a running service: ``POST {url}/ask`` and ``GET {url}/articles/{id}``."""

    def __init__(self, url: str, timeout_s: float = 30.0, api_key: str | None = None) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s, headers=headers)

    def ask(self, question: str, top_k: int, excluded: tuple[str, ...] = ()) -> AskResult:
        if excluded:
            raise ValueError("a running service cannot be asked to leave an article out")
        response = self.client.post("/ask", json={"question": question, "top_k": top_k})
        response.raise_for_status()
        return AskResult.model_validate(response.json())

    def article(self, article_id: str) -> StoredArticle | None:
        response = self.client.get(f"/articles/{article_id}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        data = response.json()
        return StoredArticle(str(data["id"]), str(data["text"]), data.get("source"))

    def close(self) -> None:
        self.client.close()
