from pathlib import Path

import pytest
from pydantic import ValidationError

from vigie_core.settings import CameraId, ServiceSettings


class ExampleSettings(ServiceSettings, env_prefix="VIGIE_EXAMPLE_"):
    camera: CameraId = "entrance"
    rate: float = 5.0


def test_defaults_need_no_environment() -> None:
    settings = ExampleSettings()
    assert settings.nats.url == "nats://127.0.0.1:4222"
    assert settings.rate == 5.0


def test_environment_sets_nested_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIE_EXAMPLE_NATS__URL", "nats://broker:4222")
    monkeypatch.setenv("VIGIE_EXAMPLE_NATS__PASSWORD", "s3cret")
    settings = ExampleSettings()
    assert settings.nats.url == "nats://broker:4222"
    assert settings.nats.password is not None
    assert "s3cret" not in repr(settings)


def test_file_is_read_and_environment_overrides_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "example.toml"
    config.write_text('rate = 2.5\ncamera = "north-gate"\n[nats]\nurl = "nats://from-file:4222"\n')
    monkeypatch.setenv("VIGIE_EXAMPLE_RATE", "7")
    settings = ExampleSettings.load(config)
    assert settings.camera == "north-gate"
    assert settings.nats.url == "nats://from-file:4222"
    assert settings.rate == 7.0


def test_unknown_setting_in_file_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "example.toml"
    config.write_text("sampling_rate = 3\n")
    with pytest.raises(ValidationError, match="sampling_rate"):
        ExampleSettings.load(config)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ExampleSettings.load(tmp_path / "absent.toml")


@pytest.mark.parametrize("bad", ["north gate", "a.b", "cam*", "", "x" * 65])
def test_camera_ids_must_be_one_subject_token(bad: str) -> None:
    with pytest.raises(ValidationError, match="not a valid identifier"):
        ExampleSettings(camera=bad)


def test_unknown_setting_in_environment_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIE_EXAMPLE_RATTE", "3")
    with pytest.raises(ValueError, match="VIGIE_EXAMPLE_RATTE"):
        ExampleSettings.load()
