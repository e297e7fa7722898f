import pytest

from vigie_anonymiser.geometry import (
    Anchor,
    CountingLine,
    Zone,
    anchor_point,
    is_simple_polygon,
    polygon_area,
)


def test_the_right_hand_side_is_positive_in_image_coordinates() -> None:
    eastwards = CountingLine("l", (0.0, 0.5), (1.0, 0.5))
    assert eastwards.signed_distance((0.5, 0.7)) == pytest.approx(0.2)  # below: on your right walking east
    assert eastwards.signed_distance((0.5, 0.2)) == pytest.approx(-0.3)
    downwards = CountingLine("l", (0.5, 0.0), (0.5, 1.0))
    assert downwards.signed_distance((0.2, 0.5)) > 0  # walking down the picture, your right is its left


def test_a_step_counts_only_between_the_line_ends() -> None:
    line = CountingLine("l", (0.2, 0.5), (0.8, 0.5))

    def crosses(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return line.crosses_segment(a, b, line.signed_distance(a), line.signed_distance(b))

    assert crosses((0.5, 0.4), (0.5, 0.6))
    assert crosses((0.2, 0.4), (0.0, 0.6)) is False  # passes beside the segment's start
    assert crosses((0.5, 0.4), (0.5, 0.45)) is False  # stays on one side


def test_the_band_follows_the_box_extent_across_the_line() -> None:
    horizontal = CountingLine("h", (0.0, 0.5), (1.0, 0.5))
    vertical = CountingLine("v", (0.5, 0.0), (0.5, 1.0))
    assert horizontal.band(0.1, 0.3, 0.2, 0.0) == pytest.approx(
        0.06
    )  # height counts across a horizontal line
    assert vertical.band(0.1, 0.3, 0.2, 0.0) == pytest.approx(0.02)  # width across a vertical one
    assert vertical.band(0.001, 0.001, 0.2, 0.01) == 0.01  # never below the floor


def test_zero_length_line_is_refused() -> None:
    with pytest.raises(ValueError, match="start and end must differ"):
        CountingLine("l", (0.5, 0.5), (0.5, 0.5))


def test_a_concave_zone_contains_only_its_inside() -> None:
    l_shape = Zone("z", ((0.0, 0.0), (0.6, 0.0), (0.6, 0.2), (0.2, 0.2), (0.2, 0.6), (0.0, 0.6)))
    assert l_shape.contains((0.1, 0.5))
    assert l_shape.contains((0.5, 0.1))
    assert not l_shape.contains((0.4, 0.4))  # in the notch
    assert not l_shape.contains((0.9, 0.9))


def test_polygon_checks() -> None:
    square = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]
    bow_tie = [(0.0, 0.0), (1.0, 1.0), (1.0, 0.0), (0.0, 1.0)]
    assert polygon_area(square) == pytest.approx(1.0)
    assert is_simple_polygon(square)
    assert not is_simple_polygon(bow_tie)


def test_anchors() -> None:
    box = (0.2, 0.2, 0.4, 0.8)
    assert anchor_point(box, Anchor.BOTTOM_CENTRE) == pytest.approx((0.3, 0.8))
    assert anchor_point(box, Anchor.CENTRE) == pytest.approx((0.3, 0.5))
