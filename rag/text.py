"""What counts as text: the one rule every question, article field, filter and file meets.

Text may hold any Unicode character except two kinds, which are refused, never repaired:

- **lone surrogates** (U+D800-U+DFFF), which a JSON ``\\ud800`` escape or a file name
  in another encoding can produce: they are not characters and cannot be encoded as
  UTF-8, so nothing downstream (the tokenizer, SQLite, a JSON response) can take them;
- **control characters** (U+0000-U+001F, U+007F-U+009F) other than tab, line feed and
  carriage return: NUL, escape sequences that rewrite a terminal, form feeds.

Refusing rather than removing keeps text as written, so that character offsets refer to
exactly what was sent. Callers turn :func:`text_problem` into their own error: a 422
naming the field (``api.models``), a rejection naming the file or record
(``rag.articles``), an error message on the command line (``cli.commands``).
"""

from __future__ import annotations

import re

_INVALID = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """``None`` when ``text`` is valid, else what is wrong with it as the end of a
    sentence (``contains the control character U+0000 at offset 4; ...``), without
    repeating the offending character."""
    found = _INVALID.search(text)
    if found is None:
        return None
    code = ord(found.group())
    where = f"U+{code:04X} at offset {found.start()}"
    if 0xD800 <= code <= 0xDFFF:
        return f"contains a lone surrogate {where}, which is not text (it has no UTF-8 encoding)"
    return (
        f"contains the control character {where}; "
        "only tab, line feed and carriage return are allowed"
    )


def check_text(text: str) -> str:
    """``text`` unchanged if it is valid; otherwise a :class:`ValueError` saying why
    (the form that pydantic validators raise)."""
    problem = text_problem(text)
    if problem is not None:
        raise ValueError(problem)
    return text


def printable(text: str) -> str:
    """``text`` with every invalid character written as its escape (``\\ud800``,
    ``\\x1b``): safe to show in an error message, a log line or a terminal."""
    return _INVALID.sub(lambda found: ascii(found.group())[1:-1], text)
