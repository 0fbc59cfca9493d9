"""Parsing CSV files of news articles: column names, per-row rejections, source quirks."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from rag.articles import ArticleError, parse_bytes
from rag.settings import SHARED_DATA

NEWS_CSV = SHARED_DATA / "news" / "NewsArticles.csv"
NEWS_HEADER = ["article_id", "publish_date", "article_source_link", "title", "subtitle", "text"]


def to_csv(header: list[str], rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def test_news_columns_map_to_article_fields() -> None:
    data = to_csv(
        NEWS_HEADER,
        [["17", "2017/2/7", "http://abcnews.go.com/x", " DeVos  Confirmed ", "sub", "Body one."]],
    )
    articles, problems = parse_bytes(data, "news.csv")
    assert problems == []
    (article,) = articles
    assert article.id == "17"
    assert article.title == "DeVos Confirmed"
    assert article.text == "Body one."
    assert article.url == "http://abcnews.go.com/x"
    assert article.published == "2017-02-07"  # ISO, so date filters compare correctly
    assert article.source == "news.csv"


def test_other_common_column_names_are_recognised() -> None:
    data = to_csv(
        ["Headline", "Body", "Link", "Date", "Publisher"],
        [["A title", "Some text.", "https://e.com/a", "2016-12-31", "DW"]],
    )
    (article,), _ = parse_bytes(data, "feed.csv")
    assert (article.title, article.text, article.url) == (
        "A title",
        "Some text.",
        "https://e.com/a",
    )
    assert (article.published, article.source) == ("2016-12-31", "DW")
    assert len(article.id) == 16  # no id column: content hash


def test_unparsed_dates_are_kept_as_written() -> None:
    data = to_csv(["title", "text", "date"], [["T", "Body.", "Feb 7th, 2017"]])
    (article,), _ = parse_bytes(data, "a.csv")
    assert article.published == "Feb 7th, 2017"


def test_bad_rows_are_rejected_one_by_one_with_their_line() -> None:
    rows = [
        ["1", "2017/1/1", "", "Good", "", "Multi-line\nbody."],
        ["2", "2017/1/1", "", "", "", "Text without a title."],
        ["3", "2017/1/1", "", "No text", "", "   "],
        ["bad id!", "2017/1/1", "", "Bad id", "", "Text."],
        ["5", "2017/1/2", "", "Also good", "", "More text."],
    ]
    data = to_csv(NEWS_HEADER, rows)
    articles, problems = parse_bytes(data, "news.csv")
    assert [a.id for a in articles] == ["1", "5"]
    assert articles[0].text == "Multi-line\nbody."
    assert [p.name for p in problems] == ["news.csv line 4", "news.csv line 5", "news.csv line 6"]
    assert "'title'" in problems[0].reason
    assert "'text'" in problems[1].reason
    assert "invalid article id" in problems[2].reason


def test_row_with_wrong_field_count_is_rejected() -> None:
    data = b"title,text\nOne,Body one.\nTwo,Body,extra\n"
    articles, problems = parse_bytes(data, "a.csv")
    assert [a.title for a in articles] == ["One"]
    assert problems[0].name == "a.csv line 3"
    assert "3 fields" in problems[0].reason


def test_malformed_quoting_stops_with_the_line_named() -> None:
    data = b'title,text\nOne,Body one.\nTwo,"broken "quote" here\n'
    articles, problems = parse_bytes(data, "a.csv")
    assert [a.title for a in articles] == ["One"]
    assert problems[0].name == "a.csv line 3"
    assert "malformed CSV" in problems[0].reason


def test_missing_title_or_text_column_is_one_clear_error() -> None:
    articles, problems = parse_bytes(b"headline,summary\nA,B\n", "a.csv")
    assert articles == []
    assert problems[0].name == "a.csv"
    assert "no text column" in problems[0].reason


def test_header_only_file_contains_no_articles() -> None:
    with pytest.raises(ArticleError, match="contains no articles"):
        parse_bytes(b"title,text\n", "a.csv")


def test_mangled_curly_quote_gets_its_space_back() -> None:
    text = 'A vote on DeVos"?highly contentious nomination. "It is bad,"?Sen. Warren said.'
    (article,), _ = parse_bytes(to_csv(["title", "text"], [["T", text]]), "a.csv")
    assert article.text == (
        'A vote on DeVos" highly contentious nomination. "It is bad," Sen. Warren said.'
    )
    legit = 'He asked "why?" twice.'
    (kept,), _ = parse_bytes(to_csv(["title", "text"], [["T", legit]]), "b.csv")
    assert kept.text == legit


@pytest.mark.skipif(not NEWS_CSV.exists(), reason="news corpus not present")
def test_news_corpus_parses_with_per_row_rejections() -> None:
    articles, problems = parse_bytes(NEWS_CSV.read_bytes(), NEWS_CSV.name)
    assert len(articles) + len(problems) == 3824
    assert len(articles) > 3700
    assert all(p.name and " line " in p.name for p in problems)
    assert all(a.published and a.published[4] == "-" for a in articles if a.published)


def test_csv_files_are_found_in_folders(tmp_path: Path) -> None:
    from rag.articles import iter_article_files

    (tmp_path / "news.csv").write_bytes(to_csv(["title", "text"], [["T", "Body."]]))
    assert list(iter_article_files([tmp_path])) == [tmp_path / "news.csv"]


def test_malformed_header_is_one_clear_error() -> None:
    articles, problems = parse_bytes(b'"title,text\n', "a.csv")
    assert articles == []
    assert problems[0].name == "a.csv"
    assert "malformed CSV header" in problems[0].reason
