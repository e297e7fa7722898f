"""bench/detectors.py's scoring and verdict on a made-up sequence and a fake detector (no video, no model)."""

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from vigie_embedded.testing import load_bench
from vigie_inference.detections import CountedClass, Detections

WIDTH, HEIGHT, FPS, FRAMES = 640, 480, 25, 60


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    pytest.importorskip("motmetrics", reason="motmetrics is a benchmark-only dependency")
    return load_bench("detectors", monkeypatch)


def people_walking(folder: Path) -> dict[int, list[tuple[float, float, float, float]]]:
    """Two people crossing the picture in opposite directions, written as a MOTChallenge sequence;
    returns each frame's true boxes (x, y, w, h in pixels)."""
    folder.mkdir()
    (folder / "seqinfo.ini").write_text(
        f"[Sequence]\nname={folder.name}\nframeRate={FPS}\nseqLength={FRAMES}\n"
        f"imWidth={WIDTH}\nimHeight={HEIGHT}\n"
    )
    boxes: dict[int, list[tuple[float, float, float, float]]] = {}
    rows = []
    for frame in range(FRAMES):
        step = frame / (FRAMES - 1)
        for identity, (x, y, w, h) in enumerate(
            [(20 + 540 * step, 250, 60, 150), (560 - 540 * step, 150, 50, 120)], start=1
        ):
            boxes.setdefault(frame, []).append((x, y, w, h))
            rows.append(f"{frame + 1},{identity},{x},{y},{w},{h},1,-1,-1,-1")
    (folder / "gt.txt").write_text("\n".join(rows) + "\n")
    return boxes


def fake_detector(
    truth: dict[int, list[tuple[float, float, float, float]]], miss_every: int | None = None
) -> list[Detections]:
    """Every true box, scored 0.9, but person 1 missed on every `miss_every`-th frame; and a false one
    scored 0.3 in the corner of every frame."""
    frames = []
    for frame in range(FRAMES):
        missed = miss_every is not None and frame % miss_every == 0
        kept = [box for i, box in enumerate(truth[frame]) if not (i == 0 and missed)]
        boxes = [[x / WIDTH, y / HEIGHT, (x + w) / WIDTH, (y + h) / HEIGHT] for x, y, w, h in kept]
        boxes.append([0.0, 0.0, 0.05, 0.1])
        scores = [0.9] * len(kept) + [0.3]
        frames.append(
            Detections(
                boxes=np.array(boxes, dtype=np.float32),
                scores=np.array(scores, dtype=np.float32),
                classes=np.full(len(scores), CountedClass.PERSON, dtype=np.int8),
            )
        )
    return frames


def test_scores_table_and_verdict_on_a_fake_detector(bench: ModuleType, tmp_path: Path) -> None:
    truth = people_walking(tmp_path / "walk")
    clip = bench.load_clip(tmp_path / "walk")
    assert sum(clip.crossings.values()) > 0
    perfect = bench.evaluate(
        bench.DEFAULT_MODEL,
        [clip],
        {"walk": fake_detector(truth)},
        bench.DEFAULT_THRESHOLDS,
        (30, 20),
    )
    assert (perfect.recall_5fps, perfect.precision_5fps, perfect.recall_25fps, perfect.precision_25fps) == (
        1.0,
        1.0,
        1.0,
        1.0,
    )
    assert perfect.ap50 == pytest.approx(1.0)  # the false box scores below every true one
    assert perfect.count_error == clip.floor
    assert perfect.idf1_5fps > 0.9
    assert perfect.default

    # A cheaper option that misses one person on every 5th frame: the frames the platform analyses.
    cheap_option = bench.MODELS[0]
    assert cheap_option.input_size < bench.DEFAULT_SIZE
    blind = bench.evaluate(
        cheap_option, [clip], {"walk": fake_detector(truth, bench.STRIDE)}, bench.DEFAULT_THRESHOLDS, (10, 8)
    )
    assert blind.recall_5fps == pytest.approx(0.5)
    assert blind.recall_25fps == pytest.approx(1 - FRAMES // bench.STRIDE / (2 * FRAMES), abs=0.01)
    assert blind.count_error > perfect.count_error

    lines = bench.table([perfect, blind])
    assert len(lines) == 3
    assert "yolov4-tiny 416 *" in lines[1]
    assert bench.recommend([perfect, blind]) is perfect
    assert bench.pareto([perfect, blind]) == [blind, perfect]
    assert "keeping today's default" in "\n".join(bench.verdict([perfect, blind], [clip]))
