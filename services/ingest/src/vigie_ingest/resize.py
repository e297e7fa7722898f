"""Resizing decoded frames to the model's input, in one swscale pass that also converts to RGB."""

from __future__ import annotations

from typing import Any

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from vigie_core.masks import NO_MASKS, PrivacyMasks
from vigie_ingest.frame import RgbPixels

DEFAULT_TARGET_SIZE = 416
# AREA averages the source pixels under each output pixel: no aliasing when shrinking, and on a
# 1080p source it costs half of BILINEAR (whose swscale filter widens with the scale factor).
DEFAULT_INTERPOLATION = Interpolation.AREA


def fit_within(source_width: int, source_height: int, target: int = DEFAULT_TARGET_SIZE) -> tuple[int, int]:
    """The largest size that fits a `target` x `target` square with the source's aspect ratio.

    Small sources are scaled up as well as large ones down, so that the longer side always equals
    `target`: the model's letterbox then only pads, and all scaling happens here, once, in C.
    Example: 640x360 -> 416x234; 360x640 -> 234x416; 320x240 -> 416x312.
    """
    if source_width <= 0 or source_height <= 0:
        raise ValueError(f"source size must be positive, got {source_width}x{source_height}")
    if target <= 0:
        raise ValueError(f"target size must be positive, got {target}")
    if source_width >= source_height:
        return target, max(1, round(source_height * target / source_width))
    return max(1, round(source_width * target / source_height)), target


class FrameResizer:
    """Converts decoded frames to model-sized RGB arrays.

    Keeps one swscale context between frames (recreating it per frame costs about 0.3 ms), so one
    resizer belongs to one decoding thread.
    """

    def __init__(
        self, target: int = DEFAULT_TARGET_SIZE, interpolation: Interpolation = DEFAULT_INTERPOLATION
    ) -> None:
        if target <= 0:
            raise ValueError(f"target size must be positive, got {target}")
        self.target = target
        self.interpolation = interpolation
        self._reformatter = VideoReformatter()

    def to_rgb(self, frame: av.VideoFrame, masks: PrivacyMasks = NO_MASKS) -> RgbPixels:
        """The frame resized, with ``masks`` blanked before the array is frozen (read-only)."""
        width, height = fit_within(frame.width, frame.height, self.target)
        rgb: Any = self._reformatter.reformat(
            frame, width=width, height=height, format="rgb24", interpolation=self.interpolation
        )
        # to_ndarray copies out of FFmpeg's padded planes, so the array owns its memory.
        pixels: RgbPixels = np.ascontiguousarray(rgb.to_ndarray())
        masks.blank(pixels)
        pixels.flags.writeable = False
        return pixels
