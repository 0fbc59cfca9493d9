"""`rag serve-postgres` (`make serve-postgres`): a PostgreSQL of its own, the service on
it over the sample articles, and both stopped by one SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx

from bench.http_latency import free_port, wait_until_healthy
from index.postgres.local import LocalPostgres


def test_serve_postgres_answers_from_its_own_database(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).with_name("rag")), "serve-postgres"]
    command += ["--directory", str(tmp_path / "pg"), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until_healthy(url, process, "/health/ready")
        answer = httpx.post(f"{url}/ask", json={"question": "What aid did Macron commit?"})
        best = answer.json()["answers"][0]
        article = httpx.get(f"{url}/articles/{best['article_id']}").json()
        assert "three billion euros" in best["text"]
        assert article["text"][best["start"] : best["end"]] == best["text"]
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output.decode(errors="replace")[-2000:]
    assert not LocalPostgres(tmp_path / "pg").running()
