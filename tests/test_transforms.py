"""Transforms: ToTensor, Normalize, Resize (checked against PIL where they agree), Compose."""

import numpy as np
import pytest
from PIL import Image

import tinymbm as tm
from tinymbm.data import transforms as T
from tinymbm.errors import DTypeError, ShapeError

# ---------------------------------------------------------------- ToTensor


def test_to_tensor_grey_uint8(rng):
    image = rng.integers(0, 256, size=(5, 7), dtype=np.uint8)

    output = T.ToTensor()(image)

    assert isinstance(output, tm.Tensor)
    assert output.shape == (1, 5, 7)
    assert output.dtype == np.float32
    np.testing.assert_allclose(output.data[0], image / 255.0, rtol=1e-6)


def test_to_tensor_channels_first(rng):
    image = rng.integers(0, 256, size=(4, 6, 3), dtype=np.uint8)

    output = T.ToTensor()(image)

    assert output.shape == (3, 4, 6)
    np.testing.assert_allclose(output.data[2], image[:, :, 2] / 255.0, rtol=1e-6)


def test_to_tensor_float_kept(rng):
    image = rng.uniform(-2, 2, size=(3, 3))

    output = T.ToTensor()(image)

    assert output.dtype == np.float64
    np.testing.assert_array_equal(output.data[0], image)


def test_to_tensor_pil_image():
    image = Image.fromarray(np.full((2, 3, 3), 51, np.uint8))

    output = T.ToTensor()(image)

    assert output.shape == (3, 2, 3)
    np.testing.assert_allclose(output.data, 0.2, rtol=1e-6)


def test_to_tensor_rejects_int32():
    with pytest.raises(DTypeError, match="int32"):
        T.ToTensor()(np.zeros((2, 2), np.int32))


def test_to_tensor_rejects_4d():
    with pytest.raises(ShapeError, match=r"got \(1, 2, 2, 1\)"):
        T.ToTensor()(np.zeros((1, 2, 2, 1), np.uint8))


# ---------------------------------------------------------------- Normalize


def test_normalize_per_channel(rng):
    image = tm.tensor(rng.uniform(size=(2, 3, 3)).astype(np.float32))

    output = T.Normalize([0.5, 0.25], [2.0, 0.5])(image)

    assert output.dtype == np.float32
    np.testing.assert_allclose(output.data[0], (image.data[0] - 0.5) / 2.0, rtol=1e-6)
    np.testing.assert_allclose(output.data[1], (image.data[1] - 0.25) / 0.5, rtol=1e-6)


def test_normalize_batch_and_scalar(rng):
    batch = rng.uniform(size=(4, 1, 2, 2))

    output = T.Normalize(0.1307, 0.3081)(batch)

    assert isinstance(output, np.ndarray)
    np.testing.assert_allclose(output, (batch - 0.1307) / 0.3081)


def test_normalize_channel_mismatch():
    with pytest.raises(ShapeError, match="mean has 3 values but the image has 1 channels"):
        T.Normalize([0.1, 0.2, 0.3], [1.0, 1.0, 1.0])(tm.zeros(1, 2, 2))


def test_normalize_zero_std():
    with pytest.raises(ValueError, match="std must be nonzero"):
        T.Normalize([0.0], [0.0])


def test_normalize_rejects_uint8():
    with pytest.raises(DTypeError, match="apply ToTensor first"):
        T.Normalize([0.0], [1.0])(np.zeros((1, 2, 2), np.uint8))


# ---------------------------------------------------------------- Resize

SIZE_CASES = [
    # input (H, W), size, expected (H, W)
    ((20, 40), 10, (10, 20)),
    ((40, 20), 10, (20, 10)),
    ((28, 28), 32, (32, 32)),
    ((28, 28), (14, 7), (14, 7)),
    ((3, 5), [6, 10], (6, 10)),
]


@pytest.mark.parametrize("shape, size, expected", SIZE_CASES)
def test_resize_output_size(shape, size, expected):
    output = T.Resize(size)(np.zeros(shape, np.uint8))

    assert output.shape == expected, f"{shape} -> Resize({size})"


def test_resize_keeps_layout_and_dtype():
    output = T.Resize((4, 6))(np.zeros((2, 3, 3), np.uint8))

    assert output.shape == (4, 6, 3)
    assert output.dtype == np.uint8


def test_resize_tensor_last_two_axes():
    output = T.Resize((4, 6))(tm.zeros(3, 2, 3))

    assert isinstance(output, tm.Tensor)
    assert output.shape == (3, 4, 6)
    assert output.dtype == np.float32


def test_resize_same_size_identity(rng):
    image = rng.uniform(size=(5, 6)).astype(np.float32)

    np.testing.assert_array_equal(T.Resize((5, 6))(image), image)


def test_resize_constant_stays_constant():
    output = T.Resize((9, 13))(np.full((4, 5), 77, np.uint8))

    assert np.all(output == 77)


@pytest.mark.parametrize("shape, size", [((4, 5), (8, 10)), ((3, 3), (9, 9)), ((5, 4), (7, 11))])
def test_resize_upsampling_matches_pil(rng, shape, size):
    image = rng.uniform(0, 1, size=shape).astype(np.float32)
    expected = np.asarray(Image.fromarray(image, mode="F").resize(size[::-1], Image.BILINEAR))

    output = T.Resize(size)(image)

    np.testing.assert_allclose(output, expected, atol=1e-5, err_msg=f"{shape} -> {size}")


def test_resize_downsampling_by_two_averages_pairs():
    image = np.arange(16, dtype=np.float64).reshape(4, 4)

    output = T.Resize((2, 2))(image)

    expected = image.reshape(2, 2, 2, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(output, expected)


@pytest.mark.parametrize("bad", [0, -3, (4, 0), 2.5, (1, 2, 3), "8"])
def test_resize_bad_size(bad):
    with pytest.raises((TypeError, ValueError), match="Resize: size must be"):
        T.Resize(bad)


# ---------------------------------------------------------------- Compose


def test_compose_order():
    pipeline = T.Compose([T.ToTensor(), T.Normalize([0.5], [0.5])])

    output = pipeline(np.full((2, 2), 255, np.uint8))

    np.testing.assert_allclose(output.data, 1.0)


def test_compose_repr_lists_transforms():
    text = repr(T.Compose([T.Resize(8), T.ToTensor()]))

    assert "Resize(size=8)" in text
    assert "ToTensor()" in text


def test_lambda_wraps_function():
    assert T.Lambda(lambda x: x + 1)(1) == 2
