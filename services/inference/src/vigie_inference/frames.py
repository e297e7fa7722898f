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


class MislabelledFrameError(InvalidFrameError):
    """A frame that names another camera than the subject it was published on.

    Partitions, permissions and objections act on the subject's camera: such a frame's pixels reached a
    replica, and would reach a tracker, that were not set up for the camera they show. A boundary fault.
    """

    def __init__(self, frame_camera: str, subject_camera: str) -> None:
        super().__init__(
            f"camera_id {frame_camera!r} differs from the camera of the subject, {subject_camera!r}"
        )
        self.frame_camera = frame_camera
        self.subject_camera = subject_camera


def camera_of_subject(subject: str) -> str:
    """The camera a FRAMES subject names: its last token (``vigie.frames.<partition>.<camera>``)."""
    return subject.rsplit(".", 1)[-1]


def parse_frame(
    data: bytes, max_side: int, subject_camera: str | None = None
) -> tuple[Frame, npt.NDArray[np.uint8]]:
    """The frame and a read-only view of its pixels (HxWx3, no copy). ``subject_camera``, when given, is
    the camera of the subject the frame came on; a frame naming another raises MislabelledFrameError."""
    frame = Frame()
    try:
        frame.ParseFromString(data)
    except DecodeError as error:
        raise InvalidFrameError(f"not a vigie.v1.Frame message ({len(data)} bytes): {error}") from error
    _check_camera(frame.camera_id)
    if subject_camera is not None and frame.camera_id != subject_camera:
        raise MislabelledFrameError(frame.camera_id, subject_camera)
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


def is_camera_id(value: str) -> bool:
    """Whether ``value`` is a valid camera id (one NATS subject token of [A-Za-z0-9_-])."""
    try:
        _CAMERA_ID.validate_python(value)
    except ValidationError:
        return False
    return True


def _check_camera(camera_id: str) -> None:
    try:
        _CAMERA_ID.validate_python(camera_id)
    except ValidationError as error:
        raise InvalidFrameError(f"camera_id: {error.errors()[0]['msg']}") from error
