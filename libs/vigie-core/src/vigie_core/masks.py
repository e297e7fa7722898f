"""Privacy masks: areas of a camera's picture blanked at ingest, before any other code sees the pixels, and
again on a scene view, with the masks in force when it is made (docs/privacy.md rule 9: windows of homes,
entrances of sensitive places).

Masks are polygons in normalised picture coordinates (0..1, y downwards), as the registry declares them.
A `PrivacyMasks` turns them into one boolean raster per picture size, drawn once with OpenCV and kept:
blanking a frame is then a single vectorised write. The raster is drawn generously: every pixel the
polygon's outline touches is blanked, so no part of a masked area survives rounding.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

import cv2
import numpy as np
import numpy.typing as npt

from vigie_proto.v1.policy_pb2 import CameraPolicy

__all__ = ["BLANK", "NO_MASKS", "PrivacyMasks", "RgbPixels", "masks_of"]

RgbPixels = npt.NDArray[np.uint8]

NormalisedPolygon = tuple[tuple[float, float], ...]

# What a masked pixel becomes: black. Nothing of the area is left, not even its mean colour.
BLANK = 0
# Sub-pixel precision of the drawn outline (cv2.fillPoly's ``shift``): 1/256 of a pixel.
_SHIFT = 8
# Rasters kept per mask set: a camera's picture size rarely changes (once per resolution change).
_MAX_RASTERS = 8


class PrivacyMasks:
    """An immutable set of mask polygons, with its rasters cached per picture size (thread-safe).

    Two sets with the same polygons are equal: a frame blanked with one needs nothing more for the other.
    """

    def __init__(self, polygons: Iterable[Sequence[tuple[float, float]]] = ()) -> None:
        cleaned: list[NormalisedPolygon] = []
        for polygon in polygons:
            points = tuple((float(x), float(y)) for x, y in polygon)
            if len(points) < 3:
                raise ValueError(f"a mask polygon needs at least 3 points, got {len(points)}")
            if not all(0.0 <= v <= 1.0 for point in points for v in point):
                raise ValueError(f"mask polygon {points} is not in normalised coordinates (0 to 1)")
            cleaned.append(points)
        self.polygons: tuple[NormalisedPolygon, ...] = tuple(cleaned)
        self._rasters: dict[tuple[int, int], npt.NDArray[np.bool_]] = {}
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self.polygons)

    def __len__(self) -> int:
        return len(self.polygons)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PrivacyMasks) and other.polygons == self.polygons

    def __hash__(self) -> int:
        return hash(self.polygons)

    def __repr__(self) -> str:
        return f"PrivacyMasks({len(self.polygons)} polygon(s))"

    def raster(self, height: int, width: int) -> npt.NDArray[np.bool_]:
        """True where a ``height`` x ``width`` picture is masked (read-only, cached)."""
        key = (height, width)
        with self._lock:
            raster = self._rasters.get(key)
        if raster is not None:
            return raster
        drawn = np.zeros((height, width), np.uint8)
        scale = np.array([width, height], np.float64) * (1 << _SHIFT)
        outlines = [np.round(np.array(p, np.float64) * scale).astype(np.int32) for p in self.polygons]
        if outlines:
            cv2.fillPoly(drawn, outlines, (1,), lineType=cv2.LINE_8, shift=_SHIFT)
            # The outline too, so that a pixel the polygon only partly covers is blanked as well.
            cv2.polylines(drawn, outlines, True, (1,), thickness=1, lineType=cv2.LINE_8, shift=_SHIFT)
        raster = drawn.astype(bool)
        raster.flags.writeable = False
        with self._lock:
            if len(self._rasters) >= _MAX_RASTERS:
                self._rasters.clear()
            self._rasters[key] = raster
        return raster

    def blank(self, pixels: RgbPixels) -> RgbPixels:
        """``pixels`` with every masked pixel blanked: in place when writable, else a copy."""
        if not self.polygons:
            return pixels
        if not pixels.flags.writeable:
            pixels = pixels.copy()
        pixels[self.raster(pixels.shape[0], pixels.shape[1])] = BLANK
        return pixels


NO_MASKS = PrivacyMasks()


def masks_of(policy: CameraPolicy) -> PrivacyMasks:
    """The masks a camera's policy declares."""
    return PrivacyMasks([(p.x, p.y) for p in mask.polygon] for mask in policy.masks)
