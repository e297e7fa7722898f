"""bench/event_loop.py runs each operation of inference's loop on real servers and reports each one."""

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]
BENCH = ROOT / "bench" / "event_loop.py"

pytestmark = pytest.mark.integration


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_event_loop", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_every_operation_is_measured(bench: ModuleType, sample_video: Path, model_repository: Path) -> None:
    figures = asyncio.run(bench.run(sample_video, model_repository.parent, 5))
    assert list(figures) == [
        "publish FRAMES (ingest, for reference)",
        "receive (fetch one frame)",
        "parse",
        "letterbox",
        "model call, client side (stand-in model)",
        "decode",
        "track (and the TrackFrame built)",
        "publish TRACKS (serialised, acknowledged)",
        "ack the frame",
    ]
    assert all(value >= 0 for value in figures.values())
    assert figures["model call, client side (stand-in model)"] > 0
