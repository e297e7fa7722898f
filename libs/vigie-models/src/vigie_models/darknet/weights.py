"""Darknet ``.weights`` files: a small header, then every convolution's float32 arrays in layer order."""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


class DarknetWeightsError(ValueError):
    """A weights file that does not match its cfg (too short, too long, unsupported header)."""


class DarknetWeights:
    """Reads the arrays of a weights file in order; the caller knows their sizes from the cfg."""

    def __init__(self, data: bytes) -> None:
        if len(data) < 16:
            raise DarknetWeightsError(f"weights file too short for a header ({len(data)} bytes)")
        major, minor, revision = struct.unpack_from("<3i", data, 0)
        if major > 1000 or minor > 1000:
            # Darknet's own marker for transposed fully-connected weights, which we do not handle.
            raise DarknetWeightsError(f"unsupported weights format version {major}.{minor}")
        # From version 0.2 the "images seen" counter is 64-bit.
        seen_size = 8 if major * 10 + minor >= 2 else 4
        self.version = (major, minor, revision)
        self._data = data
        self._offset = 12 + seen_size

    def take(self, count: int, what: str) -> FloatArray:
        """The next ``count`` float32 values; ``what`` names them in the error if the file ends early."""
        end = self._offset + 4 * count
        if end > len(self._data):
            available = (len(self._data) - self._offset) // 4
            raise DarknetWeightsError(
                f"weights file ends early: {what} needs {count} values, {available} left"
            )
        values = np.frombuffer(self._data, dtype="<f4", count=count, offset=self._offset).astype(np.float32)
        self._offset = end
        return values

    def ensure_consumed(self) -> None:
        """Fail when values are left over: the cfg and the weights do not belong together."""
        left = len(self._data) - self._offset
        if left:
            raise DarknetWeightsError(
                f"{left} bytes of weights left after the last layer: cfg and weights differ"
            )
