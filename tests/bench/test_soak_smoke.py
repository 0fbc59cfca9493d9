"""The soak script in its quick mode: two workers, concurrent reads and writes, nothing lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from rag.settings import PROJECT_ROOT


def test_quick_soak_loses_nothing_and_fails_no_request(tmp_path: Path) -> None:
    output = tmp_path / "soak.json"
    env = {**os.environ, "RAG_TORCH_THREADS": "1"}

    run = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--quick", "--output", output],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )

    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(output.read_text())
    assert (result["workers"], result["clients"]) == (2, 4)
    assert result["failed_requests"] == result["server_errors"] == 0, result["error_samples"]
    assert all(result["kinds"][kind]["requests"] > 0 for kind in ("ask", "add", "delete"))
    consistency = result["consistency"]
    assert consistency["ok"], consistency
    assert consistency["index_check"].startswith("ok:")
    assert result["visibility"]["writes"] == (
        result["kinds"]["add"]["requests"] + result["kinds"]["delete"]["requests"]
    )
    assert "PASSED" in run.stdout
