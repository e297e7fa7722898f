"""bench/counting.py on one synthetic scene: it runs, and Vigie's count error stays below the peer's."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "counting.py"


def test_the_counting_benchmark_runs_and_vigie_beats_the_peer(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("supervision", reason="supervision is a benchmark-only dependency")
    spec = importlib.util.spec_from_file_location("bench_counting", BENCH)
    assert spec is not None
    assert spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # its dataclasses look their module up there
    spec.loader.exec_module(bench)
    figures = bench.main(["--only", "synthetic", "--seeds", "1"])
    synthetic = figures["synthetic"]
    assert synthetic["truth_total"] > 50
    assert synthetic["vigie"]["abs_error"] < synthetic["LineZone"]["abs_error"]
    assert synthetic["vigie"]["abs_error"] <= 0.1 * synthetic["truth_total"]
    assert "absolute count error" in capsys.readouterr().out
