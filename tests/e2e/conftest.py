"""A live service on a free loopback port and a real headless Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from api.app import create_app
from rag.articles import parse_record
from rag.pipeline import Pipeline
from rag.settings import PROJECT_ROOT, Settings

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"

_HOSTILE_ARTICLE = {
    "id": "hostile-markup",
    "title": "<img src=x onerror=\"window.__xss='title'\"> Lantern parade <b>tonight</b>",
    "text": "The lantern parade in Port Ellis starts at <script>window.__xss='script'</script> "
    "nine o'clock on Friday evening, the organisers said. "
    "<img src=x onerror=\"window.__xss='img'\"> Marchers will carry paper lanterns along "
    "the harbour wall.",
    "url": "javascript:window.__xss='url'",
}

FESTIVAL_ARTICLE = {
    "id": "harbour-festival",
    "title": "Harbour festival draws record crowds",
    "text": "The annual harbour festival in Port Ellis drew 48,000 visitors on Saturday, "
    "the organisers said. Fishing boats were decorated with lanterns.",
    "source": "Port Ellis Gazette",
    "published": "2024-08-04T18:30:00Z",
}
"""An indexed article with a source and a publication time, for the filters."""


@pytest.fixture
def hostile_article() -> dict[str, str]:
    """An indexed article whose title, text and url try to inject markup and script."""
    return dict(_HOSTILE_ARTICLE)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless; a clear failure when it is not installed."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("RAG_SKIP_BROWSER_TESTS") == "1":
            pytest.skip("RAG_SKIP_BROWSER_TESTS=1 and Chromium is not installed")
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: the browser tests need it. Install it with "
            "`make chromium` (apt-get install chromium), or set RAG_SKIP_BROWSER_TESTS=1 "
            "to skip them."
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def server(writable_pipeline: Pipeline) -> Iterator[str]:
    """The app served by uvicorn in a thread, over the samples, a hostile article and a
    dated one from a named source."""
    writable_pipeline.add(
        [
            ("hostile.json", parse_record(_HOSTILE_ARTICLE, where="hostile")),
            ("festival.json", parse_record(FESTIVAL_ARTICLE, where="festival")),
        ]
    )
    app = create_app(Settings(index_dir=writable_pipeline.settings.index_dir), writable_pipeline)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    uvicorn_server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [sock]})
    thread.start()
    deadline = time.monotonic() + 30
    while not uvicorn_server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uvicorn_server.started, "the service did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    uvicorn_server.should_exit = True
    thread.join(timeout=30)
    sock.close()


@pytest.fixture
def console_errors() -> list[str]:
    """Errors the page logged (script errors, refused content); tests expect none."""
    return []


@pytest.fixture
def page(browser: Browser, server: str, console_errors: list[str]) -> Iterator[Page]:
    """A fresh desktop-sized tab (no shared state between tests)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server)
    tab = context.new_page()
    tab.on("pageerror", lambda error: console_errors.append(str(error)))

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            console_errors.append(message.text)

    tab.on("console", on_console)
    yield tab
    context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """The folder for screenshots (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
