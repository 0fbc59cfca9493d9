"""An ArticleFilter as SQL: the same conditions in each store's dialect."""

from __future__ import annotations

import sqlite3

import pytest

from index.filters import POSTGRES, SQLITE, Dialect, filter_condition
from records import ArticleFilter

EVERY_FIELD = ArticleFilter(
    source="wire",
    published_after="2024-01-02",
    published_before="2024-01-05",
    article_ids=("a1", "a2"),
    excluded_article_ids=("a2",),
)


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES])
def test_an_empty_filter_restricts_nothing(dialect: Dialect) -> None:
    assert filter_condition(ArticleFilter(), dialect) == ("", [])


def test_every_field_in_sqlite() -> None:
    assert filter_condition(EVERY_FIELD, SQLITE) == (
        " WHERE a.source = ? AND a.published >= ? AND substr(a.published, 1, 10) <= ?"
        " AND a.id IN (?,?) AND NOT (a.id IN (?))",
        ["wire", "2024-01-02", "2024-01-05", "a1", "a2", "a2"],
    )


def test_every_field_in_postgres() -> None:
    assert filter_condition(EVERY_FIELD, POSTGRES) == (
        ' WHERE a.source = %s AND a.published COLLATE "C" >= %s'
        ' AND substr(a.published, 1, 10) COLLATE "C" <= %s'
        " AND a.id = ANY(%s::text[]) AND NOT (a.id = ANY(%s::text[]))",
        ["wire", "2024-01-02", "2024-01-05", ["a1", "a2"], ["a2"]],
    )


def test_excluded_ids_alone() -> None:
    excluded = ArticleFilter(excluded_article_ids=("a1", "a3", "a4"))
    assert filter_condition(excluded, SQLITE) == (
        " WHERE NOT (a.id IN (?,?,?))",
        ["a1", "a3", "a4"],
    )
    assert filter_condition(excluded, POSTGRES) == (
        " WHERE NOT (a.id = ANY(%s::text[]))",
        [["a1", "a3", "a4"]],
    )


def test_empty_id_lists_select_nothing_or_exclude_nothing() -> None:
    assert filter_condition(ArticleFilter(article_ids=()), SQLITE) == (" WHERE a.id IN ()", [])
    assert filter_condition(ArticleFilter(article_ids=()), POSTGRES) == (
        " WHERE a.id = ANY(%s::text[])",
        [[]],
    )
    assert filter_condition(ArticleFilter(excluded_article_ids=()), SQLITE) == (
        " WHERE NOT (a.id IN ())",
        [],
    )


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (ArticleFilter(), {"a1", "a2", "a3", "a4"}),
        (EVERY_FIELD, {"a1"}),
        (ArticleFilter(published_after="2024-01-03"), {"a3", "a4"}),
        (ArticleFilter(published_before="2024-01-03"), {"a1", "a2"}),
        (ArticleFilter(published_before="2024-01-02"), {"a1", "a2"}),  # a2: that day, 10:00
        (ArticleFilter(article_ids=()), set()),
        (ArticleFilter(excluded_article_ids=()), {"a1", "a2", "a3", "a4"}),
        (ArticleFilter(source="wire", excluded_article_ids=("a1",)), {"a2"}),
    ],
)
def test_the_sqlite_condition_runs(where: ArticleFilter, expected: set[str]) -> None:
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE articles (id TEXT PRIMARY KEY, source TEXT, published TEXT)")
    connection.executemany(
        "INSERT INTO articles VALUES (?, ?, ?)",
        [
            ("a1", "wire", "2024-01-02"),
            ("a2", "wire", "2024-01-02T10:00"),
            ("a3", "desk", "2024-01-04"),
            ("a4", None, "2024-01-09"),
        ],
    )
    condition, params = filter_condition(where, SQLITE)
    rows = connection.execute(f"SELECT a.id FROM articles a{condition}", params)
    assert {row[0] for row in rows} == expected
