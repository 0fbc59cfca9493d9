"""The one rule for text: lone surrogates and control characters (but tab and line
breaks) are refused, everything else is text; offending characters can be shown escaped."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rag.text import check_text, printable, text_problem

CONTROLS = [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)] if chr(c) not in "\t\n\r"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Tab\there, lines\nand\r\nreturns\r",
        "Zelenskyy \u201cvictory plan\u201d \u00a0\u2014 caf\u00e9",
        "\U0001f468\u200d\U0001f469\u200d\U0001f467 \U0001f1fa\U0001f1e6",  # joined emoji
        "\u200b\u200c\u200d\ufeff\u2060\u00ad\u202e",  # invisible format characters
        "\ue000 \U0010fffd \ufffe \uffff \U0010ffff \u0378",  # private use, noncharacters
    ],
)
def test_text_with_tabs_line_breaks_and_any_other_character_is_valid(text: str) -> None:
    assert text_problem(text) is None
    assert check_text(text) is text
    assert printable(text) == text


@pytest.mark.parametrize("char", [*CONTROLS, "\ud800", "\udbff", "\udc00", "\udfff"])
def test_control_characters_and_lone_surrogates_are_named_with_their_offset(char: str) -> None:
    problem = text_problem(f"ab{char}c{char}")

    assert problem is not None
    kind = "a lone surrogate" if 0xD800 <= ord(char) <= 0xDFFF else "the control character"
    assert problem.startswith(f"contains {kind} U+{ord(char):04X} at offset 2")
    assert char not in problem
    with pytest.raises(ValueError, match=r"^contains "):
        check_text(char)
    assert printable(f"ab{char}c") == f"ab{ascii(char)[1:-1]}c"


@given(st.text(st.characters()))
def test_valid_text_is_exactly_what_encodes_as_utf8_without_controls(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        assert text_problem(text) is not None
    if text_problem(text) is None:
        assert printable(text) == text
    else:
        assert printable(text) != text
    assert text_problem(printable(text)) is None  # safe for messages, logs, terminals
