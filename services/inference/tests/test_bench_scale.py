"""bench/scale.py without running the platform: the model stand-in keeps the detector's signature, and a
number of cameras is sustained only when nothing was dropped, coverage is complete and nothing lags."""

from pathlib import Path
from types import ModuleType

import pytest

from vigie_embedded.testing import load_bench


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return load_bench("scale", monkeypatch)


def test_the_stand_in_has_the_detectors_name_and_config(bench: ModuleType, tmp_path: Path) -> None:
    source = tmp_path / "models"
    model = source / "python" / "yolov4_tiny"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text('name: "yolov4_tiny"\n')
    (model / "labels.txt").write_text("person\n")
    root = bench.stand_in_repository(source, tmp_path / "stand-in")
    assert (root / "yolov4_tiny" / "config.pbtxt").read_text() == 'name: "yolov4_tiny"\n'
    assert (root / "yolov4_tiny" / "labels.txt").exists()
    code = (root / "yolov4_tiny" / "1" / "model.py").read_text()
    compile(code, "model.py", "exec")
    assert "np.zeros" in code


def step(bench: ModuleType, **changes: object) -> object:
    figures = {
        "cameras": 4,
        "seconds": 10.0,
        "published_per_camera_s": 5.0,
        "analysed_per_camera_s": 5.0,
        "dropped": {"ingest_behind": 0, "never_analysed": 0},
        "coverage_complete": True,
        "coverage_detail": "",
        "cpu_per_camera_percent": {"ingest": 3.0},
        "cpu_total_percent": 30.0,
        "main_thread_percent": {"ingest": 2.0, "inference": 8.0},
        "broker_mb_per_camera_s": {"in": 1.5, "out": 1.5},
        "capture_to_tracks_ms": 20.0,
    }
    return bench.Step(**(figures | changes))


def test_sustained_only_without_drops_gaps_or_lag(bench: ModuleType) -> None:
    assert bench._limits(step(bench), 5.0, 500.0) == []
    for changes in (
        {"analysed_per_camera_s": 4.0},
        {"published_per_camera_s": 4.0},
        {"dropped": {"ingest_behind": 0, "never_analysed": 3}},
        {"coverage_complete": False},
        {"capture_to_tracks_ms": 900.0},
        {"capture_to_tracks_ms": float("nan")},
    ):
        limits = bench._limits(step(bench, **changes), 5.0, 500.0)
        assert limits, changes
        assert "busiest event loop: inference's main thread" in limits[-1]
