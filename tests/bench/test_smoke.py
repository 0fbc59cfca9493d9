"""Each benchmark runs end to end on tiny inputs and reports figures (never judged on time)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.__main__ import BENCHES, main
from bench.common import NEWS_CSV, SQUAD_JSON
from bench.writes import parse_sizes

needs_data = pytest.mark.skipif(
    not (NEWS_CSV.exists() and SQUAD_JSON.exists()), reason="shared data sets not present"
)


@needs_data
@pytest.mark.parametrize("bench", [b for b in BENCHES if b != "writes"])
def test_benchmark_produces_figures(bench: str, tmp_path: Path) -> None:
    main([bench, "--tiny", "--output", str(tmp_path)])
    report = json.loads((tmp_path / "bench.json").read_text())
    figures = [f for f in report["figures"] if f["bench"] == bench]
    assert figures, f"{bench} reported no figures"
    assert all(isinstance(f["value"], int | float) for f in figures)
    assert report["machine"]["cores"] >= 1
    assert (tmp_path / "bench.png").stat().st_size > 0


def test_writes_benchmark_reports_each_cost_at_each_size(tmp_path: Path) -> None:
    main(["writes", "--tiny", "--output", str(tmp_path)])
    report = json.loads((tmp_path / "bench.json").read_text())
    figures = {f["name"]: f for f in report["figures"] if f["bench"] == "writes"}
    for size in ("1k", "3k"):
        for name in (
            f"bulk write, {size} chunks",
            f"build merge, {size} chunks",
            f"add one article (10 chunks), {size} chunks",
            f"delete one article, {size} chunks",
            f"add one article, 1% pending, {size} chunks",
            f"merge after 1% changes, {size} chunks",
            f"disk per chunk, {size} chunks",
        ):
            assert name in figures, f"missing {name!r} in {sorted(figures)}"
    for ratio in ("add one article, 3k / 1k", "delete one article, 3k / 1k"):
        assert figures[ratio]["unit"] == "x" and figures[ratio]["met"] is not None
    assert all(math.isfinite(f["value"]) and f["value"] > 0 for f in figures.values())
    assert (tmp_path / "writes.png").stat().st_size > 0


def test_write_sizes_are_read_with_suffixes() -> None:
    assert parse_sizes("1M, 10k,100_000,2.5k") == (2_500, 10_000, 100_000, 1_000_000)
    with pytest.raises(ValueError):
        parse_sizes("5")


def test_unknown_benchmark_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["nonsense", "--tiny"])
    assert "unknown benchmark" in capsys.readouterr().err
