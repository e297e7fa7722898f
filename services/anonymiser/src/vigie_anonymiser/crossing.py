"""Whether a track crossed a counting line: hysteresis on the track's trajectory, per track and line.

Counting a sign change of the anchor's side, as the usual line counters do, counts every wobble of a box
standing on the line and every flicker of a detection across it. Here a **dead band** surrounds the line
(`hysteresis` box sizes along the line's normal on each side, at least `min_band` of the picture: see
`CountingLine.band`), and a track is always **established** on one side of it:

1. a new track is established on the side where it is first seen (the tracker confirmed it over a few
   frames already; inside the band, the side of the line it stands on);
2. a crossing is counted when the track is next seen **beyond the band on the other side**, provided its
   anchor passed the line **between the line's two ends** on the way (on a step between two
   observations, so a track that disappears on one side and reappears on the other still counts); it is
   then established on that side;
3. observations inside the band change nothing; an observation beyond the band on the established side
   forgets a pass of the line made since (it came back without getting clear of the band).

Every crossing is counted, however often the same track makes it: a person walking back and forth over a
line is counted at each pass, U-turns and quick returns included. On tracks that follow people exactly,
the counts are the geometric crossings of their anchors, **except an excursion across the line that never
gets beyond the band**: it is no crossing, nor is the step back. The band is the bound: 0.15 box sizes by
default, about 15 cm for a walking adult across a horizontal line (box height, feet to head) and 6 cm
across a vertical one (box width), never less than 0.4 % of the picture. It is what keeps a box that
jitters on the line, from the detector's noise, from counting: that noise is a few hundredths of a box
size at walking distances, the band several times larger.
"""

from __future__ import annotations

from dataclasses import dataclass

from vigie_anonymiser.geometry import CountingLine, CrossingDirection, Point

__all__ = ["LineTrackState", "step_line"]

LEFT, NOWHERE, RIGHT = -1, 0, 1


@dataclass(slots=True)
class LineTrackState:
    """What one track needs to remember about one line: its side and a flag, no position."""

    established: int = NOWHERE  # LEFT or RIGHT once established
    # Since it was last beyond the band on its established side, the anchor passed the line between its ends.
    through: bool = False


def step_line(
    state: LineTrackState, line: CountingLine, previous: Point | None, point: Point, band: float
) -> CrossingDirection | None:
    """Advance with the anchor's new position; return the direction of a crossing to count, if any."""
    distance = line.signed_distance(point)
    if state.established == NOWHERE:
        if distance != 0.0:
            state.established = RIGHT if distance > 0.0 else LEFT
        return None
    if previous is not None and not state.through:
        state.through = line.crosses_segment(previous, point, line.signed_distance(previous), distance)
    side = RIGHT if distance > band else LEFT if distance < -band else NOWHERE
    if side == NOWHERE:
        return None
    came_from, crossed = state.established, state.through
    state.established, state.through = side, False
    if side == came_from or not crossed:
        return None
    direction = CrossingDirection.LEFT_TO_RIGHT if side == RIGHT else CrossingDirection.RIGHT_TO_LEFT
    return direction if direction in line.directions else None
