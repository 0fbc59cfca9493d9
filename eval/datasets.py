"""Question sets: our JSONL sample and any file in the SQuAD v1.1 JSON layout."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.answering import named_terms
from rag.articles import ArticleError, create_article, iter_article_files, parse_bytes
from records import Article

SPLITS = ("dev", "test")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_NEWS_URL = re.compile(
    r"^https?://[^/]+/(?:(\d{4})/(\d{2})/(\d{2})/)?(?:[^/]+/)*([^/]+?)(?:\.html?)?/?$"
)


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
    context: str | None = None
    """The paragraph the question was written about (SQuAD-layout sets): what a reader
    is given in the closed-context measurement."""
    source: str | None = None
    """The document the gold article was cut from (a paragraph's Wikipedia article or
    product), when articles are paragraphs; ``None``: the gold article is the document."""
    excluded: tuple[str, ...] = ()
    """Articles the question is asked without (made unanswerable by removing its gold
    document from what may answer it)."""

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


def load_squad(path: Path, seed: int = 0, by_paragraph: bool = False) -> QuestionSet:
    """Read a file in the SQuAD v1.1 layout.

    Each article's paragraphs are joined into one article (blank line between them), or,
    ``by_paragraph``, each paragraph is an article of its own, so that the gold article
    is the very paragraph the question was written about. Each question is assigned a
    fixed split (``dev`` or ``test``, half each, by a hash of its id).
    """
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
            raw_title = str(entry["title"])
            title, url, published = _squad_title(raw_title)
            paragraphs = entry["paragraphs"]
            article_id = _ID_UNSAFE.sub("-", raw_title)[:120] or f"article-{position}"
            about = {"url": url, "published": published, "source": path.name}
            if by_paragraph:
                for number, paragraph in enumerate(paragraphs, start=1):
                    articles.append(
                        create_article(
                            f"{title} ({number})",
                            paragraph["context"].strip(),
                            id=f"{article_id}-{number}",
                            **about,
                        )
                    )
            else:
                body = "\n\n".join(p["context"].strip() for p in paragraphs)
                articles.append(create_article(title, body, id=article_id, **about))
            for number, paragraph in enumerate(paragraphs, start=1):
                for qa in paragraph["qas"]:
                    examples.append(
                        Example(
                            id=str(qa["id"]),
                            question=str(qa["question"]),
                            answers=tuple(dict.fromkeys(a["text"] for a in qa["answers"])),
                            article=f"{article_id}-{number}" if by_paragraph else article_id,
                            split=_hash_split(str(qa["id"]), seed),
                            context=paragraph["context"],
                            source=article_id if by_paragraph else None,
                        )
                    )
        except (KeyError, TypeError, ArticleError) as error:
            raise DatasetError(f"{path}: article {position} is malformed ({error})") from None
    name = f"{path.stem}-paragraphs" if by_paragraph else path.stem
    return QuestionSet(name, tuple(examples), tuple(articles), _digest(text + str(by_paragraph)))


def _squad_title(title: str) -> tuple[str, str | None, str | None]:
    """A SQuAD-layout article's title, URL and publication date: Wikipedia titles are
    names (``Super_Bowl_50``); SQuADShifts' NYT titles are the article's URL, whose last
    segment names it and whose path may hold its date."""
    found = _NEWS_URL.match(title)
    if found is None:
        return title.replace("_", " "), None, None
    year, month, day, slug = found.groups()
    name = slug.replace("-", " ").replace("_", " ").strip()
    published = f"{year}-{month}-{day}" if year else None
    return (name[:1].upper() + name[1:]) or title, title, published


def with_removal(questions: QuestionSet, whole: QuestionSet | None = None) -> QuestionSet:
    """The set plus, for each answerable question, the same question asked without its
    gold document (every article cut from it, as listed by the questions of ``whole``, by
    default the set itself): unanswerable by construction, so it must abstain. Removing
    only the gold paragraph would not do: a sibling paragraph often holds the answer too."""
    documents: dict[str, set[str]] = {}
    for example in (whole or questions).examples:
        if example.article is not None:
            documents.setdefault(example.source or example.article, set()).add(example.article)
    removed = [
        dataclasses.replace(
            e,
            id=f"{e.id}#removed",
            answers=(),
            article=None,
            excluded=tuple(sorted(documents[e.source or e.article])),
        )
        for e in questions.examples
        if e.answerable and e.article is not None
    ]
    examples = (*questions.examples, *removed)
    return QuestionSet(questions.name, examples, questions.articles, questions.fingerprint)


NamedTermPool = dict[bool, list[str]]
"""The names (``False``) and numbers (``True``) that a set's questions ask about."""


def named_term_pool(questions: Sequence[str]) -> NamedTermPool:
    """Every name and number asked about in ``questions``, names and numbers apart."""
    pool: NamedTermPool = {True: [], False: []}
    for question in questions:
        for match in named_terms(question):
            pool[match.group()[0].isdigit()].append(match.group())
    return pool


def swap_named_term(
    question: str, context: str, pool: NamedTermPool, rng: random.Random
) -> str | None:
    """``question`` with one of its names or numbers that ``context`` holds swapped for one
    of ``pool`` (a number for a number) that neither the context nor the question holds:
    a near miss, the topic there and what is asked about not; ``None`` when the question
    has no such term (or ten draws found no replacement)."""
    held = [match for match in named_terms(question) if match.group() in context]
    if not held:
        return None
    swapped = rng.choice(held)
    in_context, in_question = context.lower(), question.lower()
    options = pool[swapped.group()[0].isdigit()]
    for _ in range(10):
        other = rng.choice(options)
        if other.lower() not in in_context and other.lower() not in in_question:
            return question[: swapped.start()] + other + question[swapped.end() :]
    return None


def near_misses(questions: QuestionSet, whole: QuestionSet, seed: int = 0) -> QuestionSet:
    """The near misses of the set's answerable questions: each that has a name or number
    its paragraph holds, with that term swapped for another question's (of ``whole``)
    that the paragraph lacks, asked over every article. Unanswerable by construction
    ("How much has the UK promised?" over France's pledge), they must abstain though
    their topic is there."""
    pool = named_term_pool([e.question for e in whole.examples])
    rng = random.Random(seed)
    missed = []
    for example in questions.examples:
        if not example.answerable or example.context is None:
            continue
        question = swap_named_term(example.question, example.context, pool, rng)
        if question is not None:
            missed.append(
                dataclasses.replace(
                    example,
                    id=f"{example.id}#near-miss",
                    question=question,
                    answers=(),
                    article=None,
                )
            )
    return QuestionSet(questions.name, tuple(missed), questions.articles, questions.fingerprint)


ONE_POST_PER_PARAGRAPH = 100
"""A file whose "article" holds more paragraphs than this (SQuADShifts Reddit keeps every
post under one title) is split by paragraph: each paragraph is its own article."""


@dataclass(frozen=True)
class QAExample:
    """A question about one paragraph, with its answers' character offsets (training)."""

    id: str
    question: str
    context: str
    answers: tuple[tuple[str, int], ...]
    """``(text, start)`` pairs; ``context[start:start + len(text)] == text``."""
    article: str
    """The group a dev split keeps together: ``source/title`` (or a paragraph of it)."""


def load_paragraph_examples(path: Path) -> list[QAExample]:
    """The questions of one SQuAD-layout file whose answers are verbatim in their paragraph."""
    source = path.stem
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    examples: list[QAExample] = []
    for article in data:
        paragraphs = article["paragraphs"]
        split_posts = len(paragraphs) > ONE_POST_PER_PARAGRAPH
        for number, paragraph in enumerate(paragraphs):
            context = paragraph["context"]
            group = f"{source}/{article['title']}" + (f"#{number}" if split_posts else "")
            for qa in paragraph["qas"]:
                answers = tuple(
                    (a["text"], int(a["answer_start"]))
                    for a in qa["answers"]
                    if context[a["answer_start"] : a["answer_start"] + len(a["text"])] == a["text"]
                    and a["text"].strip()
                )
                if answers and qa["question"].strip():
                    examples.append(
                        QAExample(qa["id"], qa["question"].strip(), context, answers, group)
                    )
    return examples


def in_dev_split(article: str, dev_fraction: float, seed: int) -> bool:
    """Whether an article belongs to the dev split (a stable hash, whole articles only)."""
    digest = hashlib.sha256(f"{seed}:{article}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < dev_fraction


def load_held_out(paths: Sequence[Path], dev_fraction: float, seed: int) -> QuestionSet:
    """The reader's held-out dev questions (the articles it was not trained on), each
    paragraph an article of its own; every question is in the ``dev`` split."""
    articles: dict[str, Article] = {}
    examples: list[Example] = []
    digest = hashlib.sha256(f"{dev_fraction}:{seed}".encode())
    for path in paths:
        if not path.is_file():
            raise DatasetError(f"reader training file not found: {path}")
        digest.update(path.read_bytes())
        for qa in load_paragraph_examples(path):
            if not in_dev_split(qa.article, dev_fraction, seed):
                continue
            article_id = f"{path.stem}-{_digest(qa.context)[:12]}"
            if article_id not in articles:
                title = qa.article.split("/", 1)[1].split("#")[0].replace("_", " ")
                articles[article_id] = create_article(
                    title or path.stem, qa.context.strip(), id=article_id, source=path.name
                )
            answers = tuple(dict.fromkeys(text for text, _ in qa.answers))
            examples.append(
                Example(qa.id, qa.question, answers, article_id, "dev", qa.context, qa.article)
            )
    name = "shifts"
    return QuestionSet(name, tuple(examples), tuple(articles.values()), digest.hexdigest()[:16])


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
