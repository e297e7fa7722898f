"""The record of a file camera's position: what it holds, and what happens when it is missing, another
source's, unreadable or finished."""

import json
import logging
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from vigie_ingest import CameraConfig
from vigie_ingest.file_position import (
    FilePosition,
    FilePositions,
    UnreadableFilePositionError,
    decode_position,
    encode_position,
    file_source_digest,
)
from vigie_ingest.settings import IngestSettings

OPENED_AT = datetime(2026, 3, 14, 9, 30, 0, 123456, tzinfo=UTC)
POSITION = FilePosition("0123456789abcdef", OPENED_AT, 0.0, 19.8198)


def found(registry: CollectorRegistry, outcome: str, camera: str = "parvis") -> float:
    value = registry.get_sample_value(
        "vigie_ingest_file_positions_found_total", {"camera": camera, "outcome": outcome}
    )
    return value or 0.0


def test_a_position_round_trips_exactly() -> None:
    looped = FilePosition("0123456789abcdef", OPENED_AT, 60.026633, 64.4644 + 1e-9, finished=False)
    for position in (POSITION, looped, replace(POSITION, finished=True)):
        assert decode_position(encode_position(position)) == position


def test_the_record_holds_a_digest_times_and_a_flag_only() -> None:
    record = json.loads(encode_position(POSITION))
    assert record == {
        "format": 1,
        "source": "0123456789abcdef",
        "opened_at": "2026-03-14T09:30:00.123456+00:00",
        "pass_offset_s": 0.0,
        "media_s": 19.8198,
        "finished": False,
    }


def test_the_source_digest_names_the_camera_file_and_loop_without_the_path(tmp_path: Path) -> None:
    video = tmp_path / "secret-place.mp4"
    video.write_bytes(b"x" * 100)
    config = CameraConfig(id="parvis", url=str(video))
    digest = file_source_digest(config)
    assert len(digest) == 16
    assert int(digest, 16) >= 0
    assert "secret" not in digest
    assert file_source_digest(CameraConfig(id="parvis", url=f"file://{video}")) == digest
    others = [
        CameraConfig(id="gare", url=str(video)),
        CameraConfig(id="parvis", url=str(video), loop=True),
        CameraConfig(id="parvis", url=str(tmp_path / "other.mp4")),
    ]
    assert digest not in {file_source_digest(other) for other in others}
    # Another film put at the same path.
    video.write_bytes(b"x" * 101)
    assert file_source_digest(config) != digest


def test_a_saved_position_is_found_by_the_next_process_at_the_first_opening_only(tmp_path: Path) -> None:
    FilePositions(tmp_path / "state").save("parvis", POSITION)
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["parvis.file-position.json"]

    registry = CollectorRegistry()
    positions = FilePositions(tmp_path / "state", registry)
    assert positions.resume_point("parvis", POSITION.source) == POSITION
    assert found(registry, "resumed") == 1
    # A later opening in the same process (the registry starting the camera again): from the beginning.
    assert positions.resume_point("parvis", POSITION.source) is None
    # Another camera has no record.
    assert positions.resume_point("gare", POSITION.source) is None


def test_a_finished_film_is_found_finished(tmp_path: Path) -> None:
    FilePositions(tmp_path).save("parvis", replace(POSITION, finished=True))
    registry = CollectorRegistry()
    position = FilePositions(tmp_path, registry).resume_point("parvis", POSITION.source)
    assert position is not None
    assert position.finished
    assert found(registry, "finished") == 1


def test_another_sources_position_is_not_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    FilePositions(tmp_path).save("parvis", POSITION)
    registry = CollectorRegistry()
    with caplog.at_level(logging.WARNING, "vigie.ingest.positions"):
        assert FilePositions(tmp_path, registry).resume_point("parvis", "fedcba9876543210") is None
    assert found(registry, "other_source") == 1
    assert "camera parvis:" in caplog.text
    assert "another source" in caplog.text
    assert "playing the file from its beginning" in caplog.text


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "not JSON"),
        (b'{"format": 1, "source": "0123', "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a file position"),
        (b'{"format": 2}', "format 2"),
        (b'{"format": 1, "source": "0123456789abcdef"}', "KeyError"),
        (
            json.dumps({**json.loads(encode_position(POSITION)), "opened_at": "yesterday"}).encode(),
            "ValueError",
        ),
        (
            json.dumps(
                {**json.loads(encode_position(POSITION)), "opened_at": "2026-03-14T09:30:00"}
            ).encode(),
            "wrong type or out of range",
        ),
        (json.dumps({**json.loads(encode_position(POSITION)), "media_s": -1}).encode(), "out of range"),
        (json.dumps({**json.loads(encode_position(POSITION)), "media_s": True}).encode(), "out of range"),
        (json.dumps({**json.loads(encode_position(POSITION)), "media_s": "19"}).encode(), "out of range"),
        (json.dumps({**json.loads(encode_position(POSITION)), "finished": 1}).encode(), "out of range"),
        (
            b'{"format": 1, "source": "x", "opened_at": "2026-03-14T09:30:00+00:00", "pass_offset_s": 0, '
            b'"media_s": NaN, "finished": false}',
            "out of range",
        ),
    ],
)
def test_an_unreadable_record_is_said_and_the_file_played_from_its_beginning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes, why: str
) -> None:
    with pytest.raises(UnreadableFilePositionError, match=why):
        decode_position(content)
    (tmp_path / "parvis.file-position.json").write_bytes(content)
    registry = CollectorRegistry()
    with caplog.at_level(logging.WARNING, "vigie.ingest.positions"):
        assert FilePositions(tmp_path, registry).resume_point("parvis", POSITION.source) is None
    assert found(registry, "unreadable") == 1
    assert "cannot be read" in caplog.text


def test_saving_replaces_the_record_whole_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    positions = FilePositions(tmp_path)
    for media_s in (0.0, 0.2002, 0.4004):
        positions.save("parvis", replace(POSITION, media_s=media_s))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parvis.file-position.json"]
    assert decode_position((tmp_path / "parvis.file-position.json").read_bytes()).media_s == 0.4004


def test_a_position_that_cannot_be_written_is_counted_and_logged_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    registry = CollectorRegistry()
    with caplog.at_level(logging.WARNING, "vigie.ingest.positions"):
        positions = FilePositions(blocked / "state", registry)
        positions.save("parvis", POSITION)
        positions.save("parvis", POSITION)
    assert registry.get_sample_value("vigie_ingest_file_position_write_failures_total") == 2
    assert "cannot create the state directory" in caplog.text
    # The first failure is logged, not every one.
    assert caplog.text.count("cannot be written") == 1
    assert positions.resume_point("parvis", POSITION.source) is None


def test_the_state_directory_is_an_ingest_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert IngestSettings().state_dir is None  # no resume unless asked
    monkeypatch.setenv("VIGIE_INGEST_STATE_DIR", str(tmp_path / "ingest"))
    assert IngestSettings().state_dir == tmp_path / "ingest"
