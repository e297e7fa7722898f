"""Reading and checking a Frame message from FRAMES: bad input gets a clear error naming the field."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError
from pydantic import TypeAdapter, ValidationError

from vigie_core.settings import CameraId
from vigie_proto.v1.frames_pb2 import PIXEL_FORMAT_RGB24, Frame


class InvalidFrameError(ValueError):
    """A message on FRAMES that is not a frame Vigie can analyse."""


def parse_frame(data: bytes, max_side: int) -> tuple[Frame, npt.NDArray[np.uint8]]:
    """The frame and a read-only view of its pixels (HxWx3, no copy)."""
    frame = Frame()
    try:
        frame.ParseFromString(data)
    except DecodeError as error:
        raise InvalidFrameError(f"not a vigie.v1.Frame message ({len(data)} bytes): {error}") from error
    _check_camera(frame.camera_id)
    if frame.pixel_format != PIXEL_FORMAT_RGB24:
        raise InvalidFrameError(f"camera {frame.camera_id!r}: pixel_format must be RGB24")
    if not (0 < frame.width <= max_side and 0 < frame.height <= max_side):
        raise InvalidFrameError(
            f"camera {frame.camera_id!r}: width and height must be in 1..{max_side}, "
            f"got {frame.width}x{frame.height}"
        )
    expected = frame.width * frame.height * 3
    if len(frame.pixels) != expected:
        raise InvalidFrameError(
            f"camera {frame.camera_id!r}: pixels has {len(frame.pixels)} bytes, "
            f"{frame.width}x{frame.height} RGB24 needs {expected}"
        )
    if not frame.run_id:
        raise InvalidFrameError(f"camera {frame.camera_id!r}: run_id is empty")
    pixels = np.frombuffer(frame.pixels, dtype=np.uint8).reshape(frame.height, frame.width, 3)
    return frame, pixels


_CAMERA_ID: TypeAdapter[str] = TypeAdapter(CameraId)


def _check_camera(camera_id: str) -> None:
    try:
        _CAMERA_ID.validate_python(camera_id)
    except ValidationError as error:
        raise InvalidFrameError(f"camera_id: {error.errors()[0]['msg']}") from error
