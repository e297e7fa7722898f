"""Privacy masks: drawn once per picture size, generous at their edges, blanking nothing else."""

import numpy as np
import pytest

from vigie_core.masks import NO_MASKS, PrivacyMasks

LEFT_HALF = [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]


def test_a_mask_blanks_its_area_and_nothing_else() -> None:
    pixels = np.full((250, 416, 3), 200, np.uint8)
    masks = PrivacyMasks([LEFT_HALF])
    out = masks.blank(pixels)
    assert out is pixels, "a writable array is blanked in place"
    assert not pixels[:, :208].any(), "the left half is black"
    assert (pixels[:, 210:] == 200).all(), "the right half is untouched"


def test_partly_covered_pixels_are_blanked_too() -> None:
    # A triangle whose edges cut through pixels: every pixel it touches is blanked, so the raster covers
    # at least the polygon's exact area.
    masks = PrivacyMasks([[(0.1, 0.1), (0.9, 0.13), (0.43, 0.97)]])
    raster = masks.raster(97, 131)
    ys, xs = np.mgrid[0:97, 0:131]
    # Pixel centres strictly inside the triangle (barycentric test) are all masked.
    a, b, c = (
        np.array([0.1 * 131, 0.1 * 97]),
        np.array([0.9 * 131, 0.13 * 97]),
        np.array([0.43 * 131, 0.97 * 97]),
    )

    def side(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        return (q[0] - p[0]) * (ys - p[1]) - (q[1] - p[1]) * (xs - p[0])

    inside = (side(a, b) <= 0) & (side(b, c) <= 0) & (side(c, a) <= 0)
    inside |= (side(a, b) >= 0) & (side(b, c) >= 0) & (side(c, a) >= 0)
    assert raster[inside].all()
    assert raster.sum() < inside.sum() * 1.3, "generous at the edges only"


def test_a_read_only_frame_is_copied_and_rasters_are_kept_per_size() -> None:
    frozen = np.full((10, 20, 3), 255, np.uint8)
    frozen.flags.writeable = False
    masks = PrivacyMasks([LEFT_HALF])
    blanked = masks.blank(frozen)
    assert blanked is not frozen
    assert (frozen == 255).all()
    assert not blanked[:, :9].any()
    assert masks.raster(10, 20) is masks.raster(10, 20)
    assert masks.raster(20, 10).shape == (20, 10)
    assert not masks.raster(10, 20).flags.writeable


def test_mask_sets_compare_by_their_polygons() -> None:
    assert PrivacyMasks([LEFT_HALF]) == PrivacyMasks([tuple(LEFT_HALF)])
    assert PrivacyMasks([LEFT_HALF]) != NO_MASKS
    assert not NO_MASKS
    pixels = np.ones((4, 4, 3), np.uint8)
    assert NO_MASKS.blank(pixels) is pixels
    assert pixels.all()


@pytest.mark.parametrize(
    ("polygon", "message"),
    [([(0.0, 0.0), (1.0, 0.0)], "at least 3 points"), ([(0, 0), (1.5, 0), (0, 1)], "normalised")],
)
def test_an_impossible_mask_is_refused_by_name(polygon: list[tuple[float, float]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PrivacyMasks([polygon])
