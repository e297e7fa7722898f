"""Every privacy rule: each forbidden declaration is refused, naming its field and its rule."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from vigie_registry.declaration import CameraDeclaration, CameraStatusName, redact_url
from vigie_registry.rules import check_declaration, check_transition, forbidden_processing

from .conftest import NOW, declaration, security_declaration


def parsed(body: dict[str, Any]) -> CameraDeclaration:
    return CameraDeclaration.model_validate({k: v for k, v in body.items() if k != "source"})


def violations(body: dict[str, Any], status: CameraStatusName = "draft") -> list[tuple[tuple[Any, ...], str]]:
    return [(v.field, v.rule_name) for v in check_declaration(parsed(body), status, NOW)]


def test_the_reference_declarations_are_accepted_even_active() -> None:
    assert violations(declaration(), "active") == []
    assert violations(security_declaration(), "active") == []
    occupancy = declaration(
        purpose="occupancy_statistics",
        lines=[],
        zones=[{"id": "square", "polygon": [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]], "classes": ["person"]}],
        outputs=["zone_occupancy"],
    )
    assert violations(occupancy, "active") == []


@pytest.mark.parametrize(
    ("changes", "field", "rule"),
    [
        # Rule 1: one purpose from the closed list; the purpose decides the outputs.
        ({"purpose": "marketing_study"}, ("purpose",), "docs/privacy.md rule 25"),
        ({"purpose": "parking_enforcement"}, ("purpose",), "docs/privacy.md rule 1"),
        ({"purpose": "face_recognition"}, ("purpose",), "docs/privacy.md rule 24"),
        ({"outputs": ["zone_occupancy"]}, ("outputs", 0), "docs/privacy.md rule 1"),
        ({"outputs": ["heat_map"]}, ("outputs", 0), "docs/privacy.md rule 1"),
        ({"outputs": []}, ("outputs",), "docs/privacy.md rule 1"),
        # Rule 24: identification.
        ({"outputs": ["line_crossings", "face_recognition"]}, ("outputs", 1), "docs/privacy.md rule 24"),
        ({"outputs": ["biometric_identification"]}, ("outputs", 0), "docs/privacy.md rule 24"),
        ({"outputs": ["licence plate reading"]}, ("outputs", 0), "docs/privacy.md rule 24"),
        ({"object_classes": ["face"]}, ("object_classes", 0), "docs/privacy.md rule 24"),
        # Rule 25: characterisation, re-identification, sound.
        ({"outputs": ["age_estimation"]}, ("outputs", 0), "docs/privacy.md rule 25"),
        ({"outputs": ["gender"]}, ("outputs", 0), "docs/privacy.md rule 25"),
        ({"outputs": ["emotion-detection"]}, ("outputs", 0), "docs/privacy.md rule 25"),
        ({"outputs": ["clothing_colour"]}, ("outputs", 0), "docs/privacy.md rule 25"),
        ({"outputs": ["demographics"]}, ("outputs", 0), "docs/privacy.md rule 25"),
        ({"object_classes": ["child"]}, ("object_classes", 0), "docs/privacy.md rule 25"),
        ({"outputs": ["cross_camera_matching"]}, ("outputs", 0), "docs/privacy.md rule 25"),
        ({"outputs": ["reidentification"]}, ("outputs", 0), "docs/privacy.md rule 25"),
        ({"outputs": ["noise_level"]}, ("outputs", 0), "docs/privacy.md rule 25"),
        ({"audio": True}, ("audio",), "docs/privacy.md rule 25"),
        # Rule 13: no trajectories; rule 6: no images.
        ({"outputs": ["trajectories"]}, ("outputs", 0), "docs/privacy.md rule 13"),
        ({"outputs": ["origin-destination matrix"]}, ("outputs", 0), "docs/privacy.md rule 13"),
        ({"outputs": ["snapshots"]}, ("outputs", 0), "docs/privacy.md rule 6"),
        # Rule 7: the classes and the geometry follow the purpose.
        ({"object_classes": ["car"]}, ("object_classes", 0), "docs/privacy.md rule 7"),
        ({"object_classes": ["dog"]}, ("object_classes", 0), "docs/privacy.md rule 7"),
        ({"object_classes": []}, ("object_classes",), "docs/privacy.md rule 7"),
        (
            {"lines": [{"id": "gate", "start": [0.1, 0.5], "end": [0.9, 0.5], "classes": ["truck"]}]},
            ("lines", 0, "classes", 0),
            "docs/privacy.md rule 7",
        ),
        (
            {"zones": [{"id": "z", "polygon": [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]}]},
            ("zones",),
            "docs/privacy.md rule 7",
        ),
        (
            {"purpose": "occupancy_statistics", "zones": []},
            ("lines",),
            "docs/privacy.md rule 7",
        ),
        # Rule 5: security events only with security_events.
        (
            {"security_events": security_declaration()["security_events"]},
            ("security_events",),
            "docs/privacy.md rule 5",
        ),
        ({"purpose": "security_events", "lines": []}, ("security_events",), "docs/privacy.md rule 5"),
        # Rules 8, 11, 14: beyond the protective defaults only with a justification; hard limits.
        ({"reporting_window_s": 600}, ("reporting_window_justification",), "docs/privacy.md rule 11"),
        ({"sample_fps": 12.0}, ("sample_fps_justification",), "docs/privacy.md rule 8"),
        (
            {"retention": {"track_max_s": 3600}},
            ("retention", "track_justification"),
            "docs/privacy.md rule 14",
        ),
        (
            {"retention": {"track_max_s": 2 * 86_400, "track_justification": "long stays in a car park"}},
            ("retention", "track_max_s"),
            "docs/privacy.md rule 14",
        ),
        (
            {"retention": {"statistics_days": 800}},
            ("retention", "statistics_justification"),
            "docs/privacy.md rule 8",
        ),
        (
            {
                "retention": {
                    "statistics_days": 5000,
                    "statistics_justification": "long-term mobility studies",
                }
            },
            ("retention", "statistics_days"),
            "docs/privacy.md rule 8",
        ),
        # Rule 15: objection only off under a legal text.
        ({"objection": {"enabled": False}}, ("objection", "enabled"), "docs/privacy.md rule 15"),
    ],
)
def test_a_forbidden_declaration_is_refused_naming_its_rule(
    changes: dict[str, Any], field: tuple[Any, ...], rule: str
) -> None:
    found = violations(declaration(**changes))
    assert (field, rule) in found, found


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"detections": ["abandoned_object", "face_match"]}, ("security_events", "detections", 1)),
        ({"detections": ["loitering"]}, ("security_events", "detections", 0)),
        ({"legal_text": "  "}, ("security_events", "legal_text")),
        ({"authorisation_reference": ""}, ("security_events", "authorisation_reference")),
        (
            {"authorised_until": (NOW - timedelta(days=2)).isoformat()},
            ("security_events", "authorised_until"),
        ),
        (
            {"authorised_until": (NOW + timedelta(days=60)).isoformat()},
            ("security_events", "authorised_until"),
        ),
        ({"authorised_until": (NOW - timedelta(hours=1)).isoformat()}, ("status",)),
    ],
)
def test_security_events_need_the_decree_list_a_legal_text_and_a_current_window(
    changes: dict[str, Any], field: tuple[Any, ...]
) -> None:
    body = security_declaration()
    body["security_events"] = {**body["security_events"], **changes}
    found = violations(body, "active")
    assert any(f == field for f, _ in found), found
    face = [rule for f, rule in found if f == ("security_events", "detections", 1)]
    assert face in ([], ["docs/privacy.md rule 24"])
    assert all(rule in ("docs/privacy.md rule 5", "docs/privacy.md rule 24") for _, rule in found)


def test_a_camera_cannot_be_activated_without_a_dpia_reference() -> None:
    body = declaration(legal={"basis": "public_task", "dpia_reference": " "})
    assert violations(body, "draft") == []
    assert violations(body, "paused") == []
    assert violations(body, "active") == [(("legal", "dpia_reference"), "docs/privacy.md rule 3")]


def test_objection_may_be_off_only_under_a_legal_restriction() -> None:
    body = declaration(
        objection={"enabled": False},
        legal={
            "basis": "public_task",
            "dpia_reference": "D-1",
            "rights_restriction_legal_text": "Loi X art. 23",
        },
    )
    assert violations(body, "active") == []


def test_justified_exceptions_are_accepted() -> None:
    body = declaration(
        reporting_window_s=600,
        reporting_window_justification="peak-hour crossings planning for the tram works",
        sample_fps=10.0,
        sample_fps_justification="fast cyclists cross the line between two frames at 5 fps",
        retention={"track_max_s": 1800, "track_justification": "slow queues at the market entrance"},
    )
    assert violations(body, "active") == []


def test_the_message_names_the_rule_and_what_it_says() -> None:
    [violation] = check_declaration(parsed(declaration(audio=True)), "draft", NOW)
    error = violation.as_error()
    assert error["loc"] == ["body", "audio"]
    assert error["rule"] == "docs/privacy.md rule 25"
    assert "no sound" in str(error["msg"])
    assert error["type"] == "privacy_rule"


@pytest.mark.parametrize(
    ("term", "rule"),
    [
        ("FaceRecognition", 24),
        ("face recognition", 24),
        ("Reconnaissance faciale", 24),
        ("âge", 25),
        ("Agenda", None),
        ("licence-plate", 24),
        ("re-identification", 25),
        ("person_on_ground", None),
        ("passage_count", None),
        ("line_crossings", None),
    ],
)
def test_forbidden_processing_recognises_names_not_substrings(term: str, rule: int | None) -> None:
    found = forbidden_processing(term)
    assert (found[0] if found else None) == rule


def test_an_unknown_processing_is_refused_anyway_by_the_closed_list() -> None:
    assert violations(declaration(outputs=["line_crossings", "Heatmap"])) == [
        (("outputs", 1), "docs/privacy.md rule 1")
    ]


@pytest.mark.parametrize(
    ("current", "wanted", "allowed"),
    [
        ("draft", "active", True),
        ("active", "paused", True),
        ("paused", "active", True),
        ("active", "retired", True),
        ("active", "draft", False),
        ("retired", "active", False),
    ],
)
def test_status_transitions(current: CameraStatusName, wanted: CameraStatusName, allowed: bool) -> None:
    assert (check_transition(current, wanted) is None) is allowed


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lines": [{"id": "l", "start": [0.5, 0.5], "end": [0.501, 0.5]}]}, "at least 0.01 apart"),
        ({"zones": [{"id": "z", "polygon": [[0, 0], [1, 1], [1, 0], [0, 1]]}]}, "edges cross"),
        ({"masks": [{"id": "m", "polygon": [[0, 0], [0.5, 0.5], [1, 1]]}]}, "encloses no area"),
        ({"reporting_window_s": 7000}, "must divide a day"),
        ({"lines": [{"id": "a", "start": [0, 0], "end": [1, 1]}] * 2}, "unique"),
        ({"dwell_buckets_s": [120, 30]}, "increasing"),
        ({"lines": [{"id": "bad id", "start": [0, 0], "end": [1, 1]}]}, "valid identifier"),
        ({"controller": {"name": "Ville"}}, "e-mail address or a URL"),
    ],
)
def test_shapes_are_checked_like_the_anonymiser_checks_them(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parsed(declaration(**changes))


def test_source_urls_are_redacted() -> None:
    assert redact_url("rtsp://viewer:s3cret@10.0.0.12:554/stream?token=abc&x=1") == (
        "rtsp://viewer:***@10.0.0.12:554/stream?token=***&x=***"
    )
    assert redact_url("http://cam.example/mjpeg") == "http://cam.example/mjpeg"
    assert redact_url("rtsp://[::1]:8554/s") == "rtsp://[::1]:8554/s"
