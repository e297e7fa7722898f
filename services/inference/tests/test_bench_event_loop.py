"""bench/event_loop.py runs each operation of inference's loop on real servers and reports each one."""

import asyncio
from pathlib import Path
from types import ModuleType

import pytest

from vigie_embedded.testing import load_bench

pytestmark = pytest.mark.integration


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return load_bench("event_loop", monkeypatch)


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
