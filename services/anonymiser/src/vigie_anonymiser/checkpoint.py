"""A camera's counting state, written down so that a restarted anonymiser goes on where it stopped.

Without it, a killed replica loses every camera's open window (counts already made, partly covered time)
and the sides of the lines its live tracks are on. With it, the replica saves each camera's state after
every batch of TRACKS messages it counted, and only then acknowledges them: after a crash, the new replica
restores the states, TRACKS redelivers what was not acknowledged, and the camera's cursor recognises what
the state already holds. Nothing is lost and nothing is counted twice.

`CameraState` is the whole of `vigie_anonymiser.camera.CameraAnonymiser`'s state, plus the window
reports of that camera EVENTS has not yet accepted. It holds what TRACKS holds (live track ids, their last
box, no earlier position) and the open window's counts; it is kept in memory only, in the anonymiser's
own stream (:class:`vigie_core.streams.CheckpointStream`), the latest per camera.

Pure: encoding and decoding only; `vigie_anonymiser.service` reads and writes the stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from pydantic import ConfigDict, TypeAdapter, ValidationError

from vigie_anonymiser.crossing import LineTrackState
from vigie_anonymiser.geometry import CrossingDirection
from vigie_anonymiser.observations import TrackObservation
from vigie_anonymiser.windows import WindowReport
from vigie_anonymiser.zones import ZoneTrackState

__all__ = [
    "CHECKPOINT_FORMAT",
    "CameraState",
    "CheckpointError",
    "TallyState",
    "TrackState",
    "decode_state",
    "encode_state",
    "removed_camera",
]

# Bumped when `CameraState` changes shape: a checkpoint of another format is not restored (said, not
# guessed), and the camera starts afresh as it did before checkpoints existed.
CHECKPOINT_FORMAT = 2  # 2: a line's state lost its pending side and counted directions


class CheckpointError(ValueError):
    """A checkpoint that cannot be restored: another format, or not a checkpoint at all."""


@dataclass(frozen=True, slots=True)
class TrackState:
    """One track as the camera remembers it: its last position only. ``track_id`` is empty for an ended
    track kept a few seconds for a hand-over."""

    track_id: bytes
    object_class: int
    point: tuple[float, float]
    width: float
    height: float
    last_seen: float
    velocity: tuple[float, float]
    lines: tuple[LineTrackState | None, ...]
    zones: tuple[ZoneTrackState | None, ...]


@dataclass(frozen=True, slots=True)
class TallyState:
    """The open part of a window (`vigie_anonymiser.windows.WindowTally`), its counters as tuples."""

    camera_id: str
    window_start: int
    window_s: int
    report_id: str
    geometry_version: str
    line_ids: tuple[str, ...]
    zone_ids: tuple[str, ...]
    dwell_limits: tuple[tuple[int, int | None], ...]
    object_classes: tuple[int, ...]
    member_classes: tuple[tuple[str, tuple[int, ...]], ...]
    one_way_lines: tuple[tuple[str, CrossingDirection], ...]
    dwell_bounds: tuple[int, ...]
    frames: int
    covered_s: float
    crossings: tuple[tuple[str, CrossingDirection, int, int], ...]  # line, direction, class, count
    object_seconds: tuple[tuple[str, int, float], ...]  # zone, class, object-seconds
    max_objects: tuple[tuple[str, int, int], ...]  # zone, class, most at once
    dwell: tuple[tuple[str, int, int, int], ...]  # zone, class, bucket, count
    models: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CameraState:
    # Track ids are bytes; paused time may run to infinity (a camera paused until further notice).
    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(
        ser_json_bytes="base64", val_json_bytes="base64", ser_json_inf_nan="constants"
    )

    camera_id: str
    geometry_version: str
    # The cursor: where the camera's message stream is (what a redelivery is).
    run_id: str
    sequence: int
    fingerprints: tuple[int, ...]
    ended_runs: tuple[str, ...]
    tracks: tuple[TrackState, ...]
    handovers: tuple[TrackState, ...]
    tally: TallyState | None
    last_time: float | None
    previous_time: float | None
    last_position: tuple[str, int] | None
    occupancy: tuple[tuple[str, int, int], ...]  # zone, class, objects inside
    paused: tuple[tuple[float, float], ...]
    policy_version: int | None
    # Messages of a new run, held until it is confirmed (they were acknowledged).
    held: tuple[TrackObservation, ...]
    # Reports closed but not yet accepted by EVENTS.
    reports: tuple[WindowReport, ...]
    format: int = CHECKPOINT_FORMAT


_ADAPTER = TypeAdapter(CameraState)


def removed_camera(camera_id: str, reports: Iterable[WindowReport]) -> CameraState:
    """The state of a camera no longer counted here whose last reports EVENTS has not accepted yet."""
    return CameraState(
        camera_id=camera_id,
        geometry_version="",
        run_id="",
        sequence=-1,
        fingerprints=(),
        ended_runs=(),
        tracks=(),
        handovers=(),
        tally=None,
        last_time=None,
        previous_time=None,
        last_position=None,
        occupancy=(),
        paused=(),
        policy_version=None,
        held=(),
        reports=tuple(reports),
    )


def encode_state(state: CameraState) -> bytes:
    return _ADAPTER.dump_json(state)


def decode_state(data: bytes) -> CameraState:
    try:
        state = _ADAPTER.validate_json(data)
    except ValidationError as error:
        # The first error's location only: the values may hold a track id.
        where = ".".join(str(p) for p in error.errors()[0]["loc"]) if error.errors() else "?"
        raise CheckpointError(f"not a checkpoint of this format (at {where or 'the top'})") from None
    if state.format != CHECKPOINT_FORMAT:
        raise CheckpointError(f"format {state.format}, this anonymiser reads format {CHECKPOINT_FORMAT}")
    return state
