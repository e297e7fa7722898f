"""Choosing which frames to keep so that a camera delivers `sample_fps` frames per second."""

from __future__ import annotations

import math

# Timestamps that sit exactly on a slot boundary (0.2 s at 5 fps) must fall in the later slot even
# after float rounding of pts * time_base.
_BOUNDARY_TOLERANCE = 1e-6


class RateSampler:
    """Keeps at most one frame per 1/sample_fps slot of the timeline: the first one in each slot.

    The kept rate is exactly min(source rate, sample_fps) on average, and two kept frames are at
    least one slot minus one source frame interval apart. (Requiring a full slot between kept frames
    would halve the rate when the two rates are close: a 10 fps source sampled at 9 fps would give
    5 fps.) Times are seconds on any timeline: media time for files, a monotonic clock for live
    sources.
    """

    def __init__(self, sample_fps: float) -> None:
        if not sample_fps > 0:
            raise ValueError(f"sample_fps must be positive, got {sample_fps}")
        self.sample_fps = sample_fps
        self.interval = 1.0 / sample_fps
        self._last_slot: int | None = None

    def keep(self, time_s: float) -> bool:
        """Whether the frame at `time_s` is kept; a kept frame takes its slot."""
        slot = math.floor(time_s * self.sample_fps + _BOUNDARY_TOLERANCE)
        last = self._last_slot
        # A timeline that jumps back (a stream restarting its clock) starts sampling over.
        if last is None or slot > last or slot < last - 1:
            self._last_slot = slot
            return True
        return False
