"""Whether a track crossed a counting line: a small state machine per track and line.

Counting a sign change of the anchor's side, as the usual line counters do, counts every wobble of a box
standing on the line, every flicker of a detection and every id switch. Here a crossing is counted only
when all of these hold:

1. the track was **established** on one side: `establish_frames` consecutive observations beyond a dead
   band around the line (the band is `hysteresis` box sizes wide on each side, see `CountingLine.band`);
2. its anchor then passed the line **between the line's two ends** (on a step between two observations,
   so a track that disappears on one side and reappears on the other still counts);
3. it became established on the **far side** in the same way;
4. this track was not counted in this direction on this line before: **at most once per line, per
   direction, per track**. A track lives seconds to minutes while in view; a walker who turns back is
   counted once each way (net flow zero), and a third pass in the same direction while continuously
   tracked needs two U-turns, far rarer than the occlusion- and jitter-driven flips this removes.

Observations inside the band change nothing, so a person lingering on the line, or a box jittering across
it, is never counted; an observation on the established side cancels a pending crossing (a one-frame
flicker to the far side is no crossing). When a track ends while pending on the far side (seen beyond the
band at least once after passing the line), it counts: it walked out of view right after crossing.
"""

from __future__ import annotations

from dataclasses import dataclass

from vigie_anonymiser.geometry import CountingLine, CrossingDirection, Point

__all__ = ["LineTrackState", "finish_line", "step_line"]

LEFT, NOWHERE, RIGHT = -1, 0, 1


@dataclass(slots=True)
class LineTrackState:
    """What one track needs to remember about one line: a few small integers, no position."""

    established: int = NOWHERE  # LEFT or RIGHT once established
    pending: int = NOWHERE  # the other side, while being observed there
    pending_count: int = 0
    # Since leaving the established side, the anchor passed the line between its ends.
    through: bool = False
    counted: int = 0  # bit mask of the CrossingDirection values already counted for this track


def step_line(
    state: LineTrackState,
    line: CountingLine,
    previous: Point | None,
    point: Point,
    band: float,
    establish_frames: int,
) -> CrossingDirection | None:
    """Advance with the anchor's new position; return the direction of a crossing to count, if any."""
    distance = line.signed_distance(point)
    if previous is None and state.established == NOWHERE and distance != 0.0:
        # A new track: the tracker confirmed it over a few frames already, so its first position tells its
        # side even inside the band (people already in view when the camera starts, or appearing near a
        # line). Only the far side needs the band.
        state.established = RIGHT if distance > 0.0 else LEFT
    if previous is not None and not state.through:
        state.through = line.crosses_segment(previous, point, line.signed_distance(previous), distance)
    side = RIGHT if distance > band else LEFT if distance < -band else NOWHERE
    if side == NOWHERE:
        state.pending, state.pending_count = NOWHERE, 0
        return None
    if side == state.established:
        state.pending, state.pending_count, state.through = NOWHERE, 0, False
        return None
    if side == state.pending:
        state.pending_count += 1
    else:
        state.pending, state.pending_count = side, 1
    if state.pending_count < establish_frames:
        return None
    return _establish_pending(state, line)


def finish_line(state: LineTrackState, line: CountingLine) -> CrossingDirection | None:
    """The track ended: count a crossing it was completing on the far side, if any."""
    if state.pending != NOWHERE and state.pending_count >= 1:
        return _establish_pending(state, line)
    return None


def _establish_pending(state: LineTrackState, line: CountingLine) -> CrossingDirection | None:
    came_from, side = state.established, state.pending
    crossed = came_from != NOWHERE and state.through
    state.established, state.pending, state.pending_count, state.through = side, NOWHERE, 0, False
    if not crossed:
        return None
    direction = CrossingDirection.LEFT_TO_RIGHT if side == RIGHT else CrossingDirection.RIGHT_TO_LEFT
    bit = 1 << direction
    if state.counted & bit or direction not in line.directions:
        return None
    state.counted |= bit
    return direction
