"""Each benchmark runs end to end on tiny inputs and reports figures (never judged on time)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.__main__ import BENCHES, main
from bench.common import NEWS_CSV, SQUAD_JSON

needs_data = pytest.mark.skipif(
    not (NEWS_CSV.exists() and SQUAD_JSON.exists()), reason="shared data sets not present"
)


@needs_data
@pytest.mark.parametrize("bench", BENCHES)
def test_benchmark_produces_figures(bench: str, tmp_path: Path) -> None:
    main([bench, "--tiny", "--output", str(tmp_path)])
    report = json.loads((tmp_path / "bench.json").read_text())
    figures = [f for f in report["figures"] if f["bench"] == bench]
    assert figures, f"{bench} reported no figures"
    assert all(isinstance(f["value"], int | float) for f in figures)
    assert report["machine"]["cores"] >= 1
    assert (tmp_path / "bench.png").stat().st_size > 0


def test_unknown_benchmark_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["nonsense", "--tiny"])
    assert "unknown benchmark" in capsys.readouterr().err
