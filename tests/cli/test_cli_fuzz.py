"""Fuzzing the command line's ``ask`` and ``ingest`` with arbitrary Unicode, lone
surrogates (as a file name in another encoding produces them) and control characters
included: an answer or a readable error, never a traceback, and a refused ingest leaves
the index as it was. Run in-process on a private copy of the sample index."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.commands import app
from rag.articles import SUPPORTED_SUFFIXES
from rag.embedding import Embedder
from rag.pipeline import Pipeline
from rag.text import text_problem

ANY_TEXT = st.text(st.characters(), max_size=40)  # every category, surrogates included
QUESTIONS = ANY_TEXT | ANY_TEXT.map(lambda tail: f"What aid did Macron commit? {tail}")
PLAIN = ANY_TEXT.map(lambda text: f"Harbour news {text}\n\nThe harbour reopened on Monday. {text}")
FEED = st.fixed_dictionaries({"title": ANY_TEXT, "text": PLAIN}).map(json.dumps)
FILES = st.one_of(  # (suffix, content): any content in any format, or in its own format
    st.tuples(st.sampled_from(SUPPORTED_SUFFIXES), ANY_TEXT | PLAIN | FEED),
    st.tuples(st.just(".txt"), PLAIN),
    st.tuples(st.sampled_from([".json", ".jsonl"]), FEED),
)


def generation(index_dir: Path) -> int:
    """The index's change number (grows with every committed write)."""
    records = sqlite3.connect(index_dir / "current" / "records.sqlite")
    [(value,)] = records.execute("SELECT value FROM meta WHERE key = 'seq'")
    records.close()
    return int(value)


def storable(name: str) -> bool:
    """Whether the file system can hold a file of this name (only the surrogates that
    stand for undecodable bytes can be written)."""
    try:
        encoded = os.fsencode(name)
    except UnicodeEncodeError:
        return False
    return b"/" not in encoded and b"\0" not in encoded and len(encoded) < 200


FILE_NAMES = ANY_TEXT.filter(storable)
FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
runner = CliRunner()


@pytest.fixture(scope="module")
def index_dir(
    sample_pipeline: Pipeline, embedder: Embedder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """``RAG_INDEX_DIR``: a private copy of the sample index, for every command of the
    module; each command opens it with the session's model instead of loading its own."""
    index_dir = tmp_path_factory.mktemp("cli-fuzz") / "index"
    shutil.copytree(sample_pipeline.settings.index_dir, index_dir, symlinks=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAG_INDEX_DIR", str(index_dir))
        patch.setattr(Embedder, "from_settings", lambda settings: embedder)
        yield index_dir


def assert_no_traceback(result: Result, *exit_codes: int) -> None:
    assert result.exit_code in exit_codes, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output


@FUZZ
@given(question=QUESTIONS, as_json=st.booleans())
@example(question="\x0b", as_json=False)  # blank and a control character: named as the latter
def test_any_question_is_answered_or_refused(index_dir: Path, question: str, as_json: bool) -> None:
    result = runner.invoke(app, ["ask", *(["--json"] if as_json else []), "--", question])

    assert_no_traceback(result, 0, 2)
    if text_problem(question) is not None:
        assert result.exit_code == 2
        assert "error: the question contains" in result.output


@FUZZ
@given(name=FILE_NAMES, file=FILES)
def test_any_file_is_ingested_or_refused_without_changing_the_index(
    index_dir: Path, name: str, file: tuple[str, str]
) -> None:
    suffix, content = file
    version = generation(index_dir)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{name}{suffix}"
        path.write_bytes(content.encode("utf-8", "surrogatepass"))

        result = runner.invoke(app, ["ingest", "--", str(path)])

    assert_no_traceback(result, 0, 1)
    if text_problem(path.name) is not None or text_problem(content) is not None:
        assert result.exit_code == 1 and "rejected" in result.output
    if result.exit_code == 1 or "added 0 articles" in result.output:
        assert generation(index_dir) == version
