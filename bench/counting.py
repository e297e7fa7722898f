"""Line-counting accuracy of the anonymiser against a peer, and the anonymiser's throughput.

    .venv/bin/python bench/counting.py                      # everything (about a minute on 2 cores)
    .venv/bin/python bench/counting.py --only synthetic     # or: tud, throughput
    .venv/bin/python bench/counting.py --json results.json

(a) Synthetic scenes (`vigie_anonymiser.synthetic`): walkers, people lingering on a line, with box jitter,
    missed detections, occlusion gaps, hidden legs and "ended, then a new id" tracks; the truth is the
    crossings of the noise-free paths. Both counters see the same tracks.
(b) TUD-Campus and TUD-Stadtmitte (MOTChallenge 2015, read in place from ../shared/data, skipped when
    absent): the truth is the crossings of the ground-truth tracks' bottom-centre points; the detector is
    YOLOv4-tiny (`var/model_repository/onnx/yolov4_tiny/1/model.onnx`) in onnxruntime with Vigie's
    letterbox and decoding; both pipelines get the SAME detections of each frame:
      Vigie: `vigie_inference.tracker.Tracker` → TrackFrame → `vigie_anonymiser` counting;
      peer:  supervision's `sv.ByteTrack` → `sv.LineZone` (the usual recipe);
      and, to tell the counting logic from the tracker, `sv.LineZone` on Vigie's tracks.
    Counted: people, per line and direction; the figure of merit is the absolute count error.
(c) Throughput: TrackFrames per second the anonymiser's domain counts (decoding included or not).

Both counters use the bottom-centre anchor. The peer's settings are printed with its version.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vigie_anonymiser import (
    Anonymiser,
    CameraGeometryConfig,
    CountingParams,
    CrossingDirection,
    LineConfig,
    TrackObservation,
    ZoneConfig,
    crossings_total,
    parse_track_frame,
)
from vigie_anonymiser.geometry import CountingLine
from vigie_anonymiser.synthetic import SceneSpec, synthetic_scene, to_track_frame
from vigie_anonymiser.windows import WindowReport
from vigie_proto.v1.tracks_pb2 import OBJECT_CLASS_PERSON, Box, ObjectClass, TrackedObject, TrackFrame

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
MODEL = ROOT / "var" / "model_repository" / "onnx" / "yolov4_tiny" / "1" / "model.onnx"
SEQUENCES = ("TUD-Campus", "TUD-Stadtmitte")
PERSON = int(OBJECT_CLASS_PERSON)
Key = tuple[str, CrossingDirection]

# Chosen once, before looking at any result, and the same for every sequence: five vertical lines across
# the whole picture (people in both sequences walk mostly sideways) and two diagonals.
LINES = [
    *(LineConfig(id=f"x{round(x * 100)}", start=(x, 0.0), end=(x, 1.0)) for x in (0.2, 0.35, 0.5, 0.65, 0.8)),
    LineConfig(id="diag1", start=(0.25, 0.3), end=(0.75, 1.0)),
    LineConfig(id="diag2", start=(0.75, 0.3), end=(0.25, 1.0)),
]
SYNTHETIC_LINES = [
    LineConfig(id="vertical", start=(0.5, 0.1), end=(0.5, 0.95)),
    LineConfig(id="horizontal", start=(0.05, 0.6), end=(0.95, 0.6)),
    LineConfig(id="diagonal", start=(0.1, 0.2), end=(0.9, 0.9)),
]


# -- the two counters ---------------------------------------------------------------------------------


def vigie_count(
    observations: Sequence[TrackObservation],
    lines: Sequence[LineConfig],
    params: CountingParams | None = None,
) -> Counter[Key]:
    geometry = CameraGeometryConfig(id=observations[0].camera_id, lines=list(lines)).to_geometry()
    anonymiser = Anonymiser([geometry], params or CountingParams())
    reports: list[WindowReport] = []
    for observation in observations:
        reports.extend(anonymiser.process(observation, received_at=1.0).reports)
    reports.extend(anonymiser.close_idle(now=2.0, idle_s=0.5))  # the end of the sequence
    return Counter(
        {
            (line, direction): n
            for (line, direction, cls), n in crossings_total(reports).items()
            if cls == PERSON
        }
    )


@dataclass
class Peer:
    """supervision's LineZone, one per line, fed tracked detections in pixels."""

    lines: Sequence[LineConfig]
    width: float
    height: float
    minimum_crossing_threshold: int = 1

    def __post_init__(self) -> None:
        import supervision as sv

        self._sv = sv
        self.zones = [
            sv.LineZone(
                start=sv.Point(line.start[0] * self.width, line.start[1] * self.height),
                end=sv.Point(line.end[0] * self.width, line.end[1] * self.height),
                triggering_anchors=(sv.Position.BOTTOM_CENTER,),
                minimum_crossing_threshold=self.minimum_crossing_threshold,
            )
            for line in self.lines
        ]

    def trigger(self, detections: Any) -> None:
        for zone in self.zones:
            zone.trigger(detections)

    def counts(self) -> Counter[Key]:
        # LineZone's "in" is the side its cross product calls left, our right-to-left (checked in main).
        totals: Counter[Key] = Counter()
        for line, zone in zip(self.lines, self.zones, strict=True):
            totals[(line.id, CrossingDirection.RIGHT_TO_LEFT)] += zone.in_count_per_class.get(PERSON, 0)
            totals[(line.id, CrossingDirection.LEFT_TO_RIGHT)] += zone.out_count_per_class.get(PERSON, 0)
        return totals


def peer_count_tracks(
    observations: Iterable[TrackObservation], lines: Sequence[LineConfig], threshold: int = 1
) -> Counter[Key]:
    """The peer's LineZone on already-tracked objects (the synthetic scenes)."""
    import supervision as sv

    peer = Peer(lines, 640.0, 480.0, threshold)
    numbers: dict[bytes, int] = {}
    for observation in observations:
        if not observation.objects:
            continue
        boxes = np.array([o.box for o in observation.objects], dtype=np.float64) * [640, 480, 640, 480]
        ids = np.array([numbers.setdefault(o.track_id, len(numbers) + 1) for o in observation.objects])
        classes = np.array([o.object_class for o in observation.objects])
        peer.trigger(sv.Detections(xyxy=boxes, tracker_id=ids, class_id=classes))
    return peer.counts()


def peer_version() -> str:
    import supervision as sv

    return f"supervision {sv.__version__}"


# -- scoring ------------------------------------------------------------------------------------------


def errors(truth: Counter[Key], counted: Counter[Key], lines: Sequence[LineConfig]) -> dict[str, Any]:
    rows = []
    total = 0
    for line in lines:
        for direction in CrossingDirection:
            key = (line.id, direction)
            error = abs(counted[key] - truth[key])
            total += error
            rows.append(
                {
                    "line": line.id,
                    "direction": direction.name.lower(),
                    "truth": truth[key],
                    "counted": counted[key],
                    "error": error,
                }
            )
    return {"abs_error": total, "rows": rows}


def print_comparison(
    title: str,
    truth: Counter[Key],
    results: dict[str, Counter[Key]],
    lines: Sequence[LineConfig],
    beyond: Counter[Key] | None = None,
) -> dict[str, Any]:
    """`beyond`: the truth once excursions within the dead band are taken out (what the anonymiser must
    count exactly on true tracks)."""
    names = list(results)
    print(f"\n{title}")
    print(f"  {'line':<11}{'direction':<15}{'truth':>6}" + "".join(f"{n:>22}" for n in names))
    for line in lines:
        for direction in CrossingDirection:
            key = (line.id, direction)
            cells = "".join(f"{results[n][key]:>17} ({results[n][key] - truth[key]:+d})" for n in names)
            print(f"  {line.id:<11}{direction.name.lower():<15}{truth[key]:>6}{cells}")
    summary = {name: errors(truth, counted, lines) for name, counted in results.items()}
    print(f"  {'absolute count error':<32}" + "".join(f"{summary[n]['abs_error']:>22}" for n in names))
    print(f"  {'true crossings':<32}{sum(truth.values()):>6}")
    figures = {"truth_total": sum(truth.values()), **summary}
    if beyond is not None:
        banded = {name: errors(beyond, counted, lines)["abs_error"] for name, counted in results.items()}
        print(
            f"  {'error on the crossings beyond':<26}{sum(beyond.values()):>6}"
            + "".join(f"{banded[n]:>22}" for n in names)
            + "  (the dead band's excursions taken out of the truth)"
        )
        figures["beyond_band"] = {"truth_total": sum(beyond.values()), "abs_error": banded}
    return figures


# -- (a) synthetic --------------------------------------------------------------------------------------


def run_synthetic(seeds: int, params: CountingParams) -> dict[str, Any]:
    geometry = CameraGeometryConfig(id="bench", lines=SYNTHETIC_LINES).to_geometry()
    lines: Sequence[CountingLine] = geometry.lines
    results: dict[str, Any] = {}
    runs = ((5.0, True, 0.0), (3.0, False, 0.0), (5.0, False, 0.0), (10.0, False, 0.0), (5.0, False, 0.3))
    for fps, clean, swap_rate in runs:
        truth: Counter[Key] = Counter()
        vigie: Counter[Key] = Counter()
        peer: Counter[Key] = Counter()
        peer2: Counter[Key] = Counter()
        beyond: Counter[Key] = Counter()
        spec = SceneSpec(fps=fps, pacers=8, strollers=6, clean=clean, swap_rate=swap_rate)
        for seed in range(seeds):
            scene = synthetic_scene(random.Random(seed), lines, spec, params)
            truth.update(scene.truth)
            beyond.update(scene.truth_beyond_band)
            vigie.update(vigie_count(scene.observations, SYNTHETIC_LINES, params))
            peer.update(peer_count_tracks(scene.observations, SYNTHETIC_LINES))
            peer2.update(peer_count_tracks(scene.observations, SYNTHETIC_LINES, threshold=2))
        title = (
            f"(a) synthetic{', clean tracks' if clean else ''}: {seeds} scenes of {spec.duration_s:.0f} s at "
            f"{spec.fps:g} fps, {spec.walkers} walkers, {spec.lingerers} lingerers, {spec.pacers} walking "
            f"back and forth across a line, {spec.strollers} along one each"
            + (f", ids swapped at {swap_rate:.0%} of close encounters" if swap_rate else "")
            + "; same tracks for both counters"
        )
        name = f"{'clean@' if clean else ''}{fps:g}fps{'+swaps' if swap_rate else ''}"
        results[name] = print_comparison(
            title,
            truth,
            {"vigie": vigie, "LineZone": peer, "LineZone(thr=2)": peer2},
            SYNTHETIC_LINES,
            beyond if clean else None,
        )
    return results


# -- (b) TUD sequences ----------------------------------------------------------------------------------


def ground_truth(
    sequence: Path, lines: Sequence[CountingLine], width: int, height: int, params: CountingParams
) -> tuple[Counter[Key], Counter[Key]]:
    """The crossings of the ground-truth tracks' bottom-centre points at every frame, and those left once
    excursions within the dead band (at each point's box size) are taken out."""
    from vigie_anonymiser.synthetic import _true_crossings

    paths: dict[int, list[tuple[int, tuple[float, float], tuple[float, float]]]] = {}
    with (sequence / "gt.txt").open() as file:
        for row in csv.reader(file):
            frame, identity = int(row[0]), int(row[1])
            x, y, w, h = (float(v) for v in row[2:6])
            point = ((x + w / 2) / width, (y + h) / height)
            paths.setdefault(identity, []).append((frame, point, (w / width, h / height)))
    truth: Counter[Key] = Counter()
    beyond: Counter[Key] = Counter()
    for path in paths.values():
        path.sort()
        points = [point for _, point, _ in path]
        sizes = [size for _, _, size in path]
        _true_crossings(lines, points, truth)
        _true_crossings(
            lines,
            points,
            beyond,
            lambda line, i: line.band(*sizes[i], params.hysteresis, params.min_band),  # noqa: B023
        )
    return truth, beyond


def detect(video: Path) -> tuple[list[Any], int, int]:
    """The detections of every frame of `video`, decoded as inference does."""
    import av

    from vigie_inference.detections import decode_detections
    from vigie_inference.detector import OnnxRuntimeDetector
    from vigie_inference.letterbox import letterbox
    from vigie_inference.tracker import TrackerParams
    from vigie_models import INPUT_SIZE

    detector = OnnxRuntimeDetector(MODEL, threads=2)
    multiple = detector.identity.input_multiple  # the pictures the model takes, as inference does
    low = TrackerParams().low_threshold
    detections = []
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            pixels = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
            model_input, transform = letterbox(pixels, INPUT_SIZE, multiple=multiple)
            boxes, scores = detector.detect_sync(model_input[None])
            detections.append(decode_detections(boxes[0], scores[0], transform, score_threshold=low))
            height, width = pixels.shape[:2]
    return detections, width, height


Reported = tuple[bytes, int, Sequence[float], Sequence[float] | None]  # id, class, box, first box


def track_observations(
    frames: Sequence[tuple[Sequence[Reported], Sequence[bytes]]], fps: float
) -> list[TrackObservation]:
    """Per frame (objects as (track id, class, normalised box, first box or None), ended ids): the
    TrackFrames inference would publish, parsed as the anonymiser does."""
    observations = []
    for sequence, (objects, ended) in enumerate(frames):
        message = TrackFrame(
            camera_id="bench",
            run_id="run",
            sequence=sequence,
            model="yolov4_tiny/onnxruntime",
            ended_track_ids=ended,
            objects=[
                TrackedObject(
                    track_id=track,
                    object_class=ObjectClass.ValueType(object_class),
                    score=0.9,
                    box=Box(x1=box[0], y1=box[1], x2=box[2], y2=box[3]),
                    first_box=None
                    if first is None
                    else Box(x1=first[0], y1=first[1], x2=first[2], y2=first[3]),
                )
                for track, object_class, box, first in objects
            ],
        )
        message.captured_at.FromNanoseconds(int((1_700_000_400 + sequence / fps) * 1e9))
        observations.append(parse_track_frame(message.SerializeToString()))
    return observations


def vigie_pipeline(detections: Sequence[Any], fps: float) -> list[TrackObservation]:
    """Vigie's tracker on the detections, each update as the TrackFrame inference would publish."""
    from vigie_inference.tracker import Tracker

    tracker = Tracker()
    frames = []
    for sequence, frame_detections in enumerate(detections):
        update = tracker.update(frame_detections, sequence / fps)
        objects: list[Reported] = [(t.track_id, t.object_class, t.box, t.first_box) for t in update.tracks]
        frames.append((objects, list(update.ended)))
    frames.append(([], list(tracker.end_all())))
    return track_observations(frames, fps)


def ground_truth_tracks(
    folder: Path, width: int, height: int, stride: int, frame_count: int, fps: float
) -> list[TrackObservation]:
    """The ground-truth tracks of the frames kept (every `stride`-th), as a perfect tracker would report
    them: one id per person, ended after the person's last kept frame."""
    boxes: dict[int, dict[int, tuple[float, ...]]] = {}
    with (folder / "gt.txt").open() as file:
        for row in csv.reader(file):
            frame, identity = int(row[0]) - 1, int(row[1])
            x, y, w, h = (float(v) for v in row[2:6])
            box = (x / width, y / height, (x + w) / width, (y + h) / height)
            boxes.setdefault(frame, {})[identity] = tuple(min(max(v, 0.0), 1.0) for v in box)
    kept = range(0, frame_count, stride)
    last = {identity: index for index, frame in enumerate(kept) for identity in boxes.get(frame, {})}
    frames = []
    for index, frame in enumerate(kept):
        objects: list[Reported] = [
            (gt_id(i), PERSON, box, None) for i, box in sorted(boxes.get(frame, {}).items())
        ]
        ended = [gt_id(i) for i, end in last.items() if end == index - 1]
        frames.append((objects, ended))
    frames.append(([], [gt_id(i) for i, end in last.items() if end == len(kept) - 1]))
    return track_observations(frames, fps / stride)


def gt_id(identity: int) -> bytes:
    return identity.to_bytes(16, "big")


def peer_pipeline(
    detections: Sequence[Any], fps: float, width: int, height: int, threshold: int
) -> Counter[Key]:
    import supervision as sv

    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", FutureWarning
        )  # sv.ByteTrack is deprecated in 0.28+, still the recipe
        tracker = sv.ByteTrack(frame_rate=fps)
    peer = Peer(LINES, float(width), float(height), threshold)
    scale = np.array([width, height, width, height], dtype=np.float64)
    for frame_detections in detections:
        tracked = tracker.update_with_detections(
            sv.Detections(
                xyxy=frame_detections.boxes.astype(np.float64) * scale,
                confidence=frame_detections.scores.astype(np.float64),
                class_id=frame_detections.classes.astype(int),
            )
        )
        peer.trigger(tracked)
    return peer.counts()


def run_tud(strides: Sequence[int], params: CountingParams) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if not MODEL.is_file():
        print(f"\n(b) skipped: {MODEL} is missing (make models)")
        return results
    geometry = CameraGeometryConfig(id="bench", lines=LINES).to_geometry()
    for name in SEQUENCES:
        folder = DATA / name
        if not (folder / "gt.txt").is_file():
            print(f"\n(b) {name} skipped: {folder} is absent")
            continue
        info = dict(
            line.strip().split("=", 1)
            for line in (folder / "seqinfo.ini").read_text().splitlines()
            if "=" in line
        )
        fps = float(info["frameRate"])
        started = time.perf_counter()
        detections, width, height = detect(folder / f"{name}.mp4")
        detect_s = time.perf_counter() - started
        truth, beyond = ground_truth(
            folder, geometry.lines, int(info["imWidth"]), int(info["imHeight"]), params
        )
        for stride in strides:
            kept = detections[::stride]
            rate = fps / stride
            tracks = vigie_pipeline(kept, rate)
            vigie = vigie_count(tracks, LINES, params)
            perfect = ground_truth_tracks(folder, width, height, stride, len(detections), fps)
            on_truth = vigie_count(perfect, LINES, params)
            peer_on_truth = peer_count_tracks(perfect, LINES)
            peer = peer_pipeline(kept, rate, width, height, threshold=1)
            peer2 = peer_pipeline(kept, rate, width, height, threshold=2)
            # The counting logic alone: LineZone on Vigie's own tracks.
            mixed = peer_count_tracks(tracks, LINES)
            title = (
                f"(b) {name}: {len(kept)} frames at {rate:g} fps (every {stride}), {width}x{height}, "
                f"detection {detect_s:.1f} s for {len(detections)} frames"
            )
            results[f"{name}@{rate:g}fps"] = print_comparison(
                title,
                truth,
                {
                    "vigie on true tracks": on_truth,
                    "LineZone on true tracks": peer_on_truth,
                    "vigie": vigie,
                    "ByteTrack+LineZone": peer,
                    "(thr=2)": peer2,
                    "vigie tracks+LineZone": mixed,
                },
                LINES,
                beyond,
            )
    return results


# -- (c) throughput ---------------------------------------------------------------------------------------


def run_throughput() -> dict[str, Any]:
    lines = [*SYNTHETIC_LINES, *LINES[:3]]
    zones = [
        ZoneConfig(id="left", polygon=[(0.05, 0.3), (0.45, 0.3), (0.45, 0.95), (0.05, 0.95)]),
        ZoneConfig(id="right", polygon=[(0.55, 0.3), (0.95, 0.3), (0.9, 0.95), (0.6, 0.95)]),
    ]
    geometry = CameraGeometryConfig(id="cam", lines=lines, zones=zones).to_geometry()
    scene = synthetic_scene(
        random.Random(0), geometry.lines, SceneSpec(duration_s=120, fps=10, walkers=400, lingerers=20)
    )
    objects = sum(len(o.objects) for o in scene.observations) / len(scene.observations)
    wire = [to_track_frame(o).SerializeToString() for o in scene.observations]
    figures: dict[str, Any] = {
        "lines": len(lines),
        "zones": len(zones),
        "objects_per_frame": round(objects, 1),
    }
    for label, decode in (("domain", False), ("decode_and_domain", True)):
        best = 0.0
        for _ in range(3):
            anonymiser = Anonymiser([geometry], CountingParams())
            started = time.perf_counter()
            if decode:
                for data in wire:
                    anonymiser.process(parse_track_frame(data), 1.0)
            else:
                for observation in scene.observations:
                    anonymiser.process(observation, 1.0)
            best = max(best, len(wire) / (time.perf_counter() - started))
        figures[f"{label}_frames_per_s"] = round(best)
    print(
        f"\n(c) throughput, one core: {figures['domain_frames_per_s']} TrackFrames/s counted "
        f"({figures['decode_and_domain_frames_per_s']} with protobuf decoding and checks), "
        f"{figures['objects_per_frame']} tracked objects per frame, {len(lines)} lines, {len(zones)} zones"
    )
    return figures


def check_peer_directions() -> None:
    """LineZone's in/out against our left/right, on one walker crossing a vertical line rightwards."""
    from vigie_anonymiser.synthetic import FrameBuilder

    line = LineConfig(
        id="check", start=(0.5, 0.0), end=(0.5, 1.0)
    )  # walking down; right-hand side is x < 0.5
    builder = FrameBuilder()
    walk = [builder.frame({1: (0.3 + 0.02 * i, 0.6)}) for i in range(20)]
    expected = Counter({("check", CrossingDirection.RIGHT_TO_LEFT): 1})
    for counted in (vigie_count(walk, [line]), peer_count_tracks(walk, [line])):
        assert +counted == expected, f"direction conventions disagree: {counted}"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["synthetic", "tud", "throughput"], action="append")
    parser.add_argument("--seeds", type=int, default=20, help="synthetic scenes")
    parser.add_argument(
        "--strides",
        type=int,
        nargs="+",
        default=[1, 5],
        help="analyse every n-th frame of the TUD videos (25 fps: 5 is the platform's default 5 fps)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures there")
    parser.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="a CountingParams setting to try"
    )
    args = parser.parse_args(argv)
    only = set(args.only or ["synthetic", "tud", "throughput"])
    check_peer_directions()
    print(
        f"peer: {peer_version()}; sv.ByteTrack defaults (track_activation_threshold=0.25, "
        "lost_track_buffer=30, minimum_matching_threshold=0.8, minimum_consecutive_frames=1, "
        "frame_rate=the analysed rate); sv.LineZone(triggering_anchors=(BOTTOM_CENTER,), "
        "minimum_crossing_threshold=1, and 2 shown as 'thr=2')"
    )
    params = CountingParams.model_validate(dict(item.split("=", 1) for item in args.param))
    print(f"vigie: {params!r}")
    figures: dict[str, Any] = {"peer": peer_version()}
    if "synthetic" in only:
        figures["synthetic"] = run_synthetic(args.seeds, params)
    if "tud" in only:
        figures["tud"] = run_tud(args.strides, params)
    if "throughput" in only:
        figures["throughput"] = run_throughput()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
