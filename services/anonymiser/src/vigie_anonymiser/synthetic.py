"""Synthetic tracks with known crossings, for the tests and the counting benchmark (no network, no video).

`FrameBuilder` writes one camera run's TrackObservations frame by frame, exactly as a test spells them out.
`synthetic_scene` draws a random scene (walkers crossing, people lingering on a line, turning back) and
degrades the tracker output the way real trackers do — box jitter, missed detections, occlusion gaps,
legs hidden (the box's bottom jumps up), and ids that end and restart after a long gap — while keeping the
true crossings of the noise-free paths as ground truth.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from vigie_anonymiser.camera import CameraAnonymiser, crossings_total
from vigie_anonymiser.config import CameraGeometryConfig, CountingParams, LineConfig, ZoneConfig
from vigie_anonymiser.geometry import BoxTuple, CountingLine, CrossingDirection, Point
from vigie_anonymiser.observations import ObservedObject, TrackObservation
from vigie_anonymiser.windows import WindowReport
from vigie_proto.v1.tracks_pb2 import OBJECT_CLASS_PERSON, Box, ObjectClass, TrackedObject, TrackFrame

__all__ = [
    "T0",
    "FrameBuilder",
    "SceneSpec",
    "SyntheticScene",
    "box_for",
    "camera_for",
    "crossing_counts",
    "feed",
    "synthetic_scene",
    "to_track_frame",
    "track_id",
]

# A multiple of 1200 s: the start of a 20-minute window.
T0 = 1_700_000_400.0
_WIDTH = 0.4  # a synthetic person's box width, in box heights


def track_id(number: int) -> bytes:
    return number.to_bytes(16, "big")


def box_for(anchor: Point, width: float = 0.04, height: float = 0.12) -> BoxTuple:
    """The box whose bottom centre is `anchor`."""
    x, y = anchor
    return (x - width / 2, y - height, x + width / 2, y)


def camera_for(
    lines: Sequence[LineConfig] = (),
    zones: Sequence[ZoneConfig] = (),
    params: CountingParams | None = None,
    **config: object,
) -> CameraAnonymiser:
    """A `CameraAnonymiser` for camera "cam" (`FrameBuilder`'s default) with these lines and zones."""
    geometry = CameraGeometryConfig.model_validate(
        {"id": "cam", "lines": list(lines), "zones": list(zones), **config}
    ).to_geometry()
    return CameraAnonymiser(geometry, params or CountingParams())


def feed(
    camera: CameraAnonymiser, observations: Iterable[TrackObservation], finish: bool = True
) -> list[WindowReport]:
    """Process `observations` in order; `finish`: then close the camera as if it fell silent."""
    reports: list[WindowReport] = []
    for observation in observations:
        reports.extend(camera.process(observation, received_at=1.0).reports)
    if finish:
        reports.extend(camera.close_idle())
    return reports


def crossing_counts(reports: Iterable[WindowReport]) -> Counter[tuple[str, CrossingDirection]]:
    """Crossings by line and direction, all classes together, zeros left out."""
    return +Counter({(line, direction): n for (line, direction, _), n in crossings_total(reports).items()})


def to_track_frame(observation: TrackObservation) -> TrackFrame:
    """The TRACKS message inference would publish for `observation`."""
    message = TrackFrame(
        camera_id=observation.camera_id,
        run_id=observation.run_id,
        sequence=observation.sequence,
        model=observation.model,
        ended_track_ids=observation.ended,
        objects=[
            TrackedObject(
                track_id=o.track_id,
                object_class=ObjectClass.ValueType(o.object_class),
                score=0.9,
                box=Box(x1=o.box[0], y1=o.box[1], x2=o.box[2], y2=o.box[3]),
            )
            for o in observation.objects
        ],
    )
    message.captured_at.FromNanoseconds(round(observation.captured_at * 1e9))
    return message


@dataclass
class FrameBuilder:
    """Successive TrackFrames of one camera run, `1 / fps` seconds apart."""

    camera_id: str = "cam"
    run_id: str = "run-1"
    start: float = T0
    fps: float = 5.0
    model: str = "synthetic/1"
    sequence: int = 0

    @property
    def time(self) -> float:
        return self.start + self.sequence / self.fps

    def frame(
        self,
        objects: Iterable[tuple[int, Point]] | dict[int, Point] = (),
        ended: Iterable[int] = (),
        object_class: int = OBJECT_CLASS_PERSON,
        size: tuple[float, float] = (0.04, 0.12),
    ) -> TrackObservation:
        items = objects.items() if isinstance(objects, dict) else objects
        observed = tuple(
            ObservedObject(track_id(number), object_class, box_for(anchor, *size)) for number, anchor in items
        )
        observation = TrackObservation(
            camera_id=self.camera_id,
            run_id=self.run_id,
            sequence=self.sequence,
            captured_at=self.time,
            objects=observed,
            ended=tuple(track_id(n) for n in ended),
            model=self.model,
            fingerprint=hash((self.run_id, self.sequence, observed, tuple(ended))),
        )
        self.sequence += 1
        return observation


@dataclass(frozen=True)
class SceneSpec:
    duration_s: float = 120.0
    fps: float = 5.0
    walkers: int = 40  # cross the picture in a straight line
    lingerers: int = 6  # stand on a line for a while, then walk on or back
    jitter: float = 0.04  # standard deviation of the anchor's noise, in box heights
    miss_rate: float = 0.08  # a frame where the detector misses the object
    occlusions_per_track: float = 0.3  # occlusion gaps of 0.4 to 4 s
    leg_occlusion_rate: float = 0.03  # a frame where the legs are hidden: the box's bottom moves up
    tracker_buffer_s: float = 2.0  # a gap longer than this ends the id; the object returns with a new one
    # When two visible objects come within half a box height of each other, the chance that the tracker
    # swaps their ids there (an identity switch: each id goes on with the other object).
    swap_rate: float = 0.0
    pacers: int = 0  # walk back and forth across a line 2 to 5 times, turning 0.3 to 2 box heights beyond
    strollers: int = 0  # walk along a line, 0.2 to 0.6 box heights beside it, never crossing it
    clean: bool = False  # report the true paths as they are: no noise, miss, gap nor new id

    def __post_init__(self) -> None:
        if self.clean:
            object.__setattr__(self, "jitter", 0.0)


@dataclass
class SyntheticScene:
    observations: list[TrackObservation]
    truth: Counter[tuple[str, CrossingDirection]] = field(default_factory=Counter)
    # The crossings left once every excursion across a line that stays within the dead band is taken out
    # (with the crossing back): what the anonymiser must count exactly on clean tracks.
    truth_beyond_band: Counter[tuple[str, CrossingDirection]] = field(default_factory=Counter)


def _true_crossings(
    lines: Sequence[CountingLine],
    path: Sequence[Point],
    truth: Counter[tuple[str, CrossingDirection]],
    band: Callable[[CountingLine, int], float] | None = None,
) -> None:
    """Add the crossings of `path` to `truth`: every step from one side of a line to the other between its
    ends. With `band` (the dead band's half-width around a line at the path's n-th point), points within
    the band decide nothing, so an excursion that stays in it is no crossing, nor the step back; only the
    first point may lie in it (a path starting by a line is on the side it starts on)."""
    for line in lines:
        last: int | None = None  # the last point beyond the band (or the first point): where the path stands
        for index, point in enumerate(path):
            distance = line.signed_distance(point)
            if distance == 0.0 or (
                band is not None and last is not None and abs(distance) <= band(line, index)
            ):
                continue
            if last is not None and (line.signed_distance(path[last]) < 0) != (distance < 0):
                # Through the line between its ends on one of the steps since.
                steps = itertools.pairwise(path[last : index + 1])
                if any(
                    line.crosses_segment(a, b, line.signed_distance(a), line.signed_distance(b))
                    for a, b in steps
                ):
                    direction = (
                        CrossingDirection.LEFT_TO_RIGHT if distance > 0 else CrossingDirection.RIGHT_TO_LEFT
                    )
                    truth[(line.id, direction)] += 1
            last = index


def synthetic_scene(
    rng: random.Random,
    lines: Sequence[CountingLine],
    spec: SceneSpec,
    params: CountingParams | None = None,
) -> SyntheticScene:
    """A random scene over `lines`; each object's true path is piecewise straight, its truth exact.
    `params`: the dead band of `SyntheticScene.truth_beyond_band` (the defaults if not given)."""
    frames = round(spec.duration_s * spec.fps)
    # Per frame: object number -> (true anchor, box height); the true paths give the truth.
    positions: list[dict[int, tuple[Point, float]]] = [{} for _ in range(frames)]
    truth: Counter[tuple[str, CrossingDirection]] = Counter()
    truth_beyond_band: Counter[tuple[str, CrossingDirection]] = Counter()
    counting = params or CountingParams()
    number = 0

    def place(path: list[Point], first: int, height: float) -> None:
        nonlocal number
        number += 1
        for offset, point in enumerate(path):
            if 0 <= first + offset < frames:
                positions[first + offset][number] = (point, height)
        seen = path[max(0, -first) : max(0, frames - first)]
        _true_crossings(lines, seen, truth)
        _true_crossings(
            lines,
            seen,
            truth_beyond_band,
            lambda line, _: line.band(height * _WIDTH, height, counting.hysteresis, counting.min_band),
        )

    for _ in range(spec.walkers):
        # From one edge to the opposite one, at walking pace (about 0.1 to 0.25 picture widths a second).
        y0, y1 = rng.uniform(0.3, 0.95), rng.uniform(0.3, 0.95)
        a, b = ((0.02, y0), (0.98, y1)) if rng.random() < 0.5 else ((0.98, y0), (0.02, y1))
        if rng.random() < 0.5:  # or top to bottom
            a, b = (a[1] - 0.25, a[0] * 0.6 + 0.35), (b[1] - 0.25, b[0] * 0.6 + 0.35)
        speed = rng.uniform(0.1, 0.25)
        steps = max(2, round(math.dist(a, b) / speed * spec.fps))
        path = [
            (a[0] + (b[0] - a[0]) * i / steps, a[1] + (b[1] - a[1]) * i / steps) for i in range(steps + 1)
        ]
        height = 0.08 + 0.2 * (path[0][1] + path[-1][1]) / 2 * 0.5
        place(path, rng.randrange(-steps // 2, frames), height)

    for _ in range(spec.lingerers):
        # Walk to a point on a line, stand there, then go on across or turn back.
        line = rng.choice(list(lines))
        t = rng.uniform(0.2, 0.8)
        on_line = (
            line.start[0] + (line.end[0] - line.start[0]) * t,
            line.start[1] + (line.end[1] - line.start[1]) * t,
        )
        normal = _unit_normal(line)
        side = rng.choice((-1.0, 1.0))
        approach = [
            (
                on_line[0] + side * normal[0] * 0.2 * (1 - i / 10),
                on_line[1] + side * normal[1] * 0.2 * (1 - i / 10),
            )
            for i in range(10)
        ]
        # Standing on the line, a hair on the side they came from: the noise makes them wobble across it.
        standing = (on_line[0] + side * normal[0] * 0.003, on_line[1] + side * normal[1] * 0.003)
        stand = [standing] * round(rng.uniform(5, 40) * spec.fps)
        onwards = -side if rng.random() < 0.5 else side
        leave = [
            (on_line[0] + onwards * normal[0] * 0.2 * i / 10, on_line[1] + onwards * normal[1] * 0.2 * i / 10)
            for i in range(1, 11)
        ]
        path = approach + stand + leave
        place(path, rng.randrange(0, max(1, frames - len(path))), 0.15)

    for _ in range(spec.pacers):
        # Back and forth across a line: every pass is a crossing, U-turns a little beyond it included.
        line = rng.choice(list(lines))
        on_line = _point_on(line, rng.uniform(0.25, 0.75))
        normal = _unit_normal(line)
        height = rng.uniform(0.1, 0.2)
        side = rng.choice((-1.0, 1.0))
        speed = rng.uniform(0.08, 0.2) * spec.fps**-1  # normalised units per frame
        turns = [side * rng.uniform(0.5, 1.5) * height]
        for _ in range(rng.randint(2, 5)):
            turns.append(-math.copysign(rng.uniform(0.3, 2.0) * height, turns[-1]))
        path = []
        for here, there in itertools.pairwise(turns):
            steps = max(1, round(abs(there - here) / speed))
            path.extend(
                (
                    on_line[0] + normal[0] * (here + (there - here) * i / steps),
                    on_line[1] + normal[1] * (here + (there - here) * i / steps),
                )
                for i in range(steps)
            )
        path.append((on_line[0] + normal[0] * turns[-1], on_line[1] + normal[1] * turns[-1]))
        place(path, rng.randrange(0, max(1, frames - len(path))), height)

    for _ in range(spec.strollers):
        # Along a line, beside it: jitter brings the box near the line, never across in truth.
        line = rng.choice(list(lines))
        normal = _unit_normal(line)
        height = rng.uniform(0.1, 0.2)
        offset = rng.choice((-1.0, 1.0)) * rng.uniform(0.2, 0.6) * height
        a, b = _point_on(line, 0.05), _point_on(line, 0.95)
        if rng.random() < 0.5:
            a, b = b, a
        steps = max(2, round(math.dist(a, b) / rng.uniform(0.08, 0.2) * spec.fps))
        path = [
            (
                a[0] + (b[0] - a[0]) * i / steps + normal[0] * offset,
                a[1] + (b[1] - a[1]) * i / steps + normal[1] * offset,
            )
            for i in range(steps + 1)
        ]
        place(path, rng.randrange(-steps // 2, frames), height)

    return SyntheticScene(_degrade(rng, positions, spec), truth, truth_beyond_band)


def _point_on(line: CountingLine, t: float) -> Point:
    return (
        line.start[0] + (line.end[0] - line.start[0]) * t,
        line.start[1] + (line.end[1] - line.start[1]) * t,
    )


def _unit_normal(line: CountingLine) -> Point:
    dx, dy = line.end[0] - line.start[0], line.end[1] - line.start[1]
    length = math.hypot(dx, dy)
    return (-dy / length, dx / length)


def _degrade(
    rng: random.Random, positions: list[dict[int, tuple[Point, float]]], spec: SceneSpec
) -> list[TrackObservation]:
    """What a tracker reports from the true positions: noise, misses, gaps, hidden legs and new ids."""
    builder = FrameBuilder(run_id="synthetic", fps=spec.fps)
    occluded: dict[int, tuple[int, int]] = {}  # object number -> frames [from, to) it is hidden
    last_seen: dict[int, int] = {}  # object number -> frame its current track was last reported
    ids: dict[int, int] = {}  # object number -> its current track id number
    next_id = 1_000_000
    observations = []
    gap_frames = spec.tracker_buffer_s * spec.fps
    for index, present in enumerate(positions):
        ended: list[int] = []
        for number, seen in list(last_seen.items()):
            if index - seen > gap_frames:  # the tracker gives up; the object may come back with a new id
                ended.append(ids.pop(number))
                del last_seen[number]
        objects: list[tuple[int, Point]] = []
        sizes: dict[int, tuple[float, float]] = {}  # track id number -> box width and height
        if spec.swap_rate > 0.0 and not spec.clean:
            _swap_ids(rng, present, ids, spec.swap_rate)
        for number, ((x, y), height) in present.items():
            if number not in occluded:
                if rng.random() < spec.occlusions_per_track:
                    start = index + rng.randrange(1, 40)
                    occluded[number] = (start, start + round(rng.uniform(0.4, 4.0) * spec.fps))
                else:
                    occluded[number] = (-1, -1)
            hidden_from, hidden_to = occluded[number]
            if not spec.clean and (hidden_from <= index < hidden_to or rng.random() < spec.miss_rate):
                continue
            if number not in ids:
                ids[number] = next_id
                next_id += 1
            last_seen[number] = index
            jitter = spec.jitter * height
            ax, ay = x + rng.gauss(0, jitter * 0.5), y + rng.gauss(0, jitter)
            box_height = height
            if not spec.clean and rng.random() < spec.leg_occlusion_rate:
                # The legs hidden: the detector's box stops above them, its top where it was.
                hidden = height * rng.uniform(0.2, 0.4)
                ay, box_height = ay - hidden, height - hidden
            objects.append((ids[number], (min(max(ax, 0.0), 1.0), min(max(ay, 0.0), 1.0))))
            sizes[ids[number]] = (height * _WIDTH, box_height)
        observations.append(_frame(builder, objects, sizes, ended))
    return observations


def _swap_ids(
    rng: random.Random, present: dict[int, tuple[Point, float]], ids: dict[int, int], rate: float
) -> None:
    """Swap the ids of tracked objects that come close, each pair with probability `rate`."""
    tracked = sorted(number for number in present if number in ids)
    for a, b in itertools.combinations(tracked, 2):
        (pa, ha), (pb, hb) = present[a], present[b]
        if math.dist(pa, pb) < 0.5 * min(ha, hb) and rng.random() < rate:
            ids[a], ids[b] = ids[b], ids[a]


def _frame(
    builder: FrameBuilder,
    objects: list[tuple[int, Point]],
    sizes: dict[int, tuple[float, float]],
    ended: list[int],
) -> TrackObservation:
    observed = tuple(
        ObservedObject(track_id(n), OBJECT_CLASS_PERSON, _clip(box_for(anchor, *sizes[n])))
        for n, anchor in objects
    )
    observation = TrackObservation(
        camera_id=builder.camera_id,
        run_id=builder.run_id,
        sequence=builder.sequence,
        captured_at=builder.time,
        objects=observed,
        ended=tuple(track_id(n) for n in dict.fromkeys(ended)),
        model=builder.model,
        fingerprint=builder.sequence,
    )
    builder.sequence += 1
    return observation


def _clip(box: BoxTuple) -> BoxTuple:
    x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in box)
    return (x1, y1, x2, y2)
