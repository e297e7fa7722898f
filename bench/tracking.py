"""Tracking accuracy and CPU cost of Vigie's tracker (`vigie_inference.tracker.Tracker`).

    .venv/bin/python bench/tracking.py                         # TUD and synthetic (about a minute, 2 cores)
    .venv/bin/python bench/tracking.py --only tud --strides 1 5
    .venv/bin/python bench/tracking.py --tracker mypkg.tracker  # another module with the same Tracker API
    .venv/bin/python bench/tracking.py --json results.json

(a) TUD-Campus and TUD-Stadtmitte (MOTChallenge 2015, 25 fps, read in place from ../shared/data, skipped
    when absent): the detector is YOLOv4-tiny in onnxruntime, run exactly as bench/counting.py runs it
    (its `detect`), once per video; the detections are cached outside the repository (`--cache`, by
    default in the system's temporary folder, keyed by the model's digest). The tracker then sees every
    `stride`-th frame with its true capture time (25 / stride frames per second: strides 1, 3, 5 and 8 give
    25, 8.3, 5 and 3.1 fps) and is scored against the ground truth of the frames it saw, only.
(b) Synthetic scenes (`--seeds`): people walking across a 4:3 picture at TUD's sizes and speeds, some side
    by side, some crossing each other, hidden behind a pillar or by a passer-by nearer the camera (missed
    or scored low by the "detector" as a box hides them), with box jitter, random misses and a few false
    detections; sampled at 3, 5 and 10 fps. Ground truth is exact.

Scores, with py-motmetrics (CLEAR MOT and identity metrics, IoU >= 0.5 to match a ground-truth box):
MOTA, IDF1, identity switches, precision and recall of the reported boxes, and the tracker's CPU time
per frame (`time.process_time` around `Tracker.update` only, best of `--repeats` runs). Only what the
tracker reports is scored: confirmed tracks matched in the frame, with their Kalman-corrected boxes.
A reference tracker, supervision's `sv.ByteTrack` (its defaults, `frame_rate` the analysed rate), is
scored on the same detections (`--no-peer` to skip it).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib
import json
import math
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from vigie_inference.detections import CountedClass, Detections

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # bench/counting.py's detector, as a module of the namespace package bench

from bench import counting  # noqa: E402  (after the path it is found on)

SEQUENCES = counting.SEQUENCES
DEFAULT_STRIDES = (1, 3, 5, 8)
SYNTHETIC_FPS = (10.0, 5.0, 3.0)
MIN_IOU = 0.5  # MOTChallenge's: a reported box covers a true one when IoU >= 0.5
PERSON = int(CountedClass.PERSON)
METRICS = ["mota", "idf1", "num_switches", "precision", "recall", "num_frames"]


class TrackerLike(Protocol):
    """What the benchmark needs of a tracker: `Tracker.update` returning a `TrackerUpdate`."""

    def update(self, detections: Detections, timestamp: float) -> Any: ...


@dataclass(frozen=True)
class Truth:
    """Ground truth of one sequence: per frame (0-based), the people's ids and x1, y1, x2, y2 pixel boxes."""

    ids: list[NDArray[np.int64]]
    boxes: list[NDArray[np.float64]]
    width: int
    height: int
    fps: float


@dataclass
class Score:
    mota: float
    idf1: float
    switches: int
    precision: float
    recall: float
    frames: int
    cpu_ms: float

    def row(self, label: str) -> str:
        return (
            f"  {label:<34}{self.frames:>7}{self.mota:>8.3f}{self.idf1:>8.3f}{self.switches:>6}"
            f"{self.precision:>7.3f}{self.recall:>7.3f}{self.cpu_ms:>10.3f}"
        )


HEADER = f"  {'':<34}{'frames':>7}{'MOTA':>8}{'IDF1':>8}{'IDsw':>6}{'prec':>7}{'rec':>7}{'CPU ms/fr':>10}"


# -- trackers ---------------------------------------------------------------------------------------------


def vigie_factory(module_name: str) -> Callable[[], TrackerLike]:
    """`Tracker()` of `module_name` (default settings), so that a copy of an older tracker can be compared."""
    module = importlib.import_module(module_name)
    tracker_class: Callable[[], TrackerLike] = module.Tracker
    return tracker_class


def track_vigie(
    make: Callable[[], TrackerLike], frames: Sequence[Detections], times: Sequence[float], scale: NDArray[Any]
) -> tuple[list[tuple[list[int], NDArray[np.float64]]], float]:
    """Run a fresh tracker over the frames: per frame, the reported ids (small ints) and pixel boxes, and
    the CPU seconds `update` took in all."""
    tracker = make()
    numbers: dict[bytes, int] = {}
    reported = []
    cpu = 0.0
    for detections, timestamp in zip(frames, times, strict=True):
        started = time.process_time()
        update = tracker.update(detections, timestamp)
        cpu += time.process_time() - started
        ids = [numbers.setdefault(t.track_id, len(numbers) + 1) for t in update.tracks]
        boxes = np.array([t.box for t in update.tracks], dtype=np.float64).reshape(-1, 4) * scale
        reported.append((ids, boxes))
    return reported, cpu


def track_peer(
    frames: Sequence[Detections], times: Sequence[float], scale: NDArray[Any], fps: float
) -> tuple[list[tuple[list[int], NDArray[np.float64]]], float]:
    """supervision's ByteTrack (defaults, `frame_rate` = the analysed rate) on the same detections."""
    import supervision as sv

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated in 0.28+, still the common recipe
        tracker = sv.ByteTrack(frame_rate=max(1, round(fps)))
    reported = []
    cpu = 0.0
    for detections in frames:
        started = time.process_time()
        tracked = tracker.update_with_detections(
            sv.Detections(
                xyxy=detections.boxes.astype(np.float64) * scale,
                confidence=detections.scores.astype(np.float64),
                class_id=detections.classes.astype(int),
            )
        )
        cpu += time.process_time() - started
        ids = [int(i) for i in tracked.tracker_id] if tracked.tracker_id is not None else []
        reported.append((ids, np.asarray(tracked.xyxy, dtype=np.float64).reshape(-1, 4)))
    return reported, cpu


# -- scoring ---------------------------------------------------------------------------------------------


def score(
    truth_ids: Sequence[NDArray[np.int64]],
    truth_boxes: Sequence[NDArray[np.float64]],
    reported: Sequence[tuple[list[int], NDArray[np.float64]]],
    cpu_s: float,
) -> Score:
    """CLEAR MOT and identity metrics of `reported` against the truth of the same frames."""
    import motmetrics as mm  # type: ignore[import-untyped]

    accumulator = mm.MOTAccumulator(auto_id=True)
    for ids, boxes, (hyp_ids, hyp_boxes) in zip(truth_ids, truth_boxes, reported, strict=True):
        distances = mm.distances.iou_matrix(_xywh(boxes), _xywh(hyp_boxes), max_iou=1.0 - MIN_IOU)
        accumulator.update(ids.tolist(), hyp_ids, distances)
    summary = mm.metrics.create().compute(accumulator, metrics=METRICS, name="run")
    row = summary.iloc[0]
    return Score(
        mota=float(row["mota"]),
        idf1=float(row["idf1"]),
        switches=int(row["num_switches"]),
        precision=float(row["precision"]),
        recall=float(row["recall"]),
        frames=int(row["num_frames"]),
        cpu_ms=1000.0 * cpu_s / max(1, len(reported)),
    )


def _xywh(boxes: NDArray[np.float64]) -> NDArray[np.float64]:
    out = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    out[:, 2:4] -= out[:, 0:2]
    return out


def evaluate(
    label: str,
    make: Callable[[], TrackerLike] | None,
    truth: Truth,
    frames: Sequence[Detections],
    repeats: int,
) -> Score:
    """Score one tracker (None: the peer) on `frames`, each at the time of its index in `truth`."""
    times = [index / truth.fps for index in range(len(frames))]
    scale = np.array([truth.width, truth.height, truth.width, truth.height], dtype=np.float64)
    best_cpu = math.inf
    reported: list[tuple[list[int], NDArray[np.float64]]] = []
    for _ in range(repeats):
        if make is None:
            reported, cpu = track_peer(frames, times, scale, truth.fps)
        else:
            reported, cpu = track_vigie(make, frames, times, scale)
        best_cpu = min(best_cpu, cpu)
    result = score(truth.ids, truth.boxes, reported, best_cpu)
    print(result.row(label))
    return result


def strided(truth: Truth, frames: Sequence[Detections], stride: int) -> tuple[Truth, list[Detections]]:
    """Every `stride`-th frame and its truth, as the platform samples a camera at fps / stride."""
    kept = Truth(
        ids=truth.ids[::stride],
        boxes=truth.boxes[::stride],
        width=truth.width,
        height=truth.height,
        fps=truth.fps / stride,
    )
    return kept, list(frames[::stride])


# -- (a) TUD ---------------------------------------------------------------------------------------------


def load_truth(folder: Path) -> Truth:
    info = dict(
        line.strip().split("=", 1)
        for line in (folder / "seqinfo.ini").read_text().splitlines()
        if "=" in line
    )
    length = int(info["seqLength"])
    rows: list[list[tuple[int, list[float]]]] = [[] for _ in range(length)]
    with (folder / "gt.txt").open() as file:
        for row in csv.reader(file):
            frame, identity = int(row[0]), int(row[1])
            if float(row[6]) == 0.0:  # MOTChallenge: conf 0 marks a box to ignore (none in TUD)
                continue
            x, y, w, h = (float(v) for v in row[2:6])
            rows[frame - 1].append((identity, [x, y, x + w, y + h]))
    return Truth(
        ids=[np.array([i for i, _ in frame], dtype=np.int64) for frame in rows],
        boxes=[np.array([b for _, b in frame], dtype=np.float64).reshape(-1, 4) for frame in rows],
        width=int(info["imWidth"]),
        height=int(info["imHeight"]),
        fps=float(info["frameRate"]),
    )


def cached_detections(video: Path, cache: Path) -> list[Detections]:
    """bench/counting.py's `detect` on `video`, run once per model and video, then read from `cache`."""
    digest = hashlib.sha256(counting.MODEL.read_bytes()).hexdigest()[:12]
    path = cache / f"{video.stem}-{digest}.npz"
    stored = load_detections(path)
    if stored is not None:
        return stored
    started = time.perf_counter()
    detections, _, _ = counting.detect(video)
    print(f"  detected {video.name}: {len(detections)} frames in {time.perf_counter() - started:.1f} s")
    save_detections(path, detections)
    return list(detections)


def load_detections(path: Path) -> list[Detections] | None:
    """The detections `save_detections` wrote to `path`, frame by frame; None if it did not."""
    if not path.is_file():
        return None
    stored = np.load(path)
    bounds = np.cumsum(stored["counts"])[:-1]
    return [
        Detections(boxes=b, scores=s, classes=c)
        for b, s, c in zip(
            np.split(stored["boxes"], bounds),
            np.split(stored["scores"], bounds),
            np.split(stored["classes"], bounds),
            strict=True,
        )
    ]


def save_detections(path: Path, detections: Sequence[Detections]) -> None:
    """Write a video's detections to `path` at once (a run stopped half-way leaves no partial cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part.npz")
    np.savez(
        partial,
        counts=np.array([len(d) for d in detections]),
        boxes=np.concatenate([d.boxes for d in detections]),
        scores=np.concatenate([d.scores for d in detections]),
        classes=np.concatenate([d.classes for d in detections]),
    )
    partial.rename(path)


def run_tud(
    trackers: dict[str, Callable[[], TrackerLike] | None],
    strides: Sequence[int],
    cache: Path,
    repeats: int,
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if not counting.MODEL.is_file():
        print(f"\n(a) skipped: {counting.MODEL} is missing (make models)")
        return results
    for name in SEQUENCES:
        folder = counting.DATA / name
        if not (folder / "gt.txt").is_file():
            print(f"\n(a) {name} skipped: {folder} is absent")
            continue
        truth = load_truth(folder)
        frames = cached_detections(folder / f"{name}.mp4", cache)
        # Only people are annotated: the other classes' tracks would all count as false positives.
        people = [d.select(d.classes == PERSON) for d in frames]
        for stride in strides:
            kept_truth, kept = strided(truth, people, stride)
            print(f"\n(a) {name} at {kept_truth.fps:.3g} fps (every {stride} of {len(frames)} frames)")
            print(HEADER)
            for label, make in trackers.items():
                result = evaluate(label, make, kept_truth, kept, repeats)
                results[f"{name}@{kept_truth.fps:.3g}fps/{label}"] = vars(result)
    return results


# -- (b) synthetic ---------------------------------------------------------------------------------------

WIDTH, HEIGHT = 640, 480
PILLAR = (0.47, 0.53)  # x range of a pillar in front of the scene, normalised


@dataclass(frozen=True)
class Walker:
    """A person walking a straight line at constant speed, in pixels: TUD's people are 120-250 px tall
    and walk 40-110 px/s at this size."""

    start_s: float
    x0: float
    y0: float  # the box's bottom
    vx: float
    vy: float
    height: float

    def box(self, t: float) -> NDArray[np.float64] | None:
        dt = t - self.start_s
        x, y = self.x0 + self.vx * dt, self.y0 + self.vy * dt
        width = 0.4 * self.height
        if dt < 0 or x + width / 2 < 0 or x - width / 2 > WIDTH:
            return None
        return np.array([x - width / 2, y - self.height, x + width / 2, y])


def synthetic_walkers(rng: random.Random, duration_s: float) -> list[Walker]:
    """About 10 people, in pairs side by side or alone, crossing the picture both ways."""
    walkers: list[Walker] = []
    while len(walkers) < 10:
        start = rng.uniform(-4.0, duration_s - 6.0)
        rightwards = rng.random() < 0.5
        height = rng.uniform(130.0, 240.0)
        speed = rng.uniform(40.0, 110.0) * height / 180.0
        y = rng.uniform(300.0, 460.0)
        x0 = -0.2 * height if rightwards else WIDTH + 0.2 * height
        vx = speed if rightwards else -speed
        vy = rng.uniform(-8.0, 8.0)
        walkers.append(Walker(start, x0, y, vx, vy, height))
        if rng.random() < 0.3:  # a companion, side by side a few pixels behind or ahead
            gap = rng.uniform(0.3, 0.6) * height * (1 if rng.random() < 0.5 else -1)
            walkers.append(Walker(start, x0 - gap, y + rng.uniform(-15, 15), vx, vy, height * 0.95))
    return walkers


def synthetic_frames(
    rng: random.Random, walkers: Sequence[Walker], fps: float, duration_s: float
) -> tuple[Truth, list[Detections]]:
    """What a detector sees of the walkers at `fps`: a person is missed when less than 40% of them shows
    (pillar, or people nearer the camera, i.e. lower in the picture), scored low when less than 75%."""
    ids: list[NDArray[np.int64]] = []
    truths: list[NDArray[np.float64]] = []
    frames: list[Detections] = []
    scale = np.array([WIDTH, HEIGHT, WIDTH, HEIGHT], dtype=np.float64)
    for index in range(round(duration_s * fps)):
        t = index / fps
        present = [(n, box) for n, w in enumerate(walkers) if (box := w.box(t)) is not None]
        # Annotate only what could be annotated: people at least partly inside the picture.
        ids.append(np.array([n for n, _ in present], dtype=np.int64))
        truths.append(np.array([box for _, box in present], dtype=np.float64).reshape(-1, 4))
        boxes, scores = [], []
        for n, box in present:
            shown = _visible_fraction(box, [b for m, b in present if m != n and b[3] > box[3]])
            if shown < 0.4 or rng.random() < 0.05:
                continue
            score = rng.uniform(0.6, 0.95) if shown >= 0.75 else rng.uniform(0.15, 0.5)
            size = np.array([box[2] - box[0], box[3] - box[1]] * 2)
            boxes.append(box + np.array([rng.gauss(0.0, 0.04) for _ in range(4)]) * size)
            scores.append(score)
        if rng.random() < 0.1:  # a false detection, somewhere
            x, y, h = rng.uniform(0, WIDTH), rng.uniform(150, HEIGHT), rng.uniform(80, 200)
            boxes.append(np.array([x, y - h, x + 0.4 * h, y]))
            scores.append(rng.uniform(0.1, 0.7))
        normalised = np.clip(np.array(boxes, dtype=np.float64).reshape(-1, 4) / scale, 0.0, 1.0)
        frames.append(
            Detections(
                boxes=normalised,
                scores=np.array(scores, dtype=np.float32),
                classes=np.full(len(scores), CountedClass.PERSON, dtype=np.int8),
            )
        )
    return Truth(ids=ids, boxes=truths, width=WIDTH, height=HEIGHT, fps=fps), frames


def _visible_fraction(box: NDArray[np.float64], in_front: Sequence[NDArray[np.float64]]) -> float:
    """The share of `box` hidden neither by the pillar nor by the boxes in front (sampled on a grid)."""
    xs = np.linspace(box[0], box[2], 12)
    ys = np.linspace(box[1], box[3], 24)
    gx, gy = np.meshgrid(xs, ys)
    hidden = (gx >= PILLAR[0] * WIDTH) & (gx <= PILLAR[1] * WIDTH)
    for other in in_front:
        hidden |= (gx >= other[0]) & (gx <= other[2]) & (gy >= other[1]) & (gy <= other[3])
    return float(1.0 - hidden.mean())


def run_synthetic(trackers: dict[str, Callable[[], TrackerLike] | None], seeds: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    duration_s = 40.0
    for fps in SYNTHETIC_FPS:
        print(f"\n(b) synthetic at {fps:g} fps: {seeds} scenes of {duration_s:g} s, scores of all together")
        print(HEADER)
        scenes = []
        for seed in range(seeds):
            rng = random.Random(seed)
            walkers = synthetic_walkers(rng, duration_s)
            scenes.append(synthetic_frames(random.Random(seed * 1000 + round(fps)), walkers, fps, duration_s))
        # One long run of concatenated scenes, 10 s of nothing between them, scored as one sequence.
        joined_truth, joined = _join(scenes, fps)
        for label, make in trackers.items():
            result = evaluate(label, make, joined_truth, joined, repeats=1)
            results[f"synthetic@{fps:g}fps/{label}"] = vars(result)
    return results


def _join(scenes: Sequence[tuple[Truth, list[Detections]]], fps: float) -> tuple[Truth, list[Detections]]:
    pause = round(10 * fps)
    ids: list[NDArray[np.int64]] = []
    boxes: list[NDArray[np.float64]] = []
    frames: list[Detections] = []
    for number, (truth, detections) in enumerate(scenes):
        ids += [i + 1000 * number for i in truth.ids] + [np.zeros(0, dtype=np.int64)] * pause
        boxes += truth.boxes + [np.zeros((0, 4))] * pause
        frames += detections + [Detections.empty()] * pause
    return Truth(ids=ids, boxes=boxes, width=WIDTH, height=HEIGHT, fps=fps), frames


# -- main ------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["tud", "synthetic"], action="append")
    parser.add_argument("--strides", type=int, nargs="+", default=list(DEFAULT_STRIDES))
    parser.add_argument("--seeds", type=int, default=20, help="synthetic scenes per frame rate")
    parser.add_argument("--repeats", type=int, default=10, help="runs per TUD case; the CPU time is the best")
    parser.add_argument(
        "--tracker",
        action="append",
        help="module with a `Tracker` class like vigie_inference.tracker's (repeatable; LABEL=MODULE)",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip supervision's ByteTrack")
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "vigie-bench-tracking", help="detections"
    )
    parser.add_argument("--json", type=Path, help="also write the figures there")
    args = parser.parse_args(argv)
    only = set(args.only or ["tud", "synthetic"])
    trackers: dict[str, Callable[[], TrackerLike] | None] = {}
    for spec in args.tracker or ["vigie=vigie_inference.tracker"]:
        label, _, module = spec.rpartition("=")
        trackers[label or module] = vigie_factory(module)
    if not args.no_peer:
        import supervision as sv

        trackers[f"sv.ByteTrack {sv.__version__}"] = None
    figures: dict[str, Any] = {}
    if "tud" in only:
        figures["tud"] = run_tud(trackers, args.strides, args.cache, args.repeats)
    if "synthetic" in only:
        figures["synthetic"] = run_synthetic(trackers, args.seeds)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
