import pytest

from vigie_inference.frames import (
    InvalidFrameError,
    MislabelledFrameError,
    camera_of_subject,
    is_camera_id,
    parse_frame,
)
from vigie_proto.v1.frames_pb2 import PIXEL_FORMAT_RGB24, PIXEL_FORMAT_UNSPECIFIED, Frame


def _frame(**overrides: object) -> Frame:
    fields: dict[str, object] = {
        "camera_id": "north-gate",
        "run_id": "r1",
        "width": 4,
        "height": 2,
        "pixel_format": PIXEL_FORMAT_RGB24,
        "pixels": bytes(range(24)),
    }
    fields.update(overrides)
    return Frame(**fields)  # type: ignore[arg-type]


def test_a_valid_frame_gives_its_pixels_without_copy() -> None:
    frame, pixels = parse_frame(_frame().SerializeToString(), 416)
    assert frame.camera_id == "north-gate"
    assert pixels.shape == (2, 4, 3)
    assert pixels[1, 3, 2] == 23
    assert not pixels.flags.writeable


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xff\xff garbage", "not a vigie.v1.Frame message"),
        (_frame(camera_id="a.b").SerializeToString(), "camera_id"),
        (_frame(pixel_format=PIXEL_FORMAT_UNSPECIFIED).SerializeToString(), "pixel_format must be RGB24"),
        (_frame(width=0).SerializeToString(), "width and height must be in 1..416"),
        (_frame(width=500, height=2).SerializeToString(), "width and height must be in 1..416"),
        (_frame(pixels=b"\x00" * 7).SerializeToString(), "pixels has 7 bytes"),
        (_frame(run_id="").SerializeToString(), "run_id is empty"),
    ],
)
def test_bad_frames_are_refused_naming_the_field(data: bytes, message: str) -> None:
    with pytest.raises(InvalidFrameError, match=message):
        parse_frame(data, 416)


def test_a_frame_naming_another_camera_than_its_subject_is_a_boundary_fault() -> None:
    data = _frame(camera_id="north-gate").SerializeToString()
    assert camera_of_subject("vigie.frames.3.north-gate") == "north-gate"
    parse_frame(data, 416, subject_camera="north-gate")
    with pytest.raises(MislabelledFrameError, match="differs from the camera of the subject") as raised:
        parse_frame(data, 416, subject_camera="south-gate")
    assert (raised.value.frame_camera, raised.value.subject_camera) == ("north-gate", "south-gate")
    assert isinstance(raised.value, InvalidFrameError)
    assert is_camera_id("south-gate")
    assert not is_camera_id("a.b")
    assert not is_camera_id("")
