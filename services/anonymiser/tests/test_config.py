"""Settings and geometry configuration: bad input is refused with the field and the rule."""

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from vigie_anonymiser import CameraGeometryConfig, LineConfig, ZoneConfig
from vigie_anonymiser.geometry_source import GeometryChange, geometry_change
from vigie_anonymiser.settings import AnonymiserSettings
from vigie_core.audit import AuditAction

LINE = {"id": "l", "start": (0.1, 0.5), "end": (0.9, 0.5)}


def test_a_window_shorter_than_twenty_minutes_needs_a_justification() -> None:
    with pytest.raises(ValidationError, match="rule 11"):
        CameraGeometryConfig(id="c", reporting_window_s=600)
    justified = CameraGeometryConfig(
        id="c",
        reporting_window_s=600,
        reporting_window_justification="traffic lights are retimed every 10 min",
    )
    assert justified.to_geometry().window_s == 600
    assert CameraGeometryConfig(id="c").to_geometry().window_s == 1200


def test_a_window_must_divide_a_day() -> None:
    with pytest.raises(ValidationError, match="must divide a day"):
        CameraGeometryConfig(id="c", reporting_window_s=1300)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"id": "c", "lines": [LINE, LINE]}, "must be unique"),
        ({"id": "c", "lines": [{**LINE, "end": (0.1, 0.505)}]}, "at least 0.01 apart"),
        ({"id": "c", "lines": [{**LINE, "start": (1.2, 0.5)}]}, "less than or equal to 1"),
        ({"id": "c", "lines": [{**LINE, "id": "a b"}]}, "not a valid identifier"),
        ({"id": "c", "lines": [{**LINE, "classes": ["person", "person"]}]}, "listed twice"),
        ({"id": "c", "lines": [{**LINE, "classes": ["face"]}]}, "Input should be 'person'"),
        (
            {"id": "c", "zones": [{"id": "z", "polygon": [(0, 0), (1, 1), (1, 0), (0, 1)]}]},
            "cross each other",
        ),
        ({"id": "c", "zones": [{"id": "z", "polygon": [(0, 0), (0.5, 0.5), (1, 1)]}]}, "encloses no area"),
        ({"id": "c", "dwell_buckets_s": [60, 30]}, "increasing"),
        ({"id": "c", "anchor": "head"}, "bottom_centre"),
        ({"id": "c", "colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_geometry_is_refused_clearly(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CameraGeometryConfig.model_validate(config)


def test_the_version_changes_with_what_the_figures_mean_only() -> None:
    base = CameraGeometryConfig(id="c", lines=[LineConfig.model_validate(LINE)])
    moved = base.model_copy(update={"lines": [LineConfig.model_validate({**LINE, "end": (0.9, 0.6)})]})
    explained = CameraGeometryConfig(
        id="c", lines=base.lines, reporting_window_justification="no change to the figures"
    )
    assert base.version() != moved.version()
    assert base.version() == explained.version()
    with_zone = base.model_copy(update={"zones": [ZoneConfig(id="z", polygon=[(0, 0), (1, 0), (1, 1)])]})
    assert with_zone.version() != base.version()


def test_settings_load_from_toml_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "anonymiser.toml"
    config.write_text(
        """
camera_idle_s = 90
[counting]
hysteresis = 0.2

[[cameras]]
id = "market-street"
[[cameras.lines]]
id = "crossing"
start = [0.1, 0.6]
end = [0.9, 0.6]
directions = "left_to_right"
classes = ["person", "bicycle"]
[[cameras.zones]]
id = "bus-stop"
polygon = [[0.1, 0.1], [0.4, 0.1], [0.4, 0.4]]
"""
    )
    monkeypatch.setenv("VIGIE_ANONYMISER_CAMERA_IDLE_S", "120")
    settings = AnonymiserSettings.load(config)
    assert settings.camera_idle_s == 120
    assert settings.counting.hysteresis == 0.2
    (camera,) = settings.cameras
    geometry = camera.to_geometry()
    assert [line.id for line in geometry.lines] == ["crossing"]
    assert geometry.lines[0].classes == {1, 2}
    assert geometry.zones[0].contains((0.3, 0.15))


def test_unknown_settings_and_inconsistent_partitions_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="partition 2 must be below partitions"):
        AnonymiserSettings(partition=2, partitions=2)
    with pytest.raises(ValidationError, match="listed once"):
        AnonymiserSettings(cameras=[CameraGeometryConfig(id="a"), CameraGeometryConfig(id="a")])
    monkeypatch.setenv("VIGIE_ANONYMISER_HYSTERISIS", "0.3")
    with pytest.raises(ValueError, match="VIGIE_ANONYMISER_HYSTERISIS"):
        AnonymiserSettings.load()


def test_the_example_configuration_is_valid() -> None:
    example = Path(__file__).parents[1] / "anonymiser.example.toml"
    settings = AnonymiserSettings.load(example)
    assert [camera.id for camera in settings.cameras] == ["market-street"]
    assert settings.cameras[0].to_geometry().window_s == 1200


def test_the_command_line_has_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vigie_anonymiser", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "--config" in result.stdout


def test_a_geometry_update_is_a_configuration_created_updated_or_deleted() -> None:
    camera = CameraGeometryConfig(id="cam", lines=[LineConfig(id="h", start=(0, 0.5), end=(1, 0.5))])
    moved = camera.model_copy(update={"lines": [LineConfig(id="h", start=(0, 0.6), end=(1, 0.6))]})
    before, after = camera.to_geometry(), moved.to_geometry()
    assert geometry_change("cam", before, camera.to_geometry()) is None, "same version: no change"
    created = geometry_change("cam", None, before)
    updated = geometry_change("cam", before, after)
    deleted = geometry_change("cam", after, None)
    assert created == GeometryChange("cam", "", camera.version())
    assert updated == GeometryChange("cam", camera.version(), moved.version())
    assert deleted == GeometryChange("cam", moved.version(), "")
    assert [c.action for c in (created, updated, deleted)] == [
        AuditAction.AUDIT_ACTION_CONFIG_CREATE,
        AuditAction.AUDIT_ACTION_CONFIG_UPDATE,
        AuditAction.AUDIT_ACTION_CONFIG_DELETE,
    ]
