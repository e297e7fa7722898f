"""Whether a track is in a zone, and how long it stayed: a small state machine per track and zone.

A track enters a zone after `establish_frames` consecutive observations with its anchor inside, and
leaves it after as many outside: a box flickering on the zone's edge neither splits one stay into many
short ones nor counts as a visit. The stay runs from the first of the inside observations that made it
enter to the last inside observation before it left. Only the duration leaves this module, and only as a
bucket (see `DwellBuckets`).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

__all__ = ["DwellBuckets", "ZoneTrackState", "finish_zone", "step_zone"]


@dataclass(slots=True)
class ZoneTrackState:
    inside: bool = False
    streak: int = 0  # consecutive observations on the other side of the edge than `inside` says
    streak_since: float = 0.0  # capture time of the first of them
    stay_start: float = 0.0
    last_inside: float = 0.0


def step_zone(state: ZoneTrackState, inside: bool, time: float, establish_frames: int) -> float | None:
    """Advance with one observation; return the duration of a stay that just ended, if any."""
    if inside == state.inside:
        state.streak = 0
        if inside:
            state.last_inside = time
        return None
    if state.streak == 0:
        state.streak_since = time
    state.streak += 1
    if state.streak < establish_frames:
        return None
    state.streak = 0
    state.inside = inside
    if inside:
        state.stay_start, state.last_inside = state.streak_since, time
        return None
    return state.last_inside - state.stay_start


def finish_zone(state: ZoneTrackState) -> float | None:
    """The track ended: the duration of its stay, if it was inside."""
    if not state.inside:
        return None
    state.inside = False
    return state.last_inside - state.stay_start


@dataclass(frozen=True, slots=True)
class DwellBuckets:
    """Upper bounds in seconds, increasing; bucket i holds [bounds[i-1], bounds[i]), the last one
    [bounds[-1], ∞). The default gives <30 s, 30 s-2 min, 2-10 min, >=10 min."""

    bounds: tuple[int, ...] = (30, 120, 600)

    def __post_init__(self) -> None:
        if (
            not self.bounds
            or any(b <= 0 for b in self.bounds)
            or list(self.bounds) != sorted(set(self.bounds))
        ):
            raise ValueError(f"dwell bucket bounds must be positive and increasing, got {self.bounds}")

    def index(self, seconds: float) -> int:
        return bisect.bisect_right(self.bounds, seconds)

    def limits(self, index: int) -> tuple[int, int | None]:
        """The bucket's lower bound and its upper bound (None for the last, unbounded one)."""
        lower = 0 if index == 0 else self.bounds[index - 1]
        upper = self.bounds[index] if index < len(self.bounds) else None
        return lower, upper
