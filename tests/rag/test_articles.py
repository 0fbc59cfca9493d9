"""Parsing article files of every supported format, including the sample files' quirks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rag.articles import ArticleError, create_article, iter_article_files, parse_bytes
from rag.settings import PROJECT_ROOT
from records import Article

SAMPLES = PROJECT_ROOT / "data" / "articles"


def parse_one(data: str | bytes, name: str) -> Article:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    articles, problems = parse_bytes(raw, name)
    assert problems == []
    assert len(articles) == 1
    return articles[0]


def test_wire_report_drops_repeated_title_and_dateline_and_keeps_nbsp() -> None:
    path = SAMPLES / "zelensky-seeks-eu-nato-backing.txt"
    article = parse_one(path.read_bytes(), path.name)
    assert article.title == "Zelensky seeks EU, NATO backing for 'victory plan'"
    assert article.dateline == "BRUSSELS"
    assert article.text.startswith("President Volodymyr Zelensky told allies Thursday")
    assert "Zelensky seeks EU, NATO backing" not in article.text
    assert "Mark\u00a0Rutte" in article.text  # non-breaking space kept as written
    assert article.url is None
    assert article.source == path.name


def test_opinion_piece_trailing_url_is_metadata() -> None:
    path = SAMPLES / "victory-plan-game-is-up.txt"
    article = parse_one(path.read_bytes(), path.name)
    assert (
        article.title
        == "Zelensky\u2019s \u2018Victory plan\u2019: The Ukrainian leader knows the game is up"
    )
    assert (
        article.url
        == "https://www.rt.com/russia/606270-zelensky-proposes-nato-enter-conflict-russia/"
    )
    assert "rt.com" not in article.text
    assert article.text.startswith("The plan espoused by the head of the Kiev regime")
    assert article.text.endswith("where such strikes are allowed.")
    assert article.dateline is None


def test_reuters_report_keeps_curly_quotes_and_paragraphs() -> None:
    path = SAMPLES / "zelenskyy-outlines-victory-plan.txt"
    article = parse_one(path.read_bytes(), path.name)
    assert article.title.startswith("Zelenskyy outlines \u201cvictory plan\u201d")
    assert "three billion euros in aid this year" in article.text
    assert "\n\n" in article.text  # paragraph breaks are kept
    assert article.text == article.text.strip()


def test_ids_are_stable_and_content_based() -> None:
    path = SAMPLES / "zelenskyy-outlines-victory-plan.txt"
    first = parse_one(path.read_bytes(), "a.txt")
    second = parse_one(path.read_bytes().replace(b"\n", b"\r\n"), "b.txt")
    assert first.id == second.id
    assert first.content_hash == second.content_hash
    other = parse_one("Title\n\nAnother body.", "c.txt")
    assert other.id != first.id


def test_markdown_heading_is_title_and_markup_is_removed() -> None:
    article = parse_one(
        "# Summit ends\n\nLeaders **agreed** on a [plan](http://x).\n\n"
        "- first point\n- second point\n",
        "note.md",
    )
    assert article.title == "Summit ends"
    assert article.text == "Leaders agreed on a plan.\nfirst point\nsecond point"


def test_html_uses_real_parser_and_drops_scripts() -> None:
    html = """<html><head><title>Talks in Rome</title>
    <link rel="canonical" href="https://example.org/rome">
    <meta property="article:published_time" content="2024-10-10">
    <style>p { color: red }</style></head>
    <body><h1>Talks in Rome</h1><script>alert("x")</script>
    <p>Meloni met <b>Zelenskyy</b> on Thursday.</p>
    <p>Italy &amp; Ukraine talked.</p></body></html>"""
    article = parse_one(html, "rome.html")
    assert article.title == "Talks in Rome"
    assert article.url == "https://example.org/rome"
    assert article.published == "2024-10-10"
    assert article.text == "Meloni met Zelenskyy on Thursday.\nItaly & Ukraine talked."


def test_json_list_and_jsonl_with_a_bad_record() -> None:
    records = [
        {"title": "One", "text": "First body.", "url": "https://a", "published": "2024-10-01"},
        {"title": "Two", "text": "Second body.", "source": "AFP", "id": "two"},
    ]
    articles, problems = parse_bytes(json.dumps(records).encode(), "batch.json")
    assert [a.title for a in articles] == ["One", "Two"]
    assert articles[1].id == "two" and articles[1].source == "AFP"
    assert articles[0].published == "2024-10-01" and articles[0].source == "batch.json"

    jsonl = '{"title": "A", "text": "Alpha."}\n\n{"title": "B"}\nnot json\n'
    articles, problems = parse_bytes(jsonl.encode(), "feed.jsonl")
    assert [a.title for a in articles] == ["A"]
    assert len(problems) == 2
    assert str(problems[0]).startswith("feed.jsonl line 3: no text (accepted fields: text, body")
    assert "feed.jsonl line 4: invalid JSON" in str(problems[1])


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b"", "empty.txt", "empty.txt: file is empty"),
        (b"  \n\n ", "blank.txt", "blank.txt: file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "image.txt", "binary"),
        ("Titre\n\ncaf\u00e9".encode("latin-1"), "latin.txt", "not valid UTF-8"),
        (b"Only a title\n", "short.txt", "no body text"),
        (b"whatever", "doc.pdf", "unsupported file type '.pdf'"),
        (b"{", "bad.json", "bad.json: invalid JSON"),
        (
            b'{"title": "x", "text": "y", "id": "../../etc/passwd"}',
            "evil.json",
            "invalid article id",
        ),
        (
            b"Bells\n\nThe bell \x07 rang.",
            "bell.txt",
            "the file contains the control character U+0007",
        ),
        (b"A\n\nB\x1b[2J", "wipe.md", "the control character U+001B at offset 4"),
        ("<title>T</title><p>x\u0085</p>".encode(), "nel.html", "the control character U+0085"),
        (b'title,text\nT,"x\x0cy"\n', "ff.csv", "the control character U+000C"),
        (
            b'{"title": "x \\ud800", "text": "y"}',
            "lone.json",
            "record 1: the title contains a lone",
        ),
        (
            b'{"title": "x", "text": "y\\u0000"}',
            "nul.jsonl",
            "line 1: the text contains the control",
        ),
    ],
)
def test_bad_files_are_rejected_with_the_file_named(data: bytes, name: str, message: str) -> None:
    with pytest.raises(ArticleError) as raised:
        _, problems = parse_bytes(data, name)
        if problems:
            raise problems[0]
    assert message in str(raised.value)
    assert name in str(raised.value)


def test_folder_expansion_finds_supported_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("A\n\nbody")
    (tmp_path / "sub" / "b.jsonl").write_text("{}")
    (tmp_path / "skip.pdf").write_text("x")
    assert [p.name for p in iter_article_files([tmp_path])] == ["a.txt", "b.jsonl"]
    with pytest.raises(ArticleError, match="no such file"):
        list(iter_article_files([tmp_path / "missing"]))


@given(st.text(min_size=1).filter(lambda s: s.strip()), st.text())
def test_any_text_parses_or_fails_cleanly(title: str, body: str) -> None:
    raw = f"{title}\n\n{body}"
    try:
        article = parse_one(raw, "fuzz.txt")
    except ArticleError:
        return
    assert article.title and article.text
    assert article.text in raw.replace("\r\n", "\n").replace("\r", "\n")


@pytest.mark.parametrize("field", ["title", "text", "id", "url", "source", "published", "dateline"])
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("x \ud800", "contains a lone surrogate U+D800 at offset 2"),
        ("\x00", "contains the control character U+0000 at offset 0"),
    ],
)
def test_every_article_field_must_be_text_as_given(field: str, value: str, problem: str) -> None:
    fields = {"title": "Harbour", "text": "The harbour reopened."} | {field: value}

    with pytest.raises(ArticleError) as raised:
        create_article(**fields)

    assert str(raised.value).startswith(f"the {field} {problem}")


def test_tabs_line_breaks_and_every_other_character_are_kept() -> None:
    text = "Tab\there.\r\nZero\u200bwidth, \U0001f1fa\U0001f1e6 \ue000 \uffff \u202eRTL."

    article = create_article("Kept \u00a0title", text)

    assert article.text == text.replace("\r\n", "\n")


def test_a_file_name_that_is_not_text_is_refused_and_shown_escaped(tmp_path: Path) -> None:
    with pytest.raises(ArticleError) as raised:
        parse_bytes(b"Cafe news\n\nThe cafe opened.", "caf\udce9.txt")  # a Latin-1 name
    with pytest.raises(ArticleError) as missing:
        list(iter_article_files([tmp_path / "gone\x1b.txt"]))

    assert raised.value.name == "caf\\udce9.txt"
    assert str(raised.value).startswith("caf\\udce9.txt: the file name contains a lone surrogate")
    assert str(missing.value).endswith("gone\\x1b.txt: no such file or folder")


LONG_STORY = " ".join(f"Paragraph {n} of the story about the summit in Rome." for n in range(8))
"""A story long enough to be most of its page's text."""


def test_html_body_is_the_story_not_the_page_around_it() -> None:
    html = f"""<html><head><title>Talks in Rome</title></head><body>
    <header><a href="/">Daily News</a> <span>Sign in</span></header>
    <nav><a href="/world">World</a></nav>
    <main>
      <article><header><h1>Talks in Rome</h1><p>By A. Writer</p></header>
        <p>{LONG_STORY}</p><aside>Read more: Elections in Spain</aside>
        <form><label>Subscribe to our newsletter</label><button>Go</button></form>
      </article>
      <section><h2>More stories</h2>
        <article><h3>Storm hits Lisbon</h3><p>A storm hit Lisbon on Monday.</p></article>
      </section>
    </main>
    <footer><p>Copyright 2024 Daily News. All rights reserved.</p></footer>
    </body></html>"""
    article = parse_one(html, "rome.html")
    assert article.title == "Talks in Rome"
    assert article.text == f"By A. Writer\n{LONG_STORY}"


def test_html_whose_story_is_outside_its_articles_keeps_the_whole_page() -> None:
    html = f"""<html><head><title>Talks in Rome</title></head><body>
    <div class="story"><p>{LONG_STORY}</p></div>
    <article><p>Storm hits Lisbon.</p></article></body></html>"""
    assert parse_one(html, "rome.html").text == f"{LONG_STORY}\nStorm hits Lisbon."


def test_html_story_is_the_article_around_the_headline_not_a_longer_comment() -> None:
    comment = " ".join(f"Comment line {n}: I disagree with the summit." for n in range(12))
    html = f"""<html><head><title>Talks in Rome</title></head><body>
    <article><h1>Talks in Rome</h1><p>Meloni met Zelenskyy on Thursday.</p></article>
    <section><article><p>{comment}</p></article></section></body></html>"""
    assert parse_one(html, "rome.html").text == "Meloni met Zelenskyy on Thursday."


def test_html_headline_alone_in_an_article_does_not_make_the_body() -> None:
    html = f"""<html><head><title>Talks in Rome</title></head><body>
    <article class="masthead"><h1>Talks in Rome</h1></article>
    <div class="story"><p>{LONG_STORY}</p></div></body></html>"""
    assert parse_one(html, "rome.html").text == LONG_STORY


def test_a_record_whose_text_is_html_is_read_as_html() -> None:
    records = [
        {
            "title": "Talks in Rome",
            "text": "<p>Meloni met <b>Zelenskyy</b> in Rome.</p>"
            "<p>Italy &amp; Ukraine talked.<br/>Then they left.</p><script>track()</script>",
        },
        {"title": "Maths", "text": "If a < b and b > c, then a < c. Tom & Jerry agree."},
    ]
    articles, problems = parse_bytes(json.dumps(records).encode(), "export.json")
    assert problems == []
    assert articles[0].text == (
        "Meloni met Zelenskyy in Rome.\nItaly & Ukraine talked.\nThen they left."
    )
    assert articles[1].text == "If a < b and b > c, then a < c. Tom & Jerry agree."


def test_a_record_whose_html_has_no_visible_text_is_rejected_by_name() -> None:
    line = json.dumps({"title": "Empty", "text": "<p> </p><script>x()</script>"})
    articles, problems = parse_bytes(line.encode(), "feed.jsonl")
    assert articles == []
    assert "feed.jsonl line 1" in str(problems[0]) and "no body text" in str(problems[0])


def test_a_news_api_answer_saved_as_json_is_read_as_its_articles() -> None:
    answer = {
        "status": "ok",
        "totalResults": 2,
        "articles": [
            {
                "source": {"id": None, "name": "BBC News"},
                "author": "A. Reporter",
                "title": "Storm hits Lisbon",
                "url": "https://example.com/storm",
                "publishedAt": "2024-10-10T08:00:00Z",
                "content": "A storm hit Lisbon on Thursday.",
            },
            {"source": {"id": None, "name": None}, "title": "Ferries", "content": "Ferries ran."},
        ],
    }
    articles, problems = parse_bytes(json.dumps(answer).encode(), "everything.json")
    assert problems == []
    storm, ferries = articles
    assert (storm.title, storm.text, storm.source) == (
        "Storm hits Lisbon",
        "A storm hit Lisbon on Thursday.",
        "BBC News",
    )
    assert (storm.url, storm.published) == ("https://example.com/storm", "2024-10-10T08:00:00Z")
    assert ferries.source == "everything.json"


def test_a_crawlers_records_are_read_by_their_own_field_names() -> None:
    news_please = {
        "title": "Harbour reopens",
        "maintext": "The harbour reopened on Monday.",
        "date_publish": "2017-02-07 10:00:00",
        "source_domain": "www.example.com",
        "title_rss": None,
    }
    capitalised = {"Headline": "Vote delayed", "Body": "The vote was delayed.", "Date": ""}
    lines = "\n".join(json.dumps(record) for record in (news_please, capitalised))
    (harbour, vote), problems = parse_bytes(lines.encode(), "crawl.jsonl")
    assert problems == []
    assert (harbour.text, harbour.published, harbour.source) == (
        "The harbour reopened on Monday.",
        "2017-02-07",
        "www.example.com",
    )
    assert (vote.title, vote.text, vote.published) == (
        "Vote delayed",
        "The vote was delayed.",
        None,
    )


def test_a_record_without_a_title_says_which_fields_would_do() -> None:
    line = json.dumps({"name": "Harbour", "body": "The harbour reopened.", "headline": ""})
    articles, problems = parse_bytes(line.encode(), "feed.jsonl")
    assert articles == []
    assert str(problems[0]) == (
        "feed.jsonl line 1: no title (accepted fields: title, headline, heading; found: name, body)"
    )


@pytest.mark.parametrize(
    ("published", "stored"),
    [
        ("2017/2/7", "2017-02-07"),
        ("Feb 7, 2017", "2017-02-07"),
        ("7 February 2017", "2017-02-07"),
        ("Tue, 07 Feb 2017 10:00:00 GMT", "2017-02-07"),  # RSS
        ("2017-02-07T10:00:00+01:00", "2017-02-07T10:00:00+01:00"),  # ISO already
        ("Feb 7th, 2017", "Feb 7th, 2017"),  # not understood: kept
    ],
)
def test_publication_dates_become_iso_dates_so_filters_compare_them(
    published: str, stored: str
) -> None:
    article = create_article("Harbour", "The harbour reopened.", published=published)
    assert article.published == stored
