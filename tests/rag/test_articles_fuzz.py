"""Fuzzing the article parsers: any bytes, in any supported format, either parse into
articles with a title and a body or are refused with an ArticleError, never anything else."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.articles import SUPPORTED_SUFFIXES, ArticleError, parse_bytes

MARKUP = st.text(alphabet=st.sampled_from(list("<>/=\"'!-#*[]()&;{}:, \n\tabcpdivhtml1é€😀")))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["id", "title", "text", "url", "source"]), children)
    ),
    max_leaves=12,
)
CONTENTS = st.one_of(
    st.binary(max_size=2000),
    st.text(max_size=2000).map(str.encode),
    MARKUP.map(str.encode),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.lists(JSON_VALUES.map(json.dumps), max_size=5).map(lambda lines: "\n".join(lines).encode()),
)


@pytest.mark.parametrize("suffix", SUPPORTED_SUFFIXES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=CONTENTS)
def test_any_bytes_parse_into_whole_articles_or_an_article_error(suffix: str, data: bytes) -> None:
    try:
        articles, problems = parse_bytes(data, f"fuzz{suffix}")
    except ArticleError as error:
        assert error.reason
        return
    assert all(isinstance(problem, ArticleError) for problem in problems)
    for article in articles:
        assert article.title.strip() and article.text.strip()
        assert article.id and article.content_hash
