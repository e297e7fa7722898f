"""A frame kept for the model: the only object in ingest that holds pixels."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from vigie_core.masks import PrivacyMasks
    from vigie_ingest.file_position import FilePosition

RgbPixels = npt.NDArray[np.uint8]


@dataclass(frozen=True, eq=False)
class CapturedFrame:
    """One sampled, resized frame of one camera run.

    `pixels` is H x W x 3, RGB, uint8, C-contiguous and read-only, already sized for the model.
    It lives in memory only: nothing in ingest writes it to disk.
    """

    camera_id: str
    # Random per run of a camera (each call of `FrameSource.frames()`); a new run restarts `sequence`.
    run_id: str
    # 0, 1, 2... for the frames delivered in this run, without gaps.
    sequence: int
    # Timezone-aware: wall clock at decode for live sources, open time + media time for files.
    captured_at: datetime
    source_width: int
    source_height: int
    pixels: RgbPixels
    # The privacy masks already blanked on `pixels` (None: none); the publisher blanks what is missing.
    masked_with: PrivacyMasks | None = None
    # A file camera whose position is kept: where its file stands once this frame is published (None: a
    # live camera, or positions not kept).
    position: FilePosition | None = None

    def __post_init__(self) -> None:
        if self.captured_at.tzinfo is None:
            raise ValueError("captured_at must be timezone-aware")
        if self.pixels.dtype != np.uint8 or self.pixels.ndim != 3 or self.pixels.shape[2] != 3:
            raise ValueError(f"pixels must be H x W x 3 uint8, got {self.pixels.dtype} {self.pixels.shape}")
        if not self.pixels.flags.c_contiguous:
            raise ValueError("pixels must be C-contiguous")

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])
