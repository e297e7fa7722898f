"""TRACKS messages are checked field by field; an error names the field."""

import subprocess
import sys

import pytest

from vigie_anonymiser import InvalidTrackFrameError, parse_track_frame
from vigie_anonymiser.observations import TracksBoundaryFaultError
from vigie_anonymiser.synthetic import FrameBuilder, to_track_frame
from vigie_proto.v1.frames_pb2 import Frame
from vigie_proto.v1.tracks_pb2 import OBJECT_CLASS_PERSON, Box, TrackedObject, TrackFrame


def frame(**changes: object) -> TrackFrame:
    message = TrackFrame(
        camera_id="cam",
        run_id="run",
        sequence=3,
        model="m",
        objects=[
            TrackedObject(
                track_id=b"\x01" * 16,
                object_class=OBJECT_CLASS_PERSON,
                score=0.9,
                box=Box(x1=0.1, y1=0.2, x2=0.3, y2=0.6),
            )
        ],
    )
    message.captured_at.FromSeconds(1_700_000_000)
    for name, value in changes.items():
        if name == "objects":
            del message.objects[:]
            message.objects.extend(value)  # type: ignore[arg-type]
        else:
            setattr(message, name, value)
    return message


def test_a_good_frame_is_read() -> None:
    data = frame().SerializeToString()
    observation = parse_track_frame(data, "cam")
    assert observation.captured_at == 1_700_000_000
    assert observation.objects[0].box == pytest.approx((0.1, 0.2, 0.3, 0.6))
    assert parse_track_frame(data).fingerprint == observation.fingerprint


def obj(**changes: object) -> TrackedObject:
    fields: dict[str, object] = {
        "track_id": b"\x01" * 16,
        "object_class": OBJECT_CLASS_PERSON,
        "box": Box(x1=0.1, y1=0.2, x2=0.3, y2=0.6),
    }
    fields.update(changes)
    return TrackedObject(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"\xff\x00garbage", "message"),
        (frame(camera_id="").SerializeToString(), "camera_id"),
        (frame(camera_id="other").SerializeToString(), "camera_id"),
        (frame(camera_id="a.b").SerializeToString(), "camera_id"),
        (frame(run_id="").SerializeToString(), "run_id"),
        (TrackFrame(camera_id="cam", run_id="r").SerializeToString(), "captured_at"),
        (frame(objects=[obj(track_id=b"short")]).SerializeToString(), "objects[0].track_id"),
        (
            frame(objects=[obj(), obj(object_class=0, track_id=b"\x02" * 16)]).SerializeToString(),
            "objects[1].object_class",
        ),
        (frame(objects=[obj(box=Box(x1=0.1, y1=0.2, x2=1.5, y2=0.6))]).SerializeToString(), "objects[0].box"),
        (frame(objects=[obj(box=Box(x1=0.5, y1=0.2, x2=0.3, y2=0.6))]).SerializeToString(), "objects[0].box"),
        (
            frame(objects=[obj(box=Box(x1=float("nan"), y1=0.2, x2=0.3, y2=0.6))]).SerializeToString(),
            "objects[0].box",
        ),
        (
            frame(
                objects=[TrackedObject(track_id=b"\x01" * 16, object_class=OBJECT_CLASS_PERSON)]
            ).SerializeToString(),
            "objects[0].box",
        ),
        (frame(objects=[obj(), obj()]).SerializeToString(), "objects.track_id"),
    ],
)
def test_bad_frames_name_the_field(data: bytes, field: str) -> None:
    with pytest.raises(InvalidTrackFrameError) as error:
        parse_track_frame(data, "cam")
    assert error.value.field == field
    assert str(error.value).startswith(f"{field}: ")


def test_ended_ids_are_checked_too() -> None:
    message = frame()
    message.ended_track_ids.append(b"\x00" * 15)
    with pytest.raises(InvalidTrackFrameError, match=r"ended_track_ids\[0\]: has 15 bytes"):
        parse_track_frame(message.SerializeToString())


def test_an_implausible_capture_time_is_refused() -> None:
    message = frame()
    message.captured_at.FromSeconds(5)
    with pytest.raises(InvalidTrackFrameError, match="captured_at"):
        parse_track_frame(message.SerializeToString())


def test_data_a_track_frame_has_no_field_for_is_a_boundary_fault() -> None:
    # A Frame (pixels) published on TRACKS would otherwise parse as an empty TrackFrame of camera "cam".
    picture = Frame(camera_id="cam", run_id="run", sequence=3, width=4, height=2, pixel_format=1)
    picture.pixels = bytes(range(24))
    picture.captured_at.FromSeconds(1_700_000_000)
    with pytest.raises(TracksBoundaryFaultError, match="data TRACKS must not carry") as raised:
        parse_track_frame(picture.SerializeToString(), "cam")
    assert raised.value.field_numbers == (7, 8, 9, 10)
    assert raised.value.unknown_bytes >= 24
    assert isinstance(raised.value, InvalidTrackFrameError)

    # An unknown field deep inside a box counts too: field 5, length-delimited, 3 bytes.
    person = TrackedObject(track_id=b"\x01" * 16, object_class=OBJECT_CLASS_PERSON, score=0.9)
    person.box.ParseFromString(Box(x1=0.1, y1=0.2, x2=0.3, y2=0.6).SerializeToString() + b"\x2a\x03abc")
    with pytest.raises(TracksBoundaryFaultError) as raised:
        parse_track_frame(frame(objects=[person]).SerializeToString(), "cam")
    assert (raised.value.field_numbers, raised.value.unknown_bytes) == ((), 5)


def test_a_message_has_the_same_fingerprint_in_every_process() -> None:
    """A checkpoint written by one process must recognise the copy redelivered to the next (Python's own
    hash of bytes is salted per process)."""
    data = to_track_frame(FrameBuilder().frame({1: (0.5, 0.5)})).SerializeToString()
    code = "import sys; from vigie_anonymiser.observations import parse_track_frame as p; "
    code += "print(p(bytes.fromhex(sys.argv[1])).fingerprint)"
    seen = {
        subprocess.run(
            [sys.executable, "-c", code, data.hex()],
            env={"PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert seen == {str(parse_track_frame(data).fingerprint)}
