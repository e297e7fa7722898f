"""Fitting a picture into the detector's input, and mapping boxes back.

The detector takes an RGB picture that fits a square (416 pixels a side): either the whole square, or
(a model built for any size, ``multiple``) the square less the bands of padding that hold no part of the
picture, whole multiples of the network's stride on each side: 416x288 for a 16:9 frame, 416x352 for
4:3. A picture that already fits (ingest sends frames resized to fit within 416x416) is only padded,
centred, with a grey border; a larger one is first shrunk keeping its aspect ratio. `LetterboxTransform`
remembers where the picture landed so that boxes the detector returns in model pixels can be expressed
in normalised coordinates of the picture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = ["LetterboxTransform", "input_shape", "letterbox"]

DEFAULT_SIZE = 416
DEFAULT_FILL = 114  # the grey YOLO models were trained with on padded borders


@dataclass(frozen=True, slots=True)
class LetterboxTransform:
    """Where a picture `width` by `height` pixels lies inside the model input.

    `scale` is model pixels per picture pixel (1.0 when the picture was only padded). The picture
    occupies `content_width` by `content_height` model pixels from (`pad_x`, `pad_y`); these are kept
    rather than recomputed from `scale` because resizing rounds each side separately.
    """

    scale: float
    pad_x: int
    pad_y: int
    width: int
    height: int
    content_width: int
    content_height: int

    def to_normalised(self, boxes: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
        """Map Nx4 x1,y1,x2,y2 boxes in model pixels to the picture's normalised coordinates.

        The result is clipped to [0, 1]: the detector may place a box partly on the padding, and what
        lies there is outside the picture.
        """
        origin = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], dtype=np.float32)
        extent = np.array(
            [self.content_width, self.content_height, self.content_width, self.content_height],
            dtype=np.float32,
        )
        normalised = (np.asarray(boxes, dtype=np.float32).reshape(-1, 4) - origin) / extent
        return np.clip(normalised, 0.0, 1.0, out=normalised)

    def to_model(self, boxes: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
        """Map Nx4 normalised x1,y1,x2,y2 boxes of the picture to model pixels (inverse of to_normalised)."""
        origin = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], dtype=np.float32)
        extent = np.array(
            [self.content_width, self.content_height, self.content_width, self.content_height],
            dtype=np.float32,
        )
        return np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * extent + origin


def _content_size(width: int, height: int, size: int, upscale: bool) -> tuple[float, int, int]:
    """The scale and the size in model pixels of a `width` x `height` picture fitted into `size`."""
    scale = min(size / width, size / height)
    if not upscale:
        scale = min(scale, 1.0)
    if scale == 1.0:
        return scale, width, height
    return scale, min(size, max(1, round(width * scale))), min(size, max(1, round(height * scale)))


def input_shape(
    height: int, width: int, size: int = DEFAULT_SIZE, multiple: int | None = None, *, upscale: bool = False
) -> tuple[int, int]:
    """The (height, width) of the model input a `height` x `width` picture is letterboxed into: the
    `size` square, or with `multiple` the square less `multiple` bands of padding on each side."""
    if height <= 0 or width <= 0:
        raise ValueError(f"pixels: the picture is empty ({width}x{height})")
    if size <= 0:
        raise ValueError(f"size: must be positive, got {size}")
    if multiple is None:
        return size, size
    if multiple <= 0 or size % multiple:
        raise ValueError(f"multiple: must be a positive divisor of size {size}, got {multiple}")
    _, content_width, content_height = _content_size(width, height, size, upscale)
    # The square less whole bands of its padding, `multiple` rows (or columns) on each side at a time: the
    # picture stays where it lies in the square relative to the network's grid, so the model finds what it
    # would find in the square (an offset by part of a cell changes the detections a little, and not for
    # the better: measured on TUD-Campus).
    return _cropped(size, content_height, multiple), _cropped(size, content_width, multiple)


def _cropped(size: int, content: int, multiple: int) -> int:
    return size - 2 * multiple * ((size - content) // (2 * multiple))


def letterbox(
    pixels: NDArray[np.uint8],
    size: int = DEFAULT_SIZE,
    fill: int = DEFAULT_FILL,
    *,
    out: NDArray[np.uint8] | None = None,
    upscale: bool = False,
    multiple: int | None = None,
) -> tuple[NDArray[np.uint8], LetterboxTransform]:
    """Place an HxWx3 uint8 picture, centred, in a (size, size, 3) array padded with `fill` (with
    `multiple`: in the smaller array `input_shape` gives, the square less bands of its padding).

    A picture wider or taller than `size` is shrunk keeping its aspect ratio; a smaller one is only
    padded unless `upscale` is set. Resizing is bilinear, as in the YOLO reference preprocessing:
    INTER_AREA would alias less when shrinking but takes 20 times longer (about 7 ms against 0.3 ms
    for 1280x720 on our 2-core test machine), and ingest already sends frames that fit.
    `out`, when given, is written in place and returned — pass a slot of the batch array
    (`batch[i]`) to fill a [N, height, width, 3] model input without another copy. Only the border and
    the picture are written, never the whole array twice.
    """
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(
            f"pixels: expected an HxWx3 uint8 array, got shape {pixels.shape} dtype {pixels.dtype}"
        )
    height, width = int(pixels.shape[0]), int(pixels.shape[1])
    if not 0 <= fill <= 255:
        raise ValueError(f"fill: must be a uint8 value in 0..255, got {fill}")
    out_height, out_width = input_shape(height, width, size, multiple, upscale=upscale)
    if out is None:
        out = np.empty((out_height, out_width, 3), dtype=np.uint8)
    elif out.shape != (out_height, out_width, 3) or out.dtype != np.uint8:
        raise ValueError(
            f"out: expected a ({out_height}, {out_width}, 3) uint8 array, got {out.shape} {out.dtype}"
        )

    scale, content_width, content_height = _content_size(width, height, size, upscale)
    if scale == 1.0:
        content: NDArray[np.uint8] = pixels
    else:
        content = np.asarray(
            cv2.resize(pixels, (content_width, content_height), interpolation=cv2.INTER_LINEAR),
            dtype=np.uint8,
        )

    pad_x = (out_width - content_width) // 2
    pad_y = (out_height - content_height) // 2
    bottom = pad_y + content_height
    right = pad_x + content_width
    # Border only: filling the whole array and then copying the picture over it writes twice.
    out[:pad_y] = fill
    out[bottom:] = fill
    out[pad_y:bottom, :pad_x] = fill
    out[pad_y:bottom, right:] = fill
    out[pad_y:bottom, pad_x:right] = content
    transform = LetterboxTransform(
        scale=scale,
        pad_x=pad_x,
        pad_y=pad_y,
        width=width,
        height=height,
        content_width=content_width,
        content_height=content_height,
    )
    return out, transform
