"""The transparency page's parts without HTTP: the catalogues of both languages, language negotiation,
form tokens, the cross-site check and the map."""

from __future__ import annotations

import string
from typing import Literal
from zoneinfo import ZoneInfo

import pytest

from vigie_registry.objections import cross_site
from vigie_registry.public.drawing import MapPoint, camera_map, frame_points, scene_diagram
from vigie_registry.public.form_token import FormTokenProblem, FormTokens
from vigie_registry.public.i18n import LANGUAGES, catalogue, negotiate
from vigie_registry.purposes import OBJECT_CLASSES, OUTPUTS, PURPOSES, SECURITY_EVENT_KINDS


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_both_catalogues_say_the_same_things_with_the_same_placeholders() -> None:
    fr, en = catalogue("fr"), catalogue("en")
    assert set(fr.strings) == set(en.strings)
    for key in fr.strings:
        assert _fields(fr(key)) == _fields(en(key)), key
        assert fr(key).strip(), key
        assert en(key).strip(), key


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_purpose_output_class_basis_and_detection_is_translated(language: str) -> None:
    t = catalogue(language)  # type: ignore[arg-type]
    keys = (
        [f"purpose.{p}.title" for p in PURPOSES]
        + [f"purpose.{p}.description" for p in PURPOSES]
        + [f"output.{o}" for o in OUTPUTS]
        + [f"class.{c}" for c in OBJECT_CLASSES]
        + [f"basis.{b}" for b in ("public_task", "legitimate_interest", "legal_obligation")]
        + [f"detection.{d}" for d in SECURITY_EVENT_KINDS]
        + [f"direction.{d}" for d in ("both", "left_to_right", "right_to_left")]
        + [f"state.{s}" for s in ("analysing", "paused_by_objection", "off")]
        + [f"format.months.{m}" for m in range(12)]
    )
    assert [k for k in keys if not t.has(k)] == []


def test_times_and_durations_are_written_as_each_language_does() -> None:
    fr, en = catalogue("fr"), catalogue("en")
    paris = ZoneInfo("Europe/Paris")
    moment = 1_780_315_200  # 2026-06-01 12:00 UTC, 14:00 in Paris (summer time)
    assert fr.datetime(moment, paris) == "1 juin 2026 à 14 h 00"
    assert en.datetime(moment, paris) == "1 June 2026 at 14:00"
    assert en.time(moment + 5 * 60, ZoneInfo("UTC")) == "12:05"
    assert [fr.duration(s) for s in (60, 900, 3600, 7200, 86_400, 365 * 86_400, 90)] == [
        "1 minute",
        "15 minutes",
        "1 heure",
        "2 heures",
        "1 jour",
        "365 jours",
        "90 secondes",
    ]
    assert en.duration(1200) == "20 minutes"


@pytest.mark.parametrize(
    ("query", "header", "expected"),
    [
        ("en", "fr", "en"),
        (None, "en-US,en;q=0.9,fr;q=0.8", "en"),
        (None, "fr;q=0.4,en;q=0.6", "en"),
        (None, "de, en;q=0.1", "en"),
        (None, "de, ja", "fr"),
        (None, "en;q=0", "fr"),
        (None, "*", "fr"),
        (None, "en;q=abc, fr", "fr"),
        ("xx", None, "fr"),
        (None, "," * 100, "fr"),
    ],
)
def test_the_language_is_negotiated(query: str | None, header: str | None, expected: str) -> None:
    assert negotiate(query, header, "fr") == expected


# -- form tokens ----------------------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1_780_315_200.0

    def __call__(self) -> float:
        return self.now


def test_a_form_token_is_good_for_its_camera_and_client_until_it_expires() -> None:
    clock = _Clock()
    tokens = FormTokens.derived_from(b"r" * 32, 600, clock)
    token = tokens.issue("north-gate", "192.0.2.10")
    assert tokens.check(token, "north-gate", "192.0.2.10") is None
    assert tokens.check(token, "south-gate", "192.0.2.10") is FormTokenProblem.FORGED
    assert tokens.check(token, "north-gate", "198.51.100.7") is FormTokenProblem.FORGED
    # Another replica with the same receipt key accepts it; a registry with another key does not.
    assert FormTokens.derived_from(b"r" * 32, 600, clock).check(token, "north-gate", "192.0.2.10") is None
    other = FormTokens.derived_from(b"s" * 32, 600, clock)
    assert other.check(token, "north-gate", "192.0.2.10") is FormTokenProblem.FORGED
    clock.now += 600
    assert tokens.check(token, "north-gate", "192.0.2.10") is None
    clock.now += 1
    assert tokens.check(token, "north-gate", "192.0.2.10") is FormTokenProblem.EXPIRED
    # Two tokens for the same page differ (a nonce), and neither says anything about the address.
    assert tokens.issue("north-gate", "192.0.2.10") != tokens.issue("north-gate", "192.0.2.10")
    assert "192" not in token.split(".", 1)[1]


@pytest.mark.parametrize("token", ["", "abc", "1.2.3", "x.0123456789abcdef." + "0" * 64, "1.zz." + "0" * 64])
def test_malformed_tokens_are_refused(token: str) -> None:
    tokens = FormTokens(b"k" * 32, 600)
    assert tokens.check(token, "north-gate", "192.0.2.10") is FormTokenProblem.MALFORMED


def test_a_token_issued_in_the_future_is_refused_beyond_clock_slack() -> None:
    clock = _Clock()
    tokens = FormTokens(b"k" * 32, 600, clock)
    token = tokens.issue("north-gate", "c")
    clock.now -= 61
    assert tokens.check(token, "north-gate", "c") is FormTokenProblem.EXPIRED


@pytest.mark.parametrize(
    ("fetch_site", "origin", "refused"),
    [
        ("same-origin", None, False),
        ("same-origin", "https://evil.example", False),  # fetch metadata wins: the browser knows
        ("cross-site", None, True),
        ("same-site", None, True),
        ("none", None, True),
        (None, None, False),
        (None, "https://cameras.ville.example", False),
        (None, "http://cameras.ville.example", False),
        (None, "https://evil.example", True),
        (None, "https://cameras.ville.example.evil.example", True),
        (None, "null", True),
    ],
)
def test_cross_site_posts_are_recognised(fetch_site: str | None, origin: str | None, refused: bool) -> None:
    assert cross_site(fetch_site, origin, ["cameras.ville.example"]) is refused


# -- the map --------------------------------------------------------------------------------------------


def test_the_map_keeps_north_up_and_distances_in_proportion() -> None:
    # Three cameras in Lyon: B 1 km east of A, C 500 m north of A (approximately).
    a = MapPoint(1, 45.7600, 4.8300, "analysing")
    b = MapPoint(2, 45.7600, 4.8300 + 1000 / (111_195 * 0.6977), "paused_by_objection")
    c = MapPoint(3, 45.7600 + 500 / 111_195, 4.8300, "off")
    drawn = camera_map([a, b, c], width=640, height=400, margin=36)
    ma, mb, mc = drawn.markers
    assert mb.x > ma.x
    assert mb.y == pytest.approx(ma.y, abs=0.5)
    assert mc.y < ma.y  # north is up
    assert mc.x == pytest.approx(ma.x, abs=0.5)
    # 1 km east spans twice the pixels of 500 m north: one scale for both axes.
    assert (mb.x - ma.x) == pytest.approx(2 * (ma.y - mc.y), rel=0.02)
    for marker in drawn.markers:
        assert 36 <= marker.x <= 640 - 36
        assert 36 <= marker.y <= 400 - 36
    assert [m.state for m in drawn.markers] == ["analysing", "paused_by_objection", "off"]
    assert drawn.scale is not None
    metres = {"100 m": 100, "200 m": 200, "500 m": 500, "1 km": 1000}[drawn.scale.label]
    assert drawn.scale.length == pytest.approx(metres * (mb.x - ma.x) / 1000, rel=0.02)


def test_one_camera_or_none_still_draws() -> None:
    single = camera_map([MapPoint(1, 45.0, 4.0, "analysing")], width=600, height=400)
    assert (single.markers[0].x, single.scale) == (300, None)
    assert camera_map([]).markers == ()


def test_frame_points_scale_normalised_coordinates() -> None:
    assert frame_points([(0.0, 0.0), (1.0, 0.5)], 320, 180) == "0.0,0.0 320.0,90.0"


# -- the diagram of a camera's picture ------------------------------------------------------------------


def _tip(head: str) -> tuple[float, float]:
    x, y = head.split()[0].split(",")
    return float(x), float(y)


def test_the_diagram_takes_the_pictures_proportions() -> None:
    assert (scene_diagram([], [], []).width, scene_diagram([], [], []).height) == (320.0, 180.0)
    four_three = scene_diagram([], [], [[(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)]], (640, 480))
    assert (four_three.width, four_three.height) == (320.0, 240.0)
    assert four_three.masks == ("0.0,0.0 320.0,0.0 320.0,240.0",)
    assert scene_diagram([], [], [], (0, 0)).height == 180.0  # no size: the usual frame


@pytest.mark.parametrize(
    ("directions", "tips"),
    [
        # Walking from start to end along y = 0.5 (rightwards on the picture), the right-hand side is below.
        ("left_to_right", [(160.0, 110.0)]),
        ("right_to_left", [(160.0, 70.0)]),
        ("both", [(160.0, 110.0), (160.0, 70.0)]),
    ],
)
def test_each_line_shows_the_directions_it_counts(
    directions: Literal["both", "left_to_right", "right_to_left"], tips: list[tuple[float, float]]
) -> None:
    [line] = scene_diagram([("gate", (0.1, 0.5), (0.9, 0.5), directions)], [], []).lines
    assert line.points == "32.0,90.0 288.0,90.0"
    assert line.arrow == "160.0,70.0 160.0,110.0"  # across the middle
    assert [_tip(head) for head in line.heads] == tips
    # Reversed, the same line's right-hand side is above: the arrow follows the declaration, not the screen.
    [back] = scene_diagram([("gate", (0.9, 0.5), (0.1, 0.5), "left_to_right")], [], []).lines
    assert [_tip(head) for head in back.heads] == [(160.0, 70.0)]


def test_names_stay_inside_the_frame_and_zones_are_named_at_their_centre() -> None:
    diagram = scene_diagram(
        [("edge", (0.0, 0.0), (0.0, 1.0), "both")],
        [("square", [(0.5, 0.5), (0.9, 0.5), (0.9, 0.9), (0.5, 0.9)])],
        [],
    )
    [line] = diagram.lines
    assert 12 <= line.label[0] <= 320 - 12
    assert 12 <= line.label[1] <= 180 - 12
    [zone] = diagram.zones
    assert zone.label == (224.0, 126.0)
    assert zone.points == "160.0,90.0 288.0,90.0 288.0,162.0 160.0,162.0"
