import numpy as np
import pytest

from vigie_inference.letterbox import LetterboxTransform, letterbox

SIZE = 416
FILL = 114


def _picture(height: int, width: int, seed: int = 0) -> np.ndarray:
    # Values 0..100 so that no picture pixel equals the fill value by chance.
    return np.random.default_rng(seed).integers(0, 100, (height, width, 3), dtype=np.uint8)


def _with_white_rectangle(height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    picture = np.zeros((height, width, 3), dtype=np.uint8)
    x1, y1, x2, y2 = box
    picture[y1:y2, x1:x2] = 255
    return picture


def _bright_extent(model_input: np.ndarray) -> np.ndarray:
    """x1, y1, x2, y2 (exclusive ends) of the pixels brighter than the fill."""
    ys, xs = np.nonzero(model_input[:, :, 0] > 200)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)


def test_a_frame_from_ingest_is_padded_centred_without_resizing() -> None:
    picture = _picture(234, 416)

    model_input, transform = letterbox(picture)

    assert model_input.shape == (SIZE, SIZE, 3)
    assert model_input.dtype == np.uint8
    assert transform == LetterboxTransform(
        scale=1.0, pad_x=0, pad_y=91, width=416, height=234, content_width=416, content_height=234
    )
    np.testing.assert_array_equal(model_input[91:325], picture)
    assert (model_input[:91] == FILL).all()
    assert (model_input[325:] == FILL).all()


def test_odd_sizes_put_the_extra_pixel_of_padding_at_the_bottom_right() -> None:
    picture = _picture(233, 301)

    model_input, transform = letterbox(picture)

    assert (transform.pad_x, transform.pad_y) == (57, 91)
    np.testing.assert_array_equal(model_input[91:324, 57:358], picture)
    assert (model_input[:91] == FILL).all()
    assert (model_input[324:] == FILL).all()  # 92 rows
    assert (model_input[:, :57] == FILL).all()
    assert (model_input[:, 358:] == FILL).all()  # 58 columns


def test_an_already_square_picture_is_copied_unchanged() -> None:
    picture = _picture(SIZE, SIZE)

    model_input, transform = letterbox(picture)

    np.testing.assert_array_equal(model_input, picture)
    assert (transform.scale, transform.pad_x, transform.pad_y) == (1.0, 0, 0)


@pytest.mark.parametrize(
    ("height", "width", "content"),
    [(720, 1280, (416, 234)), (1280, 720, (234, 416)), (800, 800, (416, 416)), (240, 417, (416, 239))],
)
def test_a_picture_too_large_is_shrunk_keeping_its_aspect_ratio(
    height: int, width: int, content: tuple[int, int]
) -> None:
    model_input, transform = letterbox(_picture(height, width))

    assert (transform.content_width, transform.content_height) == content
    assert transform.scale == pytest.approx(min(SIZE / width, SIZE / height))
    assert (transform.width, transform.height) == (width, height)
    assert model_input.shape == (SIZE, SIZE, 3)


@pytest.mark.parametrize(
    ("height", "width", "box"),
    [
        (234, 416, (100, 50, 180, 200)),
        (233, 301, (0, 0, 40, 233)),
        (720, 1280, (640, 360, 960, 700)),
        (1280, 720, (10, 900, 300, 1270)),
        (SIZE, SIZE, (1, 2, 3, 4)),
    ],
)
def test_a_box_drawn_in_the_picture_maps_to_the_model_and_back(
    height: int, width: int, box: tuple[int, int, int, int]
) -> None:
    model_input, transform = letterbox(_with_white_rectangle(height, width, box))
    source_box = np.array([box], dtype=np.float32) / np.array([width, height, width, height])

    found_in_model = _bright_extent(model_input)
    predicted_in_model = transform.to_model(source_box)[0]
    back = transform.to_normalised(found_in_model[None, :])[0]

    # Within a model pixel (resizing blurs the rectangle's edge by one pixel), in both directions.
    np.testing.assert_allclose(found_in_model, predicted_in_model, atol=1.01)
    model_pixel = 1.0 / np.array([transform.content_width, transform.content_height] * 2)
    assert (np.abs(back - source_box[0]) <= 1.01 * model_pixel).all()


def test_to_normalised_inverts_to_model_exactly() -> None:
    _, transform = letterbox(_picture(720, 1280))
    boxes = np.random.default_rng(1).uniform(0.0, 1.0, (50, 4)).astype(np.float32)
    boxes[:, 2:] = np.maximum(boxes[:, :2], boxes[:, 2:])

    np.testing.assert_allclose(transform.to_normalised(transform.to_model(boxes)), boxes, atol=1e-6)


def test_boxes_on_the_padding_are_clipped_to_the_picture() -> None:
    _, transform = letterbox(_picture(234, 416))  # pad_y = 91

    normalised = transform.to_normalised(np.array([[-10.0, 0.0, 500.0, 100.0], [0.0, 0.0, 416.0, 50.0]]))

    np.testing.assert_allclose(normalised[0], [0.0, 0.0, 1.0, 9.0 / 234.0], atol=1e-6)
    np.testing.assert_allclose(normalised[1], [0.0, 0.0, 1.0, 0.0])
    assert normalised.dtype == np.float32


def test_writes_into_a_batch_slot_overwriting_what_was_there() -> None:
    batch = np.full((3, SIZE, SIZE, 3), 7, dtype=np.uint8)
    picture = _picture(234, 416)

    written, _ = letterbox(picture, out=batch[1])

    assert np.shares_memory(written, batch)
    assert (batch[1, :91] == FILL).all()
    assert (batch[1, 325:] == FILL).all()
    np.testing.assert_array_equal(batch[1, 91:325], picture)
    assert (batch[0] == 7).all()
    assert (batch[2] == 7).all()


def test_upscale_enlarges_a_small_picture_only_when_asked() -> None:
    small = _picture(117, 208)

    _, kept = letterbox(small)
    _, enlarged = letterbox(small, upscale=True)

    assert (kept.content_width, kept.content_height, kept.scale) == (208, 117, 1.0)
    assert (enlarged.content_width, enlarged.content_height, enlarged.scale) == (416, 234, 2.0)


def test_other_size_and_fill() -> None:
    model_input, transform = letterbox(_picture(100, 200), size=320, fill=0)

    assert model_input.shape == (320, 320, 3)
    assert (transform.pad_x, transform.pad_y) == (60, 110)
    assert (model_input[:110] == 0).all()


@pytest.mark.parametrize(
    ("pixels", "message"),
    [
        (np.zeros((10, 10), dtype=np.uint8), "HxWx3 uint8"),
        (np.zeros((10, 10, 4), dtype=np.uint8), "HxWx3 uint8"),
        (np.zeros((10, 10, 3), dtype=np.float32), "HxWx3 uint8"),
        (np.zeros((0, 10, 3), dtype=np.uint8), "empty"),
    ],
)
def test_rejects_what_is_not_a_picture(pixels: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        letterbox(pixels)


def test_rejects_an_output_buffer_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="out"):
        letterbox(_picture(10, 10), out=np.zeros((SIZE, SIZE, 4), dtype=np.uint8))


@pytest.mark.parametrize(
    ("height", "width", "shape"),
    [
        (234, 416, (288, 416)),  # 16:9, what ingest sends: 91 rows of padding above and below become 27
        (312, 416, (352, 416)),  # 4:3
        (416, 234, (416, 288)),  # portrait
        (416, 416, (416, 416)),
        (720, 1280, (288, 416)),  # shrunk to 416x234 first
        (10, 10, (32, 32)),
        (33, 33, (96, 96)),
    ],
)
def test_a_model_of_any_size_gets_the_square_less_whole_bands_of_padding(
    height: int, width: int, shape: tuple[int, int]
) -> None:
    from vigie_inference.letterbox import input_shape

    assert input_shape(height, width, SIZE, 32) == shape
    assert input_shape(height, width, SIZE) == (SIZE, SIZE)
    box = (width // 4, height // 4, 3 * width // 4, 3 * height // 4)
    model_input, transform = letterbox(_with_white_rectangle(height, width, box), SIZE, multiple=32)
    assert model_input.shape == (*shape, 3)
    # The picture lies centred; what the model sees maps back to the picture as with the square input.
    found = transform.to_normalised(_bright_extent(model_input)[None])[0]
    expected = np.array(box, np.float32) / [width, height, width, height]
    np.testing.assert_allclose(
        found, expected, atol=2 / min(transform.content_width, transform.content_height)
    )
    assert transform.pad_y == (shape[0] - transform.content_height) // 2
    assert (model_input[: transform.pad_y] == FILL).all()
    # Where it lies in the square, less whole bands of 32: the same place relative to the network's grid.
    square, in_square = letterbox(_with_white_rectangle(height, width, box), SIZE)
    assert (in_square.pad_y - transform.pad_y) % 32 == 0
    assert (in_square.pad_x - transform.pad_x) % 32 == 0
    top, left = in_square.pad_y - transform.pad_y, in_square.pad_x - transform.pad_x
    np.testing.assert_array_equal(square[top : top + shape[0], left : left + shape[1]], model_input)


def test_a_multiple_must_divide_the_size() -> None:
    with pytest.raises(ValueError, match="multiple"):
        letterbox(_picture(10, 10), SIZE, multiple=30)
