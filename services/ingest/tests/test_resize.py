import av
import numpy as np
import pytest

from vigie_ingest import FrameResizer, fit_within


@pytest.mark.parametrize(
    ("source", "fitted"),
    [
        ((640, 360), (416, 234)),
        ((360, 640), (234, 416)),
        ((1920, 1080), (416, 234)),
        ((416, 416), (416, 416)),
        ((768, 576), (416, 312)),
        ((320, 240), (416, 312)),  # small sources are scaled up too
        ((160, 96), (416, 250)),
        ((10000, 10), (416, 1)),
    ],
)
def test_fit_within_keeps_the_aspect_ratio(source: tuple[int, int], fitted: tuple[int, int]) -> None:
    assert fit_within(*source) == fitted


def test_fit_within_other_targets() -> None:
    assert fit_within(640, 360, 640) == (640, 360)
    assert fit_within(640, 480, 320) == (320, 240)


@pytest.mark.parametrize(("width", "height", "target"), [(0, 10, 416), (10, -1, 416), (10, 10, 0)])
def test_fit_within_rejects_empty_sizes(width: int, height: int, target: int) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        fit_within(width, height, target)


def test_resizer_gives_model_sized_rgb(videos) -> None:
    source = videos.picture(0b1010_0101, 640, 360)
    frame = av.VideoFrame.from_ndarray(source, format="rgb24").reformat(format="yuv420p")
    pixels = FrameResizer(416).to_rgb(frame)
    assert pixels.shape == (234, 416, 3)
    assert pixels.dtype == np.uint8
    assert pixels.flags.c_contiguous
    assert not pixels.flags.writeable
    red, green, blue = videos.bar_colours(pixels)
    assert red[0] > 200
    assert red[1] < 50
    assert red[2] < 50
    assert green[1] > 200
    assert green[0] < 50
    assert green[2] < 50
    assert blue[2] > 200
    assert blue[0] < 50
    assert blue[1] < 50
    assert videos.index_of(pixels) == 0b1010_0101


def test_resizer_follows_a_change_of_source_size(videos) -> None:
    resizer = FrameResizer(416)
    for width, height, expected in [(640, 360, (234, 416, 3)), (300, 400, (416, 312, 3))]:
        frame = av.VideoFrame.from_ndarray(videos.picture(3, width, height), format="rgb24")
        assert resizer.to_rgb(frame).shape == expected


def test_odd_widths_are_contiguous(videos) -> None:
    frame = av.VideoFrame.from_ndarray(videos.picture(1, 333, 333), format="rgb24")
    pixels = FrameResizer(417).to_rgb(frame)
    assert pixels.shape == (417, 417, 3)
    assert pixels.flags.c_contiguous
