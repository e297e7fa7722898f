from pathlib import Path

import pytest
from pydantic import ValidationError

from vigie_ingest import CameraConfig, LiveConnectionPolicy


@pytest.mark.parametrize("camera_id", ["north-gate", "cam_01", "A", "x" * 64])
def test_camera_id_is_one_subject_token(camera_id: str) -> None:
    assert CameraConfig(id=camera_id, url="a.mp4").id == camera_id


@pytest.mark.parametrize("camera_id", ["", "north.gate", "north gate", "cam*", "cam>", "é", "x" * 65])
def test_camera_id_rejects_what_is_not_one_subject_token(camera_id: str) -> None:
    with pytest.raises(ValidationError, match="one NATS subject token") as caught:
        CameraConfig(id=camera_id, url="a.mp4")
    assert caught.value.errors()[0]["loc"] == ("id",)


@pytest.mark.parametrize(
    ("url", "live"),
    [
        ("videos/a.mp4", False),
        ("/var/videos/a.mp4", False),
        ("file:///var/videos/a.mp4", False),
        ("rtsp://10.0.0.5:554/stream1", True),
        ("rtsps://cam.example/stream", True),
        ("http://10.0.0.6/mjpg/video.mjpg", True),
        ("HTTPS://cam.example/live", True),
    ],
)
def test_live_follows_the_scheme(url: str, live: bool) -> None:
    assert CameraConfig(id="c", url=url).live is live


def test_file_url_gives_a_decoded_path() -> None:
    camera = CameraConfig(id="c", url="file:///var/my%20videos/a.mp4")
    assert camera.file_path == Path("/var/my videos/a.mp4")
    assert CameraConfig(id="c", url="videos/a.mp4").file_path == Path("videos/a.mp4")


@pytest.mark.parametrize("url", ["ftp://host/a.mp4", "udp://239.0.0.1:1234", "rtmp://host/live"])
def test_unsupported_schemes_are_rejected(url: str) -> None:
    with pytest.raises(ValidationError, match="is not supported"):
        CameraConfig(id="c", url=url)


def test_live_url_needs_a_host() -> None:
    with pytest.raises(ValidationError, match="has no host"):
        CameraConfig(id="c", url="rtsp:///stream")


def test_defaults() -> None:
    camera = CameraConfig(id="c", url="a.mp4")
    assert (camera.sample_fps, camera.loop, camera.realtime, camera.options) == (5.0, False, True, {})


@pytest.mark.parametrize("sample_fps", [0, -1, 30.5])
def test_sample_fps_is_bounded(sample_fps: float) -> None:
    with pytest.raises(ValidationError) as caught:
        CameraConfig(id="c", url="a.mp4", sample_fps=sample_fps)
    assert caught.value.errors()[0]["loc"] == ("sample_fps",)


def test_loop_and_fast_reading_are_for_files_only() -> None:
    with pytest.raises(ValidationError, match="loop applies to files only"):
        CameraConfig(id="c", url="rtsp://cam/stream", loop=True)
    with pytest.raises(ValidationError, match="files only"):
        CameraConfig(id="c", url="rtsp://cam/stream", realtime=False)


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        CameraConfig.model_validate({"id": "c", "url": "a.mp4", "fps": 5})


def test_display_url_hides_the_password() -> None:
    camera = CameraConfig(id="c", url="rtsp://admin:s3cret@10.0.0.5:554/stream1")
    assert camera.display_url == "rtsp://admin:***@10.0.0.5:554/stream1"
    assert "s3cret" not in camera.display_url
    assert CameraConfig(id="c", url="rtsp://10.0.0.5/s").display_url == "rtsp://10.0.0.5/s"


def test_live_policy_checks_its_delays() -> None:
    with pytest.raises(ValidationError, match="at least backoff_initial_s"):
        LiveConnectionPolicy(backoff_initial_s=5, backoff_max_s=1)


def test_redacted_hides_the_url_s_password_and_query_values_wherever_they_appear() -> None:
    camera = CameraConfig(id="c", url="rtsp://admin:s3%40cret@10.0.0.5:554/stream1?token=abc123&x=1")
    text = camera.redacted(
        f"failed: {camera.url!r}; auth s3@cret refused; token abc123 expired; see also s3%40cret"
    )
    assert camera.display_url in text
    for secret in ("s3@cret", "s3%40cret", "abc123"):
        assert secret not in text
    assert "admin" in text, "the user name stays: it is not a secret, and it helps"


def test_validation_errors_do_not_echo_passwords() -> None:
    with pytest.raises(ValidationError) as caught:
        CameraConfig(id="c", url="rtsp://admin:s3cret@10.0.0.5/stream", loop=True)
    assert "s3cret" not in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        CameraConfig(id="c", url="rtmp://admin:s3cret@10.0.0.5/stream")
    assert "s3cret" not in str(caught.value)


def test_settings_errors_never_echo_camera_credentials() -> None:
    from vigie_ingest.settings import IngestSettings

    with pytest.raises(ValidationError) as caught:
        IngestSettings(cameras=[{"id": "bad id", "url": "rtsp://admin:s3cret@10.0.0.5/stream"}])
    assert "s3cret" not in str(caught.value)
    assert "cameras.0.id" in str(caught.value)


def test_decoder_threading_adapts_to_how_the_camera_is_paced() -> None:
    from vigie_ingest.pyav_source import decoder_threading

    live = CameraConfig(id="live", url="rtsp://camera.example/stream")
    paced_file = CameraConfig(id="paced", url="film.mp4")
    fast_file = CameraConfig(id="fast", url="film.mp4", realtime=False)
    # Paced by a clock: one thread, the least CPU per frame; read as fast as possible: FFmpeg's threads.
    adaptive = [decoder_threading("ADAPTIVE", c) for c in (live, paced_file, fast_file)]
    assert adaptive == ["NONE", "NONE", "AUTO"]
    # Any other choice applies to every camera.
    assert {decoder_threading("SLICE", c) for c in (live, paced_file, fast_file)} == {"SLICE"}
