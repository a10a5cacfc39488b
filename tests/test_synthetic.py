"""Synthetic MNIST-style digits: determinism, format, MNIST-like placement, speed."""

import time

import numpy as np
import pytest

import tinymbm as tm
from tinymbm.data import (
    MNIST,
    SyntheticDigits,
    make_synthetic_digits,
    save_synthetic_idx,
)


@pytest.fixture(scope="module")
def digits():
    return make_synthetic_digits(200, seed=0)


def test_synthetic_same_seed_same_images():
    a_images, a_labels = make_synthetic_digits(40, seed=5)
    b_images, b_labels = make_synthetic_digits(40, seed=5)

    np.testing.assert_array_equal(a_images, b_images)
    np.testing.assert_array_equal(a_labels, b_labels)


def test_synthetic_seeds_differ():
    a_images, _ = make_synthetic_digits(40, seed=5)
    b_images, _ = make_synthetic_digits(40, seed=6)

    assert not np.array_equal(a_images, b_images)


def test_synthetic_splits_differ():
    train, _ = make_synthetic_digits(40, seed=5, train=True)
    test, _ = make_synthetic_digits(40, seed=5, train=False)

    assert not np.array_equal(train, test)


def test_synthetic_seed_none_follows_manual_seed():
    tm.manual_seed(3)
    a, _ = make_synthetic_digits(10, seed=None)
    tm.manual_seed(3)
    b, _ = make_synthetic_digits(10, seed=None)

    np.testing.assert_array_equal(a, b)


def test_synthetic_format(digits):
    images, labels = digits

    assert images.dtype == np.uint8
    assert images.shape == (200, 28, 28)
    assert labels.dtype == np.int64
    assert labels.shape == (200,)
    assert images.max() == 255


def test_synthetic_balanced_classes(digits):
    _, labels = digits

    assert np.bincount(labels, minlength=10).tolist() == [20] * 10


def test_synthetic_all_classes_small_n():
    _, labels = make_synthetic_digits(10, seed=1)

    assert sorted(labels.tolist()) == list(range(10))


def test_synthetic_centre_of_mass_centred(digits):
    images, _ = digits
    ink = images.astype(np.float64)
    rows, columns = np.mgrid[0:28, 0:28]

    mass = ink.sum(axis=(1, 2))
    centre_row = (ink * rows).sum(axis=(1, 2)) / mass
    centre_column = (ink * columns).sum(axis=(1, 2)) / mass

    # MNIST puts the centre of mass at the middle (13.5); jitter and noise move it a little.
    assert np.all(np.abs(centre_row - 13.5) < 2.5), centre_row.min()
    assert np.all(np.abs(centre_column - 13.5) < 2.5), centre_column.min()


def test_synthetic_digit_fits_box(digits):
    images, _ = digits
    strokes = images > 128

    heights = [np.ptp(np.nonzero(s.any(axis=1))[0]) + 1 for s in strokes]
    widths = [np.ptp(np.nonzero(s.any(axis=0))[0]) + 1 for s in strokes]

    assert max(max(heights), max(widths)) <= 22
    assert np.median(np.maximum(heights, widths)) >= 14


def test_synthetic_zero_noise_clean_background():
    images, _ = make_synthetic_digits(20, seed=2, noise=0.0)

    assert np.all(images[:, 0, :] == 0)
    assert np.all(images[:, :, 0] == 0)


def test_synthetic_empty():
    images, labels = make_synthetic_digits(0)

    assert images.shape == (0, 28, 28)
    assert labels.shape == (0,)


@pytest.mark.parametrize("bad", [-1, 2.5, "10", True])
def test_synthetic_bad_n(bad):
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        make_synthetic_digits(bad)


def test_synthetic_dataset_interface():
    dataset = SyntheticDigits(n=12, seed=0, target_transform=lambda y: -y)

    image, label = dataset[3]

    assert len(dataset) == 12
    assert image.shape == (28, 28)
    assert label == -int(dataset.targets[3])
    assert dataset.classes[0] == "0 - zero"


def test_synthetic_dataset_default_sizes():
    dataset = SyntheticDigits(train=False)

    assert len(dataset) == 10_000


def test_synthetic_saved_as_idx(tmp_path):
    save_synthetic_idx(tmp_path, n_train=30, n_test=20, seed=1)

    train = MNIST(tmp_path, train=True)
    test = MNIST(tmp_path, train=False)

    assert len(train) == 30
    assert len(test) == 20
    np.testing.assert_array_equal(train.data, make_synthetic_digits(30, seed=1)[0])


def test_synthetic_60000_under_a_minute():
    start = time.perf_counter()
    images, _ = make_synthetic_digits(60_000, seed=0)
    seconds = time.perf_counter() - start

    assert images.shape == (60_000, 28, 28)
    assert seconds < 60, f"60,000 images took {seconds:.1f} s"
