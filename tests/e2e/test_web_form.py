"""The web form in real headless Chromium: ask, read the highlighted answer, browse."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from playwright.sync_api import Browser, Page, Route, expect

from tests.e2e.conftest import FESTIVAL_ARTICLE

MACRON = "What aid did Macron commit?"
LINKED_QUESTION = "Which Russian factories does Zelensky want to strike?"
OFF_TOPIC = "What is the boiling point of liquid nitrogen?"
FESTIVAL = "How many visitors came to the harbour festival?"


def api_answer(page: Page, question: str) -> dict[str, Any]:
    """What the service itself answers, to compare the page against."""
    response = page.request.post("/ask", data={"question": question, "top_k": 5})
    assert response.ok
    body: dict[str, Any] = response.json()
    return body


def ask_with_the_keyboard(page: Page, question: str) -> None:
    page.goto("/")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Your question")).to_be_focused()
    page.keyboard.type(question)
    page.keyboard.press("Enter")


def test_answer_is_highlighted_inside_its_passage_with_score_and_source(
    page: Page, artifacts: Path, console_errors: list[str]
) -> None:
    expected = api_answer(page, MACRON)
    best = expected["answers"][0]
    passage = next(p for p in expected["passages"] if p["passage_id"] == best["passage_id"])
    assert "three billion euros" in best["text"]

    ask_with_the_keyboard(page, MACRON)

    answer = page.locator(".answer")
    expect(answer.locator(".answer-text")).to_have_text(best["text"])
    expect(answer.locator("mark.sentence")).to_have_text(best["context"]["text"])
    expect(answer.locator("mark.sentence mark.best")).to_have_text(best["text"])
    expect(answer.locator("blockquote")).to_have_text(passage["text"])
    expect(answer.locator(".score")).to_have_text(f"{round(best['score'] * 100)}% confidence")
    heading = "Possible answer" if best["unsure"] else "Answer"
    expect(answer.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    expect(answer.locator(".cite .title")).to_have_text(best["title"])
    expect(page.get_by_role("heading", name="Other cited passages")).to_be_visible()
    expect(page.locator(".passage-card")).to_have_count(len(expected["passages"]) - 1)
    expect(page).to_have_url(re.compile(r"\?q=What\+aid"))
    page.screenshot(path=artifacts / "answer-desktop.png", full_page=True)
    assert console_errors == []


def test_shows_a_loading_state_while_the_service_works(page: Page) -> None:
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    page.route("**/ask", hold)

    ask_with_the_keyboard(page, MACRON)

    button = page.locator("#ask-button")
    results = page.locator("#results")
    expect(button).to_be_disabled()
    expect(button).to_have_text("Asking…")
    expect(results).to_have_attribute("aria-busy", "true")
    expect(results).to_have_text("Searching the articles…")
    held[0].continue_()
    expect(page.locator(".answer mark.best")).to_be_visible()
    expect(button).to_be_enabled()
    expect(button).to_have_text("Ask")
    expect(results).to_have_attribute("aria-busy", "false")


def test_an_unsure_answer_is_shown_as_a_possible_answer_to_check(
    page: Page, artifacts: Path, console_errors: list[str]
) -> None:
    def unsure(route: Route) -> None:  # the service's own answer, marked unsure
        body = route.fetch().json()
        for answer in body["answers"]:
            answer["unsure"] = True
        route.fulfill(json=body)

    page.route("**/ask", unsure)
    ask_with_the_keyboard(page, MACRON)

    answer = page.locator(".answer.unsure")
    expect(answer.get_by_role("heading", name="Possible answer")).to_be_visible()
    expect(answer.locator(".unsure-note")).to_have_text(
        "Low confidence: check it against its sentence below."
    )
    expect(answer.locator("mark.sentence mark.best")).to_contain_text("three billion euros")
    page.screenshot(path=artifacts / "unsure-desktop.png")
    assert console_errors == []


def test_citation_links_to_the_article_url(page: Page) -> None:
    best = api_answer(page, LINKED_QUESTION)["answers"][0]
    assert best["url"], "this question's answer should come from an article with a url"

    ask_with_the_keyboard(page, LINKED_QUESTION)

    link = page.locator(".answer .cite").get_by_role("link", name=best["title"])
    expect(link).to_have_attribute("href", best["url"])
    expect(link).to_have_attribute("rel", "noopener noreferrer")


def test_read_in_full_article_marks_the_answer_at_its_offsets(page: Page, artifacts: Path) -> None:
    best = api_answer(page, MACRON)["answers"][0]
    article = page.request.get(f"/articles/{best['article_id']}").json()
    ask_with_the_keyboard(page, MACRON)

    page.locator(".answer").get_by_role("button", name="Read in full article").click()

    reader = page.get_by_role("dialog")
    expect(reader).to_be_visible()
    expect(reader.get_by_role("heading")).to_have_text(article["title"])
    context = best["context"]
    expect(reader.locator("mark.sentence")).to_have_text(context["text"])
    expect(reader.locator("mark.sentence mark.best")).to_have_text(best["text"])
    text_before_mark = reader.locator("#reader-text").evaluate(
        "node => node.firstChild.nodeType === Node.TEXT_NODE ? node.firstChild.data : ''"
    )
    assert text_before_mark == article["text"][: context["start"]]
    inside_before_answer = reader.locator("mark.sentence").evaluate(
        "node => node.firstChild.nodeType === Node.TEXT_NODE ? node.firstChild.data : ''"
    )
    assert inside_before_answer == article["text"][context["start"] : best["start"]]
    page.screenshot(path=artifacts / "reader-desktop.png")
    page.keyboard.press("Escape")
    expect(reader).to_be_hidden()


def test_off_topic_question_shows_the_not_found_state(
    page: Page, artifacts: Path, console_errors: list[str]
) -> None:
    ask_with_the_keyboard(page, OFF_TOPIC)

    expect(page.get_by_role("heading", name="Not found in these articles")).to_be_visible()
    expect(page.get_by_role("heading", name="Closest passages")).to_be_visible()
    expect(page.locator(".answer")).to_have_count(0)
    expect(page.locator("mark")).to_have_count(0)
    page.screenshot(path=artifacts / "not-found-desktop.png", full_page=True)
    assert console_errors == []


def test_article_markup_is_shown_as_text_and_never_runs(
    page: Page, artifacts: Path, console_errors: list[str], hostile_article: dict[str, str]
) -> None:
    ask_with_the_keyboard(page, "When does the lantern parade start?")

    results = page.locator("#results")
    expect(results).to_contain_text("<script>window.__xss='script'</script>")
    expect(results).to_contain_text("<img src=x onerror=")
    expect(page.locator("#articles")).to_contain_text(hostile_article["title"])
    page.locator("#articles").get_by_role("button", name=re.compile("Lantern parade")).click()
    expect(page.get_by_role("dialog")).to_contain_text("<script>window.__xss='script'</script>")

    assert page.evaluate("window.__xss") is None
    assert page.locator("main img, dialog img, main script, dialog script, main b").count() == 0
    assert page.locator("a[href^='javascript']").count() == 0
    page.screenshot(path=artifacts / "hostile-article.png", full_page=True)
    assert console_errors == []


def test_filters_keep_the_answer_to_a_source_and_a_period(
    page: Page, artifacts: Path, console_errors: list[str]
) -> None:
    gazette = FESTIVAL_ARTICLE["source"]
    page.goto("/")
    expect(page.locator(f"#sources option[value='{gazette}']")).to_have_count(1)
    page.get_by_text("Filters").click()
    page.get_by_label("Source").fill(gazette)
    page.get_by_label("Published from").fill("2024-08-04")
    page.get_by_label("to", exact=True).fill("2024-08-04")  # published that day at 18:30
    expect(page.get_by_text("Filters (3 on)")).to_be_visible()
    page.get_by_label("Your question").fill(FESTIVAL)
    page.keyboard.press("Enter")

    expect(page.locator(".answer mark.best")).to_contain_text("48,000")
    expect(page.locator(".passage-card")).to_have_count(0)  # the only article allowed
    expect(page).to_have_url(re.compile(r"source=Port\+Ellis\+Gazette&after=2024-08-04"))
    page.screenshot(path=artifacts / "filters-desktop.png", full_page=True)

    page.get_by_label("Published from").fill("2024-08-05")
    page.get_by_role("button", name="Ask").click()
    not_found = page.locator(".not-found")
    expect(not_found).to_contain_text("No passage in the articles the filters allow")
    not_found.get_by_role("button", name="Ask again without filters").click()
    expect(page.locator(".answer mark.best")).to_contain_text("48,000")
    expect(page.get_by_label("Source")).to_have_value("")
    expect(page.get_by_text("Filters", exact=True)).to_be_visible()
    assert console_errors == []


def test_a_linked_question_keeps_its_filters(page: Page) -> None:
    sample = "zelensky-seeks-eu-nato-backing.txt"

    page.goto(f"/?q={quote(FESTIVAL)}&source={quote(sample)}")

    expect(page.get_by_label("Source")).to_have_value(sample)
    expect(page.get_by_text("Filters (1 on)")).to_be_visible()
    expect(page.get_by_role("heading", name="Not found in these articles")).to_be_visible()
    expect(page.locator(".passage-card .title").first).to_have_text(re.compile("Zelensky"))


def test_lists_the_indexed_articles(page: Page) -> None:
    titles = [a["title"] for a in page.request.get("/articles").json()["articles"]]

    page.goto("/")

    expect(page.get_by_role("heading", name=f"Indexed articles ({len(titles)})")).to_be_visible()
    expect(page.locator("#articles .article-title")).to_have_text(titles)


def test_works_on_a_narrow_phone_screen(browser: Browser, server: str, artifacts: Path) -> None:
    context = browser.new_context(
        viewport={"width": 375, "height": 740}, base_url=server, is_mobile=True, has_touch=True
    )
    phone = context.new_page()
    try:
        phone.goto(f"/?q={quote(MACRON)}")

        expect(phone.locator(".answer mark.best")).to_contain_text("three billion euros")
        expect(phone.get_by_role("button", name="Ask")).to_be_in_viewport()
        overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px"
        phone.screenshot(path=artifacts / "answer-phone.png")
    finally:
        context.close()


def test_api_docs_render_offline(page: Page, server: str) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto("/docs")

    expect(page.locator(".opblock-summary-path", has_text="/ask").first).to_be_visible()
    assert requested and all(url.startswith(server) for url in requested), requested
