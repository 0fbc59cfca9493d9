"""Question sets: our JSONL sample and any file in the SQuAD v1.1 JSON layout."""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.articles import Article, ArticleError, iter_article_files, parse_bytes

SPLITS = ("dev", "test")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class DatasetError(ValueError):
    """A question file that cannot be read; the message names the file and the line."""


@dataclass(frozen=True)
class Example:
    """One question with its acceptable answers (none: the articles cannot answer it).

    ``article`` is the gold article's key: an article id, or the stem of the file the
    article came from (``zelenskyy-outlines-victory-plan``).
    """

    id: str
    question: str
    answers: tuple[str, ...]
    article: str | None
    split: str

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


@dataclass(frozen=True)
class QuestionSet:
    """Questions plus, for external sets, the articles they are asked over."""

    name: str
    examples: tuple[Example, ...]
    articles: tuple[Article, ...] = ()
    fingerprint: str = field(default="", compare=False)

    def select(self, split: str | None, limit: int | None, seed: int = 0) -> QuestionSet:
        """The questions of one split (``None``: all), then a fixed random sample of them."""
        chosen = [e for e in self.examples if split is None or e.split == split]
        if limit is not None and limit < len(chosen):
            chosen = sorted(random.Random(seed).sample(chosen, limit), key=lambda e: e.id)
        return QuestionSet(self.name, tuple(chosen), self.articles, self.fingerprint)


def load_jsonl(path: Path) -> QuestionSet:
    """Read our question file: one JSON object a line with ``id``, ``split``, ``question``,
    ``answers`` (empty for unanswerable questions), ``article`` and ``answerable``."""
    examples: list[Example] = []
    seen: set[str] = set()
    text = _read(path)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DatasetError(f"{where}: invalid JSON ({error.msg})") from None
        example = _example(record, where)
        if example.id in seen:
            raise DatasetError(f"{where}: duplicate id {example.id!r}")
        seen.add(example.id)
        examples.append(example)
    return QuestionSet(path.stem, tuple(examples), fingerprint=_digest(text))


def load_squad(path: Path, seed: int = 0) -> QuestionSet:
    """Read a file in the SQuAD v1.1 layout: each article's paragraphs are joined into one
    article (blank line between paragraphs), and each question is assigned a fixed split
    (``dev`` or ``test``, half each, by a hash of its id) so tuning never sees test."""
    text = _read(path)
    try:
        document = json.loads(text)
        entries: list[dict[str, Any]] = document["data"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise DatasetError(f"{path}: not a SQuAD JSON file ({error})") from None
    articles: list[Article] = []
    examples: list[Example] = []
    for position, entry in enumerate(entries):
        try:
            title = str(entry["title"])
            paragraphs = entry["paragraphs"]
            article_id = _ID_UNSAFE.sub("-", title)[:128] or f"article-{position}"
            body = "\n\n".join(p["context"].strip() for p in paragraphs)
            articles.append(
                Article.create(title.replace("_", " "), body, id=article_id, source=path.name)
            )
            for paragraph in paragraphs:
                for qa in paragraph["qas"]:
                    examples.append(
                        Example(
                            id=str(qa["id"]),
                            question=str(qa["question"]),
                            answers=tuple(dict.fromkeys(a["text"] for a in qa["answers"])),
                            article=article_id,
                            split=_hash_split(str(qa["id"]), seed),
                        )
                    )
        except (KeyError, TypeError, ArticleError) as error:
            raise DatasetError(f"{path}: article {position} is malformed ({error})") from None
    return QuestionSet(path.stem, tuple(examples), tuple(articles), _digest(text))


def _example(record: Any, where: str) -> Example:
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: expected a JSON object")
    for key in ("id", "question", "split"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise DatasetError(f"{where}: field {key!r} must be a non-empty string")
    if record["split"] not in SPLITS:
        raise DatasetError(f"{where}: split must be one of {SPLITS}, not {record['split']!r}")
    answers = record.get("answers", [])
    if not isinstance(answers, list) or not all(isinstance(a, str) and a for a in answers):
        raise DatasetError(f"{where}: 'answers' must be a list of non-empty strings")
    if "answerable" in record and bool(record["answerable"]) != bool(answers):
        raise DatasetError(f"{where}: 'answerable' disagrees with 'answers'")
    article = record.get("article")
    if answers and not isinstance(article, str):
        raise DatasetError(f"{where}: an answerable question needs its gold 'article'")
    return Example(
        id=record["id"],
        question=record["question"],
        answers=tuple(answers),
        article=article if answers else None,
        split=record["split"],
    )


def _hash_split(question_id: str, seed: int) -> str:
    digest = hashlib.sha256(f"{seed}:{question_id}".encode()).digest()
    return SPLITS[digest[0] % 2]


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"question file not found: {path}") from None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_articles(directory: Path) -> tuple[tuple[Article, ...], str]:
    """The articles of a folder of article files, and a fingerprint of their bytes."""
    articles: list[Article] = []
    digest = hashlib.sha256()
    for path in iter_article_files([directory]):
        data = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + data)
        parsed, _ = parse_bytes(data, path.name)
        articles.extend(parsed)
    if not articles:
        raise DatasetError(f"no articles found in {directory}")
    return tuple(articles), digest.hexdigest()[:16]
