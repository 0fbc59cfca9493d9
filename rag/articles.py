"""Parse article files (.txt, .md, .html, .json, .jsonl, .csv) into :class:`Article` records.

Text is kept as written (curly quotes, non-breaking spaces) so that character offsets
into ``Article.text`` stay exact; only line endings are normalised to ``\\n``.
Input must be UTF-8 (a byte-order mark is allowed) and valid text (:mod:`rag.text`: no
lone surrogates, no control characters but tab and line breaks); anything else is
rejected with the file or record named, never guessed at or repaired.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from bs4 import BeautifulSoup, Tag
from markdown_it import MarkdownIt

from rag.text import printable, text_problem
from records import ARTICLE_ID_PATTERN, Article, content_hash

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".json", ".jsonl", ".csv")
_URL_LINE = re.compile(r"^\s*(https?://\S+)\s*$")
_DATELINE = re.compile(r"^[A-Z][A-Z .,'\u2019-]{1,40}$")
_HTML_BLOCKS = (
    "p",
    "div",
    "li",
    "br",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "pre",
    "tr",
    "section",
    "article",
    "header",
    "footer",
    "figcaption",
)
RECORD_FIELDS: dict[str, tuple[str, ...]] = {
    "id": ("id", "article_id", "doc_id", "uuid"),
    "title": ("title", "headline", "heading"),
    "text": ("text", "body", "content", "article", "story", "maintext"),
    "url": ("url", "article_source_link", "link", "source_url", "article_url"),
    "published": (
        "published",
        "publish_date",
        "published_at",
        "publishedat",
        "date_publish",
        "date",
        "pubdate",
        "datetime",
    ),
    "source": ("source", "publisher", "outlet", "site", "source_domain"),
}
"""Article field -> the names a CSV column or a JSON file's record field may have for it
(case-insensitive; the first found wins): the names news exports and crawlers use."""
_MANGLED_QUOTE_SPACE = re.compile(r'"\?(?=\w)')
_HTML_MARKUP = re.compile(
    r"</?(?:p|br|div|span|a|b|i|em|strong|li|ul|ol|h[1-6]|blockquote|figure|img|table|tr|td)"
    r"(?:\s[^<>]*)?/?>",
    re.IGNORECASE,
)
"""Tags that mark a record's text as HTML (a "<" alone, as in "a < b", does not)."""
_DATE_FORMATS = (
    "%Y/%m/%d",
    "%Y-%m-%d",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%B %d, %Y",
    "%b %d, %Y",
    "%d %B %Y",
    "%d %b %Y",
)
_HTML_DROPPED = (
    "script",
    "style",
    "noscript",
    "template",
    "head",
    "title",
    "nav",
    "svg",
    "iframe",
    "aside",
    "form",
    "button",
    "dialog",
)


class ArticleError(ValueError):
    """A file or record that cannot be turned into an article.

    ``name`` says which (a file, or a record within one); ``str()`` gives both.
    """

    def __init__(self, reason: str, name: str | None = None) -> None:
        super().__init__(f"{name}: {reason}" if name else reason)
        self.reason = reason
        self.name = name


def create_article(
    title: str,
    text: str,
    *,
    id: str | None = None,
    url: str | None = None,
    source: str | None = None,
    published: str | None = None,
    dateline: str | None = None,
) -> Article:
    """Build a validated article; the id defaults to a hash of title and text.

    Every field must be valid text (:func:`rag.text.text_problem`), as given: it is
    checked before whitespace is normalised. A publication date written another way
    (``2017/2/7``, ``Feb 7, 2017``, an RSS date) becomes an ISO date (``2017-02-07``), so
    that date filters compare it; an ISO timestamp, or a date not understood, is kept."""
    fields = {"title": title, "text": text, "id": id, "url": url, "source": source}
    fields |= {"published": published, "dateline": dateline}
    for key, value in fields.items():
        if value is not None and (problem := text_problem(value)) is not None:
            raise ArticleError(f"the {key} {problem}")
    title = " ".join(title.split())
    text = _normalise_newlines(text).strip()
    published = _iso_date(published)
    if not title:
        raise ArticleError("article has no title")
    if not text:
        raise ArticleError(f"article {title!r} has no body text")
    digest = content_hash(title, text)
    if id is None:
        id = digest[:16]
    elif not ARTICLE_ID_PATTERN.fullmatch(id):
        raise ArticleError(f"invalid article id {id!r}: use 1-128 letters, digits, '.', '_' or '-'")
    return Article(
        id=id,
        title=title,
        text=text,
        url=url or None,
        source=source or None,
        published=published or None,
        dateline=dateline,
        content_hash=digest,
    )


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def decode_bytes(data: bytes, name: str) -> str:
    """Decode UTF-8 input, rejecting empty, binary, non-UTF-8 data and invalid text
    (:func:`rag.text.text_problem`) with a clear error."""
    if not data.strip():
        raise ArticleError("file is empty", name)
    if b"\x00" in data:
        raise ArticleError("looks like a binary file, not text", name)
    try:
        raw = _normalise_newlines(data.decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        raise ArticleError(
            f"not valid UTF-8 (byte {error.start}); convert the file to UTF-8", name
        ) from None
    problem = text_problem(raw)
    if problem is not None:
        raise ArticleError(f"the file {problem}", name)
    return raw


def parse_plain_text(raw: str, *, source: str | None = None) -> Article:
    """Parse a plain-text article.

    The first non-empty line is the title. Leading lines that repeat the title, and a
    short all-capitals dateline line (``BRUSSELS``) right after it, are metadata; so is
    a trailing line holding only a URL. Everything else, paragraphs included, is body.
    """
    lines = _normalise_newlines(raw).split("\n")
    non_empty = [i for i, line in enumerate(lines) if line.strip()]
    if not non_empty:
        raise ArticleError("no text", source or "text")
    title = lines[non_empty[0]].strip()
    body_lines = non_empty[1:]
    while body_lines and lines[body_lines[0]].strip() == title:
        body_lines = body_lines[1:]
    dateline = None
    if len(body_lines) > 1 and _DATELINE.match(lines[body_lines[0]].strip()):
        dateline = lines[body_lines[0]].strip()
        body_lines = body_lines[1:]
    url = None
    if body_lines and (match := _URL_LINE.match(lines[body_lines[-1]])):
        url = match.group(1)
        body_lines = body_lines[:-1]
    if not body_lines:
        raise ArticleError("has a title but no body text", source or "text")
    body = "\n".join(lines[body_lines[0] : body_lines[-1] + 1])
    return create_article(title, body, url=url, source=source, dateline=dateline)


def parse_html(raw: str, *, source: str | None = None) -> Article:
    """Parse an HTML page: title from <title>/<h1>, url from the canonical link, body
    from the visible text of its main content (:func:`_main_content`) with block elements
    on their own lines (scripts, navigation, asides and forms dropped)."""
    soup = BeautifulSoup(raw, "html.parser")
    title = _first_text(
        _meta(soup, "og:title"),
        soup.title.get_text() if soup.title else None,
        soup.h1.get_text() if soup.h1 else None,
    )
    url = _first_text(_link(soup, "canonical"), _meta(soup, "og:url"))
    published = _first_text(_meta(soup, "article:published_time"), _meta(soup, "date"))
    _drop_hidden(soup)
    content = _main_content(soup)
    heading = content.h1
    if heading and title and " ".join(heading.get_text().split()) == " ".join(title.split()):
        heading.decompose()
    body = _visible_text(content)
    if not title:
        raise ArticleError("no <title> or <h1> to use as the title", source or "html")
    return create_article(title, body, url=url, source=source, published=published)


def _drop_hidden(soup: BeautifulSoup) -> None:
    """Remove what a reader of the page does not read as the story (``_HTML_DROPPED``)."""
    for tag in soup(list(_HTML_DROPPED)):
        tag.decompose()


def _visible_text(content: Tag | BeautifulSoup) -> str:
    """The text of parsed HTML, each block element on a line of its own."""
    for tag in content.find_all(list(_HTML_BLOCKS)):
        tag.insert_before("\n")
        tag.insert_after("\n")
    lines = (" ".join(line.split()) for line in content.get_text().split("\n"))
    return "\n".join(line for line in lines if line)


def _plain_text(text: str) -> str:
    """A record's text as given, or, when it holds HTML markup (a scraper's export often
    does), its visible text, so that no answer carries ``<b>`` or ``&amp;``."""
    if not _HTML_MARKUP.search(text):
        return text
    soup = BeautifulSoup(text, "html.parser")
    _drop_hidden(soup)
    return _visible_text(soup)


def _main_content(soup: BeautifulSoup) -> Tag | BeautifulSoup:
    """The part of a page that holds the story: the innermost ``<article>`` around its
    headline (``<h1>``) that has a paragraph; else its longest ``<article>``, else its
    ``<main>``, when that holds at least a quarter of the page's text; else the whole page.
    A saved news page wraps the story in site headers, footers, comments and teasers of
    other stories, which would otherwise be answered from."""
    headline = soup.find("h1")
    if isinstance(headline, Tag):
        for around in headline.find_parents("article"):  # innermost first
            if any(paragraph.get_text(strip=True) for paragraph in around.find_all("p")):
                return around
    page = _text_length(soup)
    longest = max(soup.find_all("article"), key=_text_length, default=None)
    for candidate in (longest, soup.find("main")):
        if isinstance(candidate, Tag) and _text_length(candidate) * 4 >= page:
            return candidate
    return soup


def _text_length(tag: Tag | BeautifulSoup) -> int:
    return len(tag.get_text(" ", strip=True))


def parse_markdown(raw: str, *, source: str | None = None) -> Article:
    """Parse Markdown: rendered to HTML, then read like an HTML page whose title is
    the first heading (or the first line)."""
    html = MarkdownIt("commonmark").render(_normalise_newlines(raw))
    soup = BeautifulSoup(html, "html.parser")
    heading = soup.find(re.compile(r"^h[1-6]$"))
    if heading is None:
        first, _, rest = raw.strip().partition("\n")
        return parse_html(f"<h1>{_escape(first)}</h1>{MarkdownIt().render(rest)}", source=source)
    return parse_html(f"<title>{_escape(heading.get_text())}</title>{html}", source=source)


def parse_record(
    record: Any, *, where: str, default_source: str | None = None, read_markup: bool = False
) -> Article:
    """Turn one JSON object (``title``, ``text``; optional ``id``, ``url``, ``published``,
    ``source``, which defaults to ``default_source``) into an article. With
    ``read_markup`` (records from files: scrapers export HTML), a text holding HTML markup
    is read as HTML, its visible text a line per block; without it (the API), the text is
    kept as posted, so that offsets index the client's own copy."""
    if not isinstance(record, dict):
        raise ArticleError(f"expected a JSON object, got {type(record).__name__}", where)
    for key in ("title", "text"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise ArticleError(f"field {key!r} must be a non-empty string", where)
    optional: dict[str, str | None] = {}
    for key in ("id", "url", "published", "source"):
        value = record.get(key)
        if value is not None and not isinstance(value, str | int):
            raise ArticleError(f"field {key!r} must be a string", where)
        optional[key] = None if value is None else str(value)
    optional["source"] = optional["source"] or default_source
    try:
        text = _plain_text(record["text"]) if read_markup else record["text"]
        return create_article(record["title"], text, **optional)
    except ArticleError as error:
        raise ArticleError(error.reason, where) from None


def parse_json_records(raw: str, *, name: str, lines: bool) -> Iterator[Article | ArticleError]:
    """Parse a JSON document or JSON Lines into articles. A document is one record, a list
    of them, or an object holding them in its one list of objects (``{"status": "ok",
    "articles": [...]}``, as news APIs answer). Field names may be any of
    :data:`RECORD_FIELDS` (:func:`_record_fields`).

    A bad record does not spoil the others: it is yielded as an :class:`ArticleError`.
    """
    if lines:
        numbered = [(n, line) for n, line in enumerate(raw.split("\n"), start=1) if line.strip()]
        records = [(f"{name} line {n}", line) for n, line in numbered]
    else:
        try:
            document = _load_json(raw, name)
        except ArticleError as error:
            yield error
            return
        items = _records_of(document)
        records = [(f"{name} record {n}", item) for n, item in enumerate(items, start=1)]
    for where, record in records:
        try:
            data = _record_fields(_load_json(record, where) if lines else record, where)
            yield parse_record(data, where=where, default_source=Path(name).name, read_markup=True)
        except ArticleError as error:
            yield error


def _records_of(document: Any) -> list[Any]:
    """The records of a JSON document (see :func:`parse_json_records`)."""
    if isinstance(document, list):
        return document
    if isinstance(document, dict) and "text" not in _accepted_names(document):
        lists = [
            value
            for value in document.values()
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value)
        ]
        if len(lists) == 1:
            return lists[0]
    return [document]


def _record_fields(record: Any, where: str) -> Any:
    """A JSON file's record with its fields under the article's names: for each, the first
    of its :data:`RECORD_FIELDS` names that holds a value. A source given as an object
    (``{"id": null, "name": "BBC News"}``) is its name. Anything but an object is returned
    as it is, for :func:`parse_record` to refuse."""
    if not isinstance(record, dict):
        return record
    filled = {key: value for key, value in record.items() if value is not None and value != ""}
    names = _accepted_names(filled)
    for key in ("title", "text"):
        if key not in names:
            accepted = ", ".join(RECORD_FIELDS[key])
            found = ", ".join(filled) or "none"
            raise ArticleError(f"no {key} (accepted fields: {accepted}; found: {found})", where)
    fields = {key: filled[name] for key, name in names.items()}
    if isinstance(fields.get("source"), dict):
        fields["source"] = fields["source"].get("name")
    return fields


def _accepted_names(found: Iterable[str]) -> dict[str, str]:
    """Article field -> the first of ``found`` (a CSV header, a record's field names) that
    :data:`RECORD_FIELDS` accepts for it, compared case-insensitively."""
    by_lower: dict[str, str] = {}
    for name in found:
        by_lower.setdefault(name.strip().lower(), name)
    return {
        key: by_lower[accepted]
        for key, names in RECORD_FIELDS.items()
        if (accepted := next((n for n in names if n in by_lower), None)) is not None
    }


def parse_csv_records(raw: str, *, name: str) -> Iterator[Article | ArticleError]:
    """Parse CSV with a header row, one article per row (columns: :data:`RECORD_FIELDS`).

    A bad row does not spoil the others: it is yielded as an :class:`ArticleError` naming
    its line. Dates such as ``2017/2/7`` become ISO ``2017-02-07`` (so that date filters
    compare them correctly). Some exports mangle a closing curly quote and the space after
    it into ``"?`` (``choice,"?Sen. Warren``): the space is restored, so that the stray
    ``?`` does not end a sentence; the quote character is kept as written.
    """
    csv.field_size_limit(max(csv.field_size_limit(), len(raw)))
    reader = csv.reader(io.StringIO(raw), strict=True)
    try:
        header = [cell.strip().lower() for cell in next(reader, [])]
    except csv.Error as error:
        yield ArticleError(f"malformed CSV header ({error})", name)
        return
    columns = {key: header.index(name) for key, name in _accepted_names(header).items()}
    missing = [key for key in ("title", "text") if key not in columns]
    if missing:
        found_columns = ", ".join(header) or "none"
        yield ArticleError(
            f"no {' or '.join(missing)} column in the CSV header (found: {found_columns})", name
        )
        return
    default_source = Path(name).name
    while True:
        where = f"{name} line {reader.line_num + 1}"
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield ArticleError(f"malformed CSV ({error}); the rest of the file was skipped", where)
            return
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            yield ArticleError(f"has {len(row)} fields but the header has {len(header)}", where)
            continue
        record: dict[str, str | None] = {key: row[i].strip() or None for key, i in columns.items()}
        for key in ("title", "text"):
            record[key] = _MANGLED_QUOTE_SPACE.sub('" ', record[key] or "")
        try:
            yield parse_record(record, where=where, default_source=default_source, read_markup=True)
        except ArticleError as error:
            yield error


def parse_bytes(data: bytes, name: str) -> tuple[list[Article], list[ArticleError]]:
    """Parse the content of one file, choosing the format from the name's suffix.

    Returns the articles and the problems with individual records (JSON formats can
    hold many). A file that cannot be read at all raises :class:`ArticleError`, and so
    does a name that is not valid text (it would become the articles' ``source``).
    """
    problem = text_problem(name)
    if problem is not None:
        raise ArticleError(f"the file name {problem}", printable(name))
    suffix = Path(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        supported = ", ".join(SUPPORTED_SUFFIXES)
        raise ArticleError(f"unsupported file type {suffix!r} (supported: {supported})", name)
    raw = decode_bytes(data, name)
    source = Path(name).name
    single = {".txt": parse_plain_text, ".html": parse_html, ".htm": parse_html}
    single |= {".md": parse_markdown, ".markdown": parse_markdown}
    if suffix in single:
        try:
            return [single[suffix](raw, source=source)], []
        except ArticleError as error:
            raise ArticleError(error.reason, name) from None
    if suffix == ".csv":
        results = list(parse_csv_records(raw, name=name))
    else:
        results = list(parse_json_records(raw, name=name, lines=suffix == ".jsonl"))
    articles = [r for r in results if isinstance(r, Article)]
    problems = [r for r in results if isinstance(r, ArticleError)]
    if not results:
        raise ArticleError("contains no articles", name)
    return articles, problems


def iter_article_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Expand files and folders (recursively) into the supported article files, sorted."""
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
            )
        elif path.exists():
            yield path
        else:
            raise ArticleError("no such file or folder", printable(str(path)))


def _load_json(raw: str, where: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise ArticleError(f"invalid JSON ({error.msg} at line {error.lineno})", where) from None


def _iso_date(value: str | None) -> str | None:
    """``value`` as an ISO 8601 date if it is in one of :data:`_DATE_FORMATS` or an RFC 2822
    date (RSS feeds: ``Tue, 07 Feb 2017 10:00:00 GMT``), else as given."""
    text = " ".join((value or "").split())
    for date_format in _DATE_FORMATS:
        try:
            return datetime.strptime(text, date_format).date().isoformat()
        except ValueError:
            continue
    try:
        return parsedate_to_datetime(text).date().isoformat()
    except (TypeError, ValueError):
        return value


def _meta(soup: BeautifulSoup, name: str) -> str | None:
    tag = soup.find("meta", attrs={"property": name}) or soup.find("meta", attrs={"name": name})
    content = tag.get("content") if tag else None
    return content if isinstance(content, str) else None


def _link(soup: BeautifulSoup, rel: str) -> str | None:
    tag = soup.find("link", rel=rel)
    href = tag.get("href") if tag else None
    return href if isinstance(href, str) else None


def _first_text(*candidates: str | None) -> str | None:
    for candidate in candidates:
        if candidate and candidate.strip():
            return " ".join(candidate.split())
    return None


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
