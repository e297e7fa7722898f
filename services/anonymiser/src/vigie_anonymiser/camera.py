"""From one camera's TrackFrames to anonymous window reports.

What is kept, per camera: for each live track its class, **last** anchor position and box size, last
capture time and a few integers per line and zone (see `LineTrackState`, `ZoneTrackState`); no earlier
position, so no trajectory. An ended track's id is dropped at once. Its last state is kept without the id
for `handover_s` (a few seconds) so that a new track appearing at the same place continues it: the
tracker's "ended, then a new id" on a person standing still or briefly hidden is then neither counted
twice nor missed. A track unseen for `track_ttl_s` is forgotten. The open window's tally holds counts by
line, zone and class only.

Ordering and duplicates: messages of a camera come in order of (run, sequence). A message with a sequence
already passed, or a byte-identical copy of one with the current sequence, is a redelivery and is
dropped; a message of a run that already ended is stale and dropped. Inference may send two different
messages with the same sequence (the end of a run, then a frame): both count, told apart by rank.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from vigie_anonymiser.checkpoint import CameraState, TallyState, TrackState
from vigie_anonymiser.config import CameraGeometry, CountingParams
from vigie_anonymiser.crossing import LineTrackState, step_line
from vigie_anonymiser.geometry import Anchor, CrossingDirection, Point, anchor_point
from vigie_anonymiser.observations import ObservedObject, TrackObservation
from vigie_anonymiser.pauses import PausedTime
from vigie_anonymiser.windows import ReportClosure, WindowReport, WindowTally, report_id, window_start
from vigie_anonymiser.zones import ZoneTrackState, finish_zone, step_zone
from vigie_proto.v1.policy_pb2 import CameraPolicy

__all__ = ["Anonymiser", "CameraAnonymiser", "Dropped", "FrameOutcome"]

_REMEMBERED_RUNS = 8
# How many messages in a row a new run of a camera must bring, without its current run bringing any in
# between, before it replaces that run: a stray, replayed or forged message of another run costs itself,
# never the camera's counting (ingest's new run after a reconnection is confirmed within a second).
NEW_RUN_AFTER = 3


class Dropped(StrEnum):
    DUPLICATE = "duplicate"
    STALE_RUN = "stale_run"
    NO_GEOMETRY = "no_geometry"
    # Messages of a run that never took over from the camera's current one (see NEW_RUN_AFTER).
    UNCONFIRMED_RUN = "unconfirmed_run"


@dataclass(frozen=True, slots=True)
class FrameOutcome:
    """Reports closed by a frame (usually none), or why the frame was not counted; ``frames``: how many
    frames this call counted (0 for a message held until its run is confirmed, more when that confirms
    it); ``abandoned``: held messages of a run that did not take over, not counted."""

    reports: tuple[WindowReport, ...] = ()
    dropped: Dropped | None = None
    frames: int = 1
    abandoned: int = 0


@dataclass(slots=True)
class _TrackState:
    object_class: int
    point: Point
    width: float
    height: float
    last_seen: float
    lines: list[LineTrackState | None]
    zones: list[ZoneTrackState | None]
    # Smoothed anchor velocity (normalised units per second): where to look for it after a gap.
    velocity: Point = (0.0, 0.0)


@dataclass(slots=True)
class _Cursor:
    """Where a camera's message stream is: enough to recognise redeliveries. Holds no personal data."""

    run_id: str = ""
    sequence: int = -1
    fingerprints: list[int] = field(default_factory=list)  # of the messages with this sequence
    ended_runs: deque[str] = field(default_factory=lambda: deque(maxlen=_REMEMBERED_RUNS))

    def admit(self, observation: TrackObservation) -> tuple[Dropped | None, bool]:
        """Whether to count the message, and whether it starts a new run."""
        if observation.run_id != self.run_id:
            if observation.run_id in self.ended_runs:
                return Dropped.STALE_RUN, False
            new_run = bool(self.run_id)
            if new_run:
                self.ended_runs.append(self.run_id)
            self.run_id, self.sequence = observation.run_id, observation.sequence
            self.fingerprints = [observation.fingerprint]
            return None, new_run
        if observation.sequence < self.sequence:
            return Dropped.DUPLICATE, False
        if observation.sequence == self.sequence:
            if observation.fingerprint in self.fingerprints:
                return Dropped.DUPLICATE, False
            self.fingerprints.append(observation.fingerprint)
            return None, False
        self.sequence, self.fingerprints = observation.sequence, [observation.fingerprint]
        return None, False

    @property
    def rank(self) -> int:
        return len(self.fingerprints) - 1


class CameraAnonymiser:
    """All the state of one camera. Not thread-safe; feed it the camera's messages in stream order."""

    def __init__(self, geometry: CameraGeometry, params: CountingParams) -> None:
        self._geometry = geometry
        self._params = params
        self._cursor = _Cursor()
        self._tracks: dict[bytes, _TrackState] = {}
        self._handovers: list[_TrackState] = []  # ended tracks' last state, without their ids
        self._tally: WindowTally | None = None
        self._last_time: float | None = None
        self._previous_time: float | None = None  # of the frame before the current one
        self._occupancy: dict[tuple[str, int], int] = {}
        self.last_received = 0.0
        # Capture time the policy forbade analysing: never covered, whatever frames come around it.
        self.paused = PausedTime()
        # Messages of another run than the current one, held until it is confirmed (NEW_RUN_AFTER).
        self._held: list[tuple[TrackObservation, float]] = []
        # The run and sequence of the last counted frame: a frame missing between two (lost to a broker
        # restart, a detector failure, an expired message) leaves their gap uncovered, however short.
        self._last_position: tuple[str, int] | None = None

    @property
    def geometry(self) -> CameraGeometry:
        return self._geometry

    @property
    def live_tracks(self) -> int:
        return len(self._tracks)

    @property
    def counting(self) -> bool:
        """Whether the camera is between two counted frames (their gap would be covered)."""
        return self._last_time is not None or bool(self._handovers)

    def process(self, observation: TrackObservation, received_at: float = 0.0) -> FrameOutcome:
        """Count a message of the camera; one of another run than the current one is held until that run
        has brought NEW_RUN_AFTER messages in a row (then they are counted in order and the old run ends),
        and discarded if the current run speaks first."""
        cursor = self._cursor
        other_run = bool(cursor.run_id) and observation.run_id != cursor.run_id
        if not other_run or observation.run_id in cursor.ended_runs:
            abandoned = len(self._held)
            self._held = []
            counted = self._count(observation, received_at)
            return replace(counted, abandoned=abandoned) if abandoned else counted
        abandoned = 0
        if self._held and self._held[0][0].run_id != observation.run_id:
            abandoned, self._held = len(self._held), []
        self._held.append((observation, received_at))
        if len(self._held) < NEW_RUN_AFTER:
            return FrameOutcome(frames=0, abandoned=abandoned)
        return replace(self._count_held(), abandoned=abandoned)

    def _count_held(self) -> FrameOutcome:
        """The held messages, counted in order: their run takes over."""
        held, self._held = self._held, []
        reports: list[WindowReport] = []
        frames = 0
        for observation, received_at in held:
            outcome = self._count(observation, received_at)
            reports += outcome.reports
            frames += outcome.frames
        return FrameOutcome(reports=tuple(reports), frames=frames)

    def _count(self, observation: TrackObservation, received_at: float) -> FrameOutcome:
        dropped, new_run = self._cursor.admit(observation)
        if dropped is not None:
            return FrameOutcome(dropped=dropped, frames=0)
        self.last_received = received_at
        now = observation.captured_at
        if new_run:
            # The old run's ids will never come back; its tracks end here (inference normally says so).
            self._end_tracks(list(self._tracks))
        reports = self._advance_time(observation, now)
        tally = self._tally
        assert tally is not None
        tally.frames += 1
        if observation.model:
            tally.models.add(observation.model)
        self._end_tracks(observation.ended)
        self._observe(observation, now)
        self._expire(now)
        self._occupancy = self._measure_occupancy(now)
        tally.sample(self._occupancy)
        return FrameOutcome(reports=tuple(reports))

    def close_idle(self) -> list[WindowReport]:
        """The camera fell silent: its tracks are over. Count what they were completing, report, forget.
        Messages of a new run held meanwhile are counted first: the current run is silent."""
        early = list(self._count_held().reports) if self._held else []
        for state in [*self._tracks.values(), *self._handovers]:
            self._finish(state)
        self._tracks.clear()
        self._handovers.clear()
        self._last_time = None
        self._last_position = None
        self._occupancy = {}
        return [*early, *self._close(ReportClosure.CAMERA_IDLE)]

    def suspend(self) -> None:
        """The camera may not be analysed now (a pause, a policy change): its tracks are over and the time
        until its next counted frame is not covered. The window stays open: analysis may resume in it."""
        for state in [*self._tracks.values(), *self._handovers]:
            self._finish(state)
        self._tracks.clear()
        self._handovers.clear()
        self._last_time = None
        self._last_position = None
        self._previous_time = None
        self._occupancy = {}

    def stop(self, closed_by: ReportClosure = ReportClosure.SERVICE_STOPPING) -> list[WindowReport]:
        """Report what was counted so far. Live tracks are not finished: the camera goes on, and another
        instance will see them (counting them here too could count them twice); ended ones are. Messages
        held for a new run are counted first (they were acknowledged)."""
        early = list(self._count_held().reports) if self._held else []
        for state in self._handovers:
            self._finish(state)
        self._handovers.clear()
        return [*early, *self._close(closed_by)]

    def replace_geometry(self, geometry: CameraGeometry) -> list[WindowReport]:
        """Report with the old lines and zones, then count with the new ones from the next frame on.
        Tracks keep their position but must establish their side of the new lines again."""
        reports = self._close(ReportClosure.GEOMETRY_CHANGED)
        self._geometry = geometry
        self._handovers.clear()
        self._occupancy = {}
        for state in self._tracks.values():
            state.lines, state.zones = self._fresh_states(state.object_class)
        return reports

    # -- checkpoints --------------------------------------------------------------------------------

    def snapshot(self, reports: Iterable[WindowReport] = ()) -> CameraState:
        """The camera's whole state, with `reports` (its closed parts EVENTS has not accepted yet), for
        `restore` in another process. Copies: the camera may go on counting while it is written."""
        cursor = self._cursor
        return CameraState(
            camera_id=self._geometry.camera_id,
            geometry_version=self._geometry.version,
            run_id=cursor.run_id,
            sequence=cursor.sequence,
            fingerprints=tuple(cursor.fingerprints),
            ended_runs=tuple(cursor.ended_runs),
            tracks=tuple(_track_state(track_id, state) for track_id, state in self._tracks.items()),
            handovers=tuple(_track_state(b"", state) for state in self._handovers),
            tally=None if self._tally is None else _tally_state(self._tally),
            last_time=self._last_time,
            previous_time=self._previous_time,
            last_position=self._last_position,
            occupancy=tuple((zone, cls, n) for (zone, cls), n in self._occupancy.items()),
            paused=self.paused.intervals,
            policy_version=self.paused.policy_version,
            held=tuple(observation for observation, _ in self._held),
            reports=tuple(reports),
        )

    def restore(self, state: CameraState, received_at: float) -> list[WindowReport]:
        """Take up the state another instance saved of this camera (`snapshot`); return its reports still
        to publish. If the camera's geometry changed meanwhile, the saved part is closed as by a geometry
        change (returned too) and the tracks establish their sides of the new lines again."""
        if state.camera_id != self._geometry.camera_id:
            raise ValueError(f"state of camera {state.camera_id!r} given to {self._geometry.camera_id!r}")
        cursor = self._cursor
        cursor.run_id, cursor.sequence = state.run_id, state.sequence
        cursor.fingerprints = list(state.fingerprints)
        cursor.ended_runs.clear()
        cursor.ended_runs.extend(state.ended_runs)
        self._tracks = {t.track_id: _live_track(t) for t in state.tracks}
        self._handovers = [_live_track(t) for t in state.handovers]
        self._tally = None if state.tally is None else _live_tally(state.tally)
        self._last_time, self._previous_time = state.last_time, state.previous_time
        self._last_position = state.last_position
        self._occupancy = {(zone, cls): n for zone, cls, n in state.occupancy}
        self.paused = PausedTime.restored(state.paused, state.policy_version)
        self._held = [(observation, received_at) for observation in state.held]
        self.last_received = received_at
        reports = list(state.reports)
        if state.geometry_version != self._geometry.version:
            reports += self._close(ReportClosure.GEOMETRY_CHANGED)
            self._handovers.clear()
            self._occupancy = {}
            for track in self._tracks.values():
                track.lines, track.zones = self._fresh_states(track.object_class)
        return reports

    # -- time and windows ---------------------------------------------------------------------------

    def _advance_time(self, observation: TrackObservation, now: float) -> list[WindowReport]:
        """Cover the time since the previous frame and open the tally of this frame's window."""
        reports: list[WindowReport] = []
        previous, self._last_time = self._last_time, now
        self._previous_time = previous
        position, self._last_position = self._last_position, (observation.run_id, observation.sequence)
        # The frame right after the previous one of its run: nothing was lost in between.
        next_frame = (
            position is not None
            and position[0] == observation.run_id
            and observation.sequence - position[1] <= 1
        )
        gap = None if previous is None else now - previous
        covered = next_frame and gap is not None and 0.0 < gap <= self._params.coverage_max_gap_s
        start = window_start(now, self._geometry.window_s)
        tally = self._tally
        if tally is not None and tally.window_start != start:
            if covered and previous is not None and previous < tally.window_end <= now:
                self._cover(tally, previous, float(tally.window_end))
                previous = float(tally.window_end)
            else:
                covered = False
            reports.extend(self._close(ReportClosure.WINDOW_ENDED))
            self.paused.forget_before(start)
        if self._tally is None:
            self._tally = self._open(start, observation)
        if covered and previous is not None:
            self._cover(self._tally, previous, now)
        return reports

    def _cover(self, tally: WindowTally, start: float, end: float) -> None:
        """[start, end) was analysed, except what the policy paused."""
        seconds = end - start - self.paused.overlap(start, end)
        if seconds > 0:
            tally.cover(seconds, self._occupancy)

    def _open(self, start: int, observation: TrackObservation) -> WindowTally:
        geometry = self._geometry
        # The classes are the geometry's (its lines' and zones'), so they cannot change within a part:
        # a change of classes is a change of geometry version, which closes the part (GEOMETRY_CHANGED).
        # The same holds for a line's directions.
        classes = geometry.object_classes
        return WindowTally(
            camera_id=geometry.camera_id,
            window_start=start,
            window_s=geometry.window_s,
            report_id=report_id(
                geometry.camera_id, start, observation.run_id, observation.sequence, self._cursor.rank
            ),
            geometry_version=geometry.version,
            line_ids=tuple(line.id for line in geometry.lines),
            zone_ids=tuple(zone.id for zone in geometry.zones),
            dwell_limits=tuple(geometry.dwell.limits(i) for i in range(len(geometry.dwell.bounds) + 1)),
            object_classes=tuple(sorted(classes)),
            member_classes=tuple(
                (member, tuple(sorted(counted)))
                for member, counted in geometry.member_classes().items()
                if counted != classes
            ),
            one_way_lines=geometry.one_way_lines,
            dwell_bounds=geometry.dwell_bounds,
        )

    def _close(self, closed_by: ReportClosure) -> list[WindowReport]:
        tally, self._tally = self._tally, None
        return [] if tally is None else [tally.close(closed_by)]

    # -- tracks -------------------------------------------------------------------------------------

    def _observe(self, observation: TrackObservation, now: float) -> None:
        anchor = self._geometry.anchor
        visible = {o.track_id for o in observation.objects}
        self._follow_swapped_ids(observation.objects, now)
        for obj in observation.objects:
            x1, y1, x2, y2 = obj.box
            width, height = x2 - x1, y2 - y1
            state = self._tracks.get(obj.track_id)
            if state is not None and anchor is Anchor.BOTTOM_CENTRE and _legs_hidden(state, y1, height):
                # The feet are where the track's usual height puts them, below the box's bottom.
                y2 = y1 + state.height
                height = state.height
            point = anchor_point((x1, y1, x2, y2), anchor)
            if state is None:
                state = self._take_over(obj.object_class, point, width, height, now, visible)
                if state is None:
                    lines, zones = self._fresh_states(obj.object_class)
                    state = _TrackState(obj.object_class, point, width, height, now, lines, zones)
                    self._tracks[obj.track_id] = state
                    first = None if obj.first_box is None else anchor_point(obj.first_box, anchor)
                    if first is not None:
                        # Where the tracker first saw it, while confirming it: it stands on that side of
                        # each line, and a step from there over a line is a crossing. Zones start here.
                        for line, line_state in zip(self._geometry.lines, state.lines, strict=True):
                            if line_state is not None:
                                step_line(line_state, line, None, first, 0.0)
                    self._update(state, first, point, width, height, now)
                    continue
                self._tracks[obj.track_id] = state
            self._update(state, state.point, point, width, height, now)

    def _follow_swapped_ids(self, objects: Sequence[ObservedObject], now: float) -> None:
        """Give back each person their own line and zone state when the tracker swapped two ids.

        Two people close to each other may leave the tracker with each other's id. Each id's step is then
        a jump to where the other person is expected, and each would count a crossing of any line between
        them. When the swapped pairing explains the two new positions much better than the ids' own
        (against where each was heading, at its smoothed speed), the two states are exchanged so that
        each follows its person; a person turning back is one track and never concerned."""
        anchor = self._geometry.anchor
        # Only tracks that jumped can have been swapped: the pairs are looked at among those, few.
        known = []
        for obj in objects:
            state = self._tracks.get(obj.track_id)
            if state is None or now <= state.last_seen:
                continue
            point = anchor_point(obj.box, anchor)
            if math.dist(point, _expected(state, now)) > 0.5 * SWAP_MIN_JUMP * state.height:
                known.append((obj.track_id, state, point))
        swapped: set[bytes] = set()
        for (id_a, a, point_a), (id_b, b, point_b) in itertools.combinations(known, 2):
            if a.object_class != b.object_class or id_a in swapped or id_b in swapped:
                continue
            expected_a, expected_b = _expected(a, now), _expected(b, now)
            own = math.dist(point_a, expected_a) + math.dist(point_b, expected_b)
            exchanged = math.dist(point_a, expected_b) + math.dist(point_b, expected_a)
            if own > SWAP_MIN_JUMP * min(a.height, b.height) and exchanged < SWAP_RATIO * own:
                self._tracks[id_a], self._tracks[id_b] = b, a
                swapped.update((id_a, id_b))

    def _fresh_states(
        self, object_class: int
    ) -> tuple[list[LineTrackState | None], list[ZoneTrackState | None]]:
        geometry = self._geometry
        return (
            [LineTrackState() if line.counts(object_class) else None for line in geometry.lines],
            [ZoneTrackState() if zone.counts(object_class) else None for zone in geometry.zones],
        )

    def _take_over(
        self, object_class: int, point: Point, width: float, height: float, now: float, visible: set[bytes]
    ) -> _TrackState | None:
        """The state of an ended (or lost, unseen in this frame) track of the same class, last seen close
        to `point` within `handover_s`: the tracker most likely gave the same object a new id."""
        params = self._params
        if params.handover_s <= 0.0 or params.handover_radius <= 0.0:
            return None
        best: tuple[float, int, bytes | None] | None = None
        # A live track qualifies only if missed in the previous frame too: a new id is confirmed over two
        # frames at least, and the tracker would have kept the old id had it matched either detection.
        missed_since = self._previous_time if self._previous_time is not None else now
        candidates: Iterable[tuple[int, bytes | None, _TrackState]] = [
            *((i, None, s) for i, s in enumerate(self._handovers)),
            *(
                (-1, track_id, s)
                for track_id, s in self._tracks.items()
                if track_id not in visible and s.last_seen < missed_since
            ),
        ]
        for index, track_id, candidate in candidates:
            gap = now - candidate.last_seen
            if candidate.object_class != object_class or not 0.0 <= gap <= params.handover_s:
                continue
            # Close to where it would be had it gone on at its (smoothed) speed: where it was last seen if
            # it had stopped.
            expected_x, expected_y = _expected(candidate, now)
            scale_x = max(candidate.width, width, 1e-6)
            scale_y = max(candidate.height, height, 1e-6)
            distance = ((point[0] - expected_x) / scale_x) ** 2 + ((point[1] - expected_y) / scale_y) ** 2
            if distance <= params.handover_radius**2 and (best is None or distance < best[0]):
                best = (distance, index, track_id)
        if best is None:
            return None
        _, index, track_id = best
        if track_id is not None:
            return self._tracks.pop(track_id)
        return self._handovers.pop(index)

    def _update(
        self,
        state: _TrackState,
        previous: Point | None,
        point: Point,
        width: float,
        height: float,
        now: float,
    ) -> None:
        tally = self._tally
        assert tally is not None
        params = self._params
        geometry = self._geometry
        object_class = state.object_class
        for line, line_state in zip(geometry.lines, state.lines, strict=True):
            if line_state is None:
                continue
            band = line.band(width, height, params.hysteresis, params.min_band)
            direction = step_line(line_state, line, previous, point, band)
            if direction is not None:
                tally.crossings[(line.id, direction, object_class)] += 1
        for zone, zone_state in zip(geometry.zones, state.zones, strict=True):
            if zone_state is None:
                continue
            stayed = step_zone(zone_state, zone.contains(point), now, params.establish_frames)
            if stayed is not None and geometry.dwell_time:
                tally.dwell[(zone.id, object_class, geometry.dwell.index(stayed))] += 1
        if previous is not None and now > state.last_seen:
            elapsed = now - state.last_seen
            vx, vy = (point[0] - previous[0]) / elapsed, (point[1] - previous[1]) / elapsed
            if state.velocity == (0.0, 0.0):
                state.velocity = (vx, vy)
            else:
                state.velocity = (0.7 * state.velocity[0] + 0.3 * vx, 0.7 * state.velocity[1] + 0.3 * vy)
        state.point, state.width, state.height, state.last_seen = point, width, height, now

    def _end_tracks(self, track_ids: Iterable[bytes]) -> None:
        for track_id in track_ids:
            state = self._tracks.pop(track_id, None)
            if state is None:
                continue
            if self._params.handover_s > 0.0:
                self._handovers.append(state)
            else:
                self._finish(state)

    def _expire(self, now: float) -> None:
        params = self._params
        if self._handovers:
            kept = []
            for state in self._handovers:
                if (
                    not 0.0 <= now - state.last_seen <= params.handover_s
                ):  # too old, or the clock stepped back
                    self._finish(state)
                else:
                    kept.append(state)
            self._handovers = kept
        stale = [t for t, s in self._tracks.items() if now - s.last_seen > params.track_ttl_s]
        for track_id in stale:
            self._finish(self._tracks.pop(track_id))

    def _finish(self, state: _TrackState) -> None:
        """The track is over: count the stays it was in (its crossings were counted as they happened)."""
        tally = self._tally
        if tally is None:
            return
        geometry = self._geometry
        for zone, zone_state in zip(geometry.zones, state.zones, strict=True):
            if zone_state is not None:
                stayed = finish_zone(zone_state)
                if stayed is not None and geometry.dwell_time:
                    tally.dwell[(zone.id, state.object_class, geometry.dwell.index(stayed))] += 1

    def _measure_occupancy(self, now: float) -> dict[tuple[str, int], int]:
        if not self._geometry.zones:
            return {}
        occupancy: dict[tuple[str, int], int] = {}
        hold = self._params.occupancy_hold_s
        zones = self._geometry.zones
        for state in self._tracks.values():
            if now - state.last_seen > hold:
                continue
            for zone, zone_state in zip(zones, state.zones, strict=True):
                if zone_state is not None and zone_state.inside:
                    key = (zone.id, state.object_class)
                    occupancy[key] = occupancy.get(key, 0) + 1
        return occupancy


# Two ids swapped: their steps jump by more than this many box heights in all, and the swapped pairing is
# at most this share of that (see `CameraAnonymiser._follow_swapped_ids`).
SWAP_MIN_JUMP = 0.25
SWAP_RATIO = 0.5


def _expected(state: _TrackState, now: float) -> Point:
    """Where the track's anchor should be at `now`, going on at its smoothed speed."""
    elapsed = now - state.last_seen
    return (state.point[0] + state.velocity[0] * elapsed, state.point[1] + state.velocity[1] * elapsed)


# A box that lost at least this share of the track's height at once, its top staying within this share of it:
# the legs are hidden (a bench, a car, another person), not the person gone further away.
LEGS_HIDDEN_LOSS = 0.2
LEGS_HIDDEN_TOP_MOVE = 0.1


def _legs_hidden(state: _TrackState, top: float, height: float) -> bool:
    """Whether the box's bottom rose while its top stayed, against the track's last (bottom-anchored) box.

    A detector sees a person whose legs are hidden as a shorter box with the same top; its bottom, taken
    for the feet, jumps up by a third of a body. Without this, such a jump across a line and back is two
    crossings. Walking towards or away from the camera changes the height by a few percent a frame, and
    moves the top with it."""
    if height >= (1.0 - LEGS_HIDDEN_LOSS) * state.height:
        return False
    last_top = state.point[1] - state.height
    return abs(top - last_top) <= LEGS_HIDDEN_TOP_MOVE * state.height


def _track_state(track_id: bytes, state: _TrackState) -> TrackState:
    return TrackState(
        track_id=track_id,
        object_class=state.object_class,
        point=state.point,
        width=state.width,
        height=state.height,
        last_seen=state.last_seen,
        velocity=state.velocity,
        lines=tuple(None if line is None else replace(line) for line in state.lines),
        zones=tuple(None if zone is None else replace(zone) for zone in state.zones),
    )


def _live_track(track: TrackState) -> _TrackState:
    return _TrackState(
        object_class=track.object_class,
        point=track.point,
        width=track.width,
        height=track.height,
        last_seen=track.last_seen,
        lines=[None if line is None else replace(line) for line in track.lines],
        zones=[None if zone is None else replace(zone) for zone in track.zones],
        velocity=track.velocity,
    )


def _tally_state(tally: WindowTally) -> TallyState:
    return TallyState(
        camera_id=tally.camera_id,
        window_start=tally.window_start,
        window_s=tally.window_s,
        report_id=tally.report_id,
        geometry_version=tally.geometry_version,
        line_ids=tally.line_ids,
        zone_ids=tally.zone_ids,
        dwell_limits=tally.dwell_limits,
        object_classes=tally.object_classes,
        member_classes=tally.member_classes,
        one_way_lines=tally.one_way_lines,
        dwell_bounds=tally.dwell_bounds,
        frames=tally.frames,
        covered_s=tally.covered_s,
        crossings=tuple((*key, n) for key, n in tally.crossings.items()),
        object_seconds=tuple((*key, seconds) for key, seconds in tally.object_seconds.items()),
        max_objects=tuple((*key, n) for key, n in tally.max_objects.items()),
        dwell=tuple((*key, n) for key, n in tally.dwell.items()),
        models=tuple(sorted(tally.models)),
    )


def _live_tally(state: TallyState) -> WindowTally:
    return WindowTally(
        camera_id=state.camera_id,
        window_start=state.window_start,
        window_s=state.window_s,
        report_id=state.report_id,
        geometry_version=state.geometry_version,
        line_ids=state.line_ids,
        zone_ids=state.zone_ids,
        dwell_limits=state.dwell_limits,
        object_classes=state.object_classes,
        member_classes=state.member_classes,
        one_way_lines=state.one_way_lines,
        dwell_bounds=state.dwell_bounds,
        frames=state.frames,
        covered_s=state.covered_s,
        crossings=Counter({(line, direction, cls): n for line, direction, cls, n in state.crossings}),
        object_seconds={(zone, cls): seconds for zone, cls, seconds in state.object_seconds},
        max_objects={(zone, cls): n for zone, cls, n in state.max_objects},
        dwell=Counter({(zone, cls, bucket): n for zone, cls, bucket, n in state.dwell}),
        models=set(state.models),
    )


class Anonymiser:
    """The cameras of one replica, each with its own `CameraAnonymiser`."""

    def __init__(self, geometries: Iterable[CameraGeometry], params: CountingParams) -> None:
        self._params = params
        self._cameras = {g.camera_id: CameraAnonymiser(g, params) for g in geometries}

    @property
    def cameras(self) -> dict[str, CameraAnonymiser]:
        return dict(self._cameras)

    def process(self, observation: TrackObservation, received_at: float = 0.0) -> FrameOutcome:
        camera = self._cameras.get(observation.camera_id)
        if camera is None:
            return FrameOutcome(dropped=Dropped.NO_GEOMETRY)
        return camera.process(observation, received_at)

    def snapshot(self, camera_id: str, reports: Iterable[WindowReport] = ()) -> CameraState | None:
        """A camera's state for a checkpoint (None: no such camera here)."""
        camera = self._cameras.get(camera_id)
        return None if camera is None else camera.snapshot(reports)

    def restore(self, state: CameraState, received_at: float) -> list[WindowReport]:
        """Take up a camera's checkpointed state; return the reports still to publish. A camera no longer
        counted here has its saved part closed as removed."""
        camera = self._cameras.get(state.camera_id)
        if camera is not None:
            return camera.restore(state, received_at)
        reports = list(state.reports)
        if state.tally is not None:
            reports.append(_live_tally(state.tally).close(ReportClosure.CAMERA_REMOVED))
        return reports

    def follow_policy(self, camera_id: str, policy: CameraPolicy) -> None:
        """Learn from the camera's policy when its analysis was paused (never covered)."""
        camera = self._cameras.get(camera_id)
        if camera is not None:
            camera.paused.follow(policy)

    def suspend(self, camera_id: str) -> bool:
        """End the tracks of a camera that may not be analysed now; whether it had any state to end."""
        camera = self._cameras.get(camera_id)
        if camera is None or (camera.live_tracks == 0 and not camera.counting):
            return False
        camera.suspend()
        return True

    def set_geometry(self, camera_id: str, geometry: CameraGeometry | None) -> list[WindowReport]:
        """Apply a live change: new lines and zones for a camera, a new camera, or (None) its removal."""
        camera = self._cameras.get(camera_id)
        if geometry is None:
            if camera is None:
                return []
            del self._cameras[camera_id]
            return camera.stop(ReportClosure.CAMERA_REMOVED)
        if geometry.camera_id != camera_id:
            raise ValueError(f"geometry of camera {geometry.camera_id!r} given for camera {camera_id!r}")
        if camera is None:
            self._cameras[camera_id] = CameraAnonymiser(geometry, self._params)
            return []
        if camera.geometry == geometry:
            return []
        return camera.replace_geometry(geometry)

    def close_idle(self, now: float, idle_s: float) -> list[WindowReport]:
        """Close the cameras that received nothing since `now - idle_s` (same clock as `received_at`)."""
        reports: list[WindowReport] = []
        for camera in self._cameras.values():
            if camera.last_received and now - camera.last_received > idle_s:
                reports.extend(camera.close_idle())
                camera.last_received = 0.0
        return reports

    def stop(self) -> list[WindowReport]:
        return [report for camera in self._cameras.values() for report in camera.stop()]


def crossings_total(reports: Iterable[WindowReport]) -> dict[tuple[str, CrossingDirection, int], int]:
    """Crossing counts summed over reports, by (line, direction, class): for tests and benchmarks."""
    totals: dict[tuple[str, CrossingDirection, int], int] = {}
    for report in reports:
        for crossing in report.crossings:
            key = (crossing.line_id, crossing.direction, crossing.object_class)
            totals[key] = totals.get(key, 0) + crossing.count
    return totals
