"""Tests of the audio-visual pairs: label pairing, PCA degradation, the dataset."""

import re

import numpy as np
import pytest
from conftest import real_data_dir

from tinymbm.data.avmnist import AVMNIST, PrincipalComponentRemoval, pair_by_label
from tinymbm.errors import ShapeError

# ---------------------------------------------------------------- pair_by_label


def labels(counts: dict[int, int], rng: np.random.Generator) -> np.ndarray:
    """Shuffled labels with ``counts[label]`` copies of each label."""
    return rng.permutation(np.repeat(list(counts), list(counts.values())))


PAIR_CASES = [
    # (image counts per label, recording counts per label)
    ({0: 10, 1: 7, 2: 3}, {0: 3, 1: 7, 2: 5}),
    ({0: 1, 1: 1}, {0: 4, 1: 2}),
    ({3: 50}, {3: 1, 4: 6}),
]


@pytest.mark.parametrize("image_counts, audio_counts", PAIR_CASES)
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_pair_labels_agree(rng, image_counts, audio_counts, seed):
    image_targets = labels(image_counts, rng)
    audio_targets = labels(audio_counts, rng)
    index = pair_by_label(image_targets, audio_targets, seed)
    assert index.dtype == np.int64
    np.testing.assert_array_equal(
        audio_targets[index], image_targets, err_msg=f"{image_counts} {audio_counts} seed={seed}"
    )


@pytest.mark.parametrize("image_counts, audio_counts", PAIR_CASES)
def test_pair_balanced_use(rng, image_counts, audio_counts):
    image_targets = labels(image_counts, rng)
    audio_targets = labels(audio_counts, rng)
    uses = np.bincount(pair_by_label(image_targets, audio_targets, 0), minlength=len(audio_targets))
    for label, images in image_counts.items():
        used = uses[audio_targets == label]
        recordings = audio_counts[label]
        assert used.min() >= images // recordings, (label, used)
        assert used.max() <= -(-images // recordings), (label, used)


def test_pair_same_seed_same_pairs(rng):
    image_targets = labels({0: 40, 1: 40}, rng)
    audio_targets = labels({0: 9, 1: 9}, rng)
    first = pair_by_label(image_targets, audio_targets, 3)
    second = pair_by_label(image_targets, audio_targets, 3)
    np.testing.assert_array_equal(first, second)


def test_pair_other_seed_other_pairs(rng):
    image_targets = labels({0: 40, 1: 40}, rng)
    audio_targets = labels({0: 9, 1: 9}, rng)
    first = pair_by_label(image_targets, audio_targets, 3)
    second = pair_by_label(image_targets, audio_targets, 4)
    assert not np.array_equal(first, second)


def test_pair_accepts_generator(rng):
    image_targets = labels({0: 5}, rng)
    index = pair_by_label(image_targets, np.zeros(3, np.int64), np.random.default_rng(0))
    assert index.shape == (5,)


def test_pair_none_uses_engine_generator():
    from tinymbm.random import manual_seed

    image_targets = np.array([0, 1] * 20)
    audio_targets = np.array([0, 1] * 10)
    manual_seed(11)
    first = pair_by_label(image_targets, audio_targets, None)
    manual_seed(11)
    second = pair_by_label(image_targets, audio_targets, None)
    np.testing.assert_array_equal(first, second)


def test_pair_missing_label():
    with pytest.raises(ValueError, match="2 images have label 5 but no recording does"):
        pair_by_label(np.array([0, 5, 5]), np.array([0, 1]))


# ---------------------------------------------------------------- PCA removal


def low_rank_images(rng: np.random.Generator, n: int = 200) -> np.ndarray:
    """(n, 1, 4, 4) images whose variance lies mostly along three directions."""
    basis = np.linalg.qr(rng.standard_normal((16, 16)))[0]
    scales = np.array([10.0, 5.0, 2.0] + [0.1] * 13)
    coefficients = rng.standard_normal((n, 16)) * scales
    return (coefficients @ basis.T + 0.5).reshape(n, 1, 4, 4).astype(np.float32)


def test_pca_shape_dtype(rng):
    images = low_rank_images(rng)
    degraded = PrincipalComponentRemoval(num_components=2).fit(images)(images)
    assert degraded.shape == images.shape
    assert degraded.dtype == np.float32


def test_pca_formula(rng):
    images = low_rank_images(rng)
    pca = PrincipalComponentRemoval(num_components=2).fit(images)
    flat = images.reshape(len(images), -1).astype(np.float64)
    v = pca.components
    expected = flat - (flat - pca.mean) @ v.T @ v
    np.testing.assert_allclose(pca(images).reshape(len(images), -1), expected, atol=1e-5)


def test_pca_removed_directions_vanish(rng):
    images = low_rank_images(rng)
    pca = PrincipalComponentRemoval(num_components=3).fit(images)
    centred = pca(images).reshape(len(images), -1) - pca.mean
    np.testing.assert_allclose(centred @ pca.components.T, 0.0, atol=1e-4)


def test_pca_components_orthonormal(rng):
    pca = PrincipalComponentRemoval(num_components=4).fit(low_rank_images(rng))
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(4), atol=1e-10)


@pytest.mark.parametrize("energy", [0.3, 0.7, 0.8, 0.95, 0.999])
def test_pca_energy_picks_fewest_components(rng, energy):
    pca = PrincipalComponentRemoval(energy=energy).fit(low_rank_images(rng))
    cumulative = np.cumsum(pca.explained)
    k = pca.num_components
    assert cumulative[k - 1] >= energy - 1e-12, (energy, k)
    assert k == 1 or cumulative[k - 2] < energy, (energy, k)
    assert pca.energy_removed == pytest.approx(cumulative[k - 1])


def test_pca_zero_components_is_identity(rng):
    images = low_rank_images(rng)
    np.testing.assert_allclose(
        PrincipalComponentRemoval(num_components=0).fit(images)(images), images, atol=1e-6
    )


def test_pca_fit_on_train_only(rng):
    train, test = low_rank_images(rng), low_rank_images(rng, 30) + 1.0
    pca = PrincipalComponentRemoval(num_components=2).fit(train)
    np.testing.assert_allclose(pca.mean, train.reshape(len(train), -1).mean(axis=0), atol=1e-6)
    flat = test.reshape(30, -1).astype(np.float64)
    expected = flat - (flat - pca.mean) @ pca.components.T @ pca.components
    np.testing.assert_allclose(pca(test).reshape(30, -1), expected, atol=1e-5)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"energy": 0.0}, "energy must be in (0, 1)"),
        ({"energy": 1.0}, "energy must be in (0, 1)"),
        ({"energy": None}, "energy must be in (0, 1)"),
        ({"num_components": -1}, "num_components must be an int >= 0"),
        ({"num_components": 1.5}, "num_components must be an int >= 0"),
    ],
)
def test_pca_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        PrincipalComponentRemoval(**arguments)


def test_pca_too_many_components(rng):
    with pytest.raises(ValueError, match="exceeds the 16 pixels"):
        PrincipalComponentRemoval(num_components=17).fit(low_rank_images(rng))


def test_pca_unfitted():
    with pytest.raises(RuntimeError, match="call fit"):
        PrincipalComponentRemoval()(np.zeros((2, 1, 4, 4)))


def test_pca_pixel_mismatch(rng):
    pca = PrincipalComponentRemoval(num_components=1).fit(low_rank_images(rng))
    with pytest.raises(ShapeError, match="images have 9 pixels"):
        pca(np.zeros((2, 1, 3, 3)))


# ---------------------------------------------------------------- AVMNIST from arrays


def small_pairs(rng: np.random.Generator, seed: int = 0, **options) -> AVMNIST:
    images = rng.random((60, 1, 4, 4)).astype(np.float32)
    targets = np.arange(60) % 3
    sequences = rng.standard_normal((9, 5, 2)).astype(np.float32)
    audio_targets = np.arange(9) % 3
    return AVMNIST.from_arrays(images, targets, sequences, audio_targets, seed=seed, **options)


def test_dataset_item_shapes(rng):
    image, sequence, label = small_pairs(rng)[4]
    assert image.shape == (1, 4, 4)
    assert image.dtype == np.float32
    assert sequence.shape == (5, 2)
    assert sequence.dtype == np.float32
    assert isinstance(label, int)


def test_dataset_labels_agree(rng):
    dataset = small_pairs(rng)
    for i in range(len(dataset)):
        _, _, label = dataset[i]
        assert dataset.audio_targets[dataset.audio_index[i]] == label, i


def test_dataset_sequence_is_paired_recording(rng):
    dataset = small_pairs(rng)
    _, sequence, _ = dataset[7]
    np.testing.assert_array_equal(sequence, dataset.sequences[dataset.audio_index[7]])


def test_dataset_deterministic(rng):
    state = rng.bit_generator.state
    first = small_pairs(rng, seed=5)
    rng.bit_generator.state = state
    second = small_pairs(rng, seed=5)
    np.testing.assert_array_equal(first.audio_index, second.audio_index)


def test_dataset_degrades_images(rng):
    dataset = small_pairs(rng, remove_components=2)
    assert dataset.pca.num_components == 2
    assert dataset.images.shape == (60, 1, 4, 4)


def test_dataset_keeps_images_without_pca(rng):
    images = rng.random((6, 1, 4, 4)).astype(np.float32)
    dataset = AVMNIST.from_arrays(images, np.zeros(6), np.zeros((2, 3, 1)), np.zeros(2))
    np.testing.assert_array_equal(dataset.images, images)
    assert dataset.pca is None


@pytest.mark.parametrize(
    "images_shape, sequences_shape, message",
    [
        ((6, 4, 4), (2, 3, 1), "images must be"),
        ((6, 3, 4, 4), (2, 3, 1), "images must be"),
        ((6, 1, 4, 4), (2, 3), "sequences must be"),
    ],
)
def test_dataset_bad_shapes(images_shape, sequences_shape, message):
    with pytest.raises(ShapeError, match=message):
        AVMNIST.from_arrays(
            np.zeros(images_shape), np.zeros(6), np.zeros(sequences_shape), np.zeros(2)
        )


def test_dataset_label_count_mismatch():
    with pytest.raises(ShapeError, match="6 images but targets have shape"):
        AVMNIST.from_arrays(np.zeros((6, 1, 2, 2)), np.zeros(5), np.zeros((2, 3, 1)), np.zeros(2))


# ---------------------------------------------------------------- AVMNIST from files


def write_tiny_data(root, rng: np.random.Generator) -> None:
    """Write a 40/20-image MNIST and 7 takes of each digit by one speaker under ``root``."""
    import io
    import wave

    from tinymbm.data.idx import write_idx

    for prefix, count in (("train", 40), ("t10k", 20)):
        images = rng.integers(0, 256, size=(count, 28, 28)).astype(np.uint8)
        write_idx(root / "mnist" / f"{prefix}-images-idx3-ubyte", images)
        write_idx(
            root / "mnist" / f"{prefix}-labels-idx1-ubyte", (np.arange(count) % 10).astype(np.uint8)
        )

    recordings = root / "fsdd" / "recordings"
    recordings.mkdir(parents=True)
    for digit in range(10):
        for take in range(7):
            buffer = io.BytesIO()
            with wave.open(buffer, "wb") as writer:
                writer.setnchannels(1)
                writer.setsampwidth(2)
                writer.setframerate(8000)
                writer.writeframes(rng.integers(-2000, 2000, 3000).astype("<i2").tobytes())
            (recordings / f"{digit}_ann_{take}.wav").write_bytes(buffer.getvalue())


@pytest.fixture
def tiny_root(tmp_path, monkeypatch, rng):
    monkeypatch.delenv("TINYMBM_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_tiny_data(tmp_path / "data", rng)
    return tmp_path / "data"


@pytest.mark.parametrize("train, takes", [(True, {5, 6}), (False, {0, 1, 2, 3, 4})])
def test_files_split_uses_own_takes(tiny_root, train, takes):
    dataset = AVMNIST(tiny_root, train=train, remove_energy=None)
    used = {dataset.audio_files[i] for i in np.unique(dataset.audio_index)}
    assert {int(name[:-4].rsplit("_", 1)[1]) for name in used} <= takes, train
    assert {int(name[:-4].rsplit("_", 1)[1]) for name in dataset.audio_files} == takes, train


@pytest.mark.parametrize("train", [True, False])
def test_files_labels_agree(tiny_root, train):
    dataset = AVMNIST(tiny_root, train=train, remove_energy=None)
    np.testing.assert_array_equal(dataset.audio_targets[dataset.audio_index], dataset.targets)


def test_files_pca_fit_on_training_images(tiny_root):
    test_split = AVMNIST(tiny_root, train=False, remove_components=3)
    train_split = AVMNIST(tiny_root, train=True, remove_components=3)
    np.testing.assert_allclose(test_split.pca.mean, train_split.pca.mean)
    np.testing.assert_allclose(test_split.pca.components, train_split.pca.components)


def test_files_deterministic_by_seed(tiny_root):
    first = AVMNIST(tiny_root, train=True, seed=3, remove_energy=None)
    second = AVMNIST(tiny_root, train=True, seed=3, remove_energy=None)
    np.testing.assert_array_equal(first.audio_index, second.audio_index)


def test_files_audio_normalised(tiny_root):
    dataset = AVMNIST(tiny_root, train=True, remove_energy=None)
    frames = dataset.sequences.reshape(-1, dataset.sequences.shape[-1])
    np.testing.assert_allclose(frames.mean(axis=0), 0.0, atol=1e-4)
    assert dataset.sequences.shape == (20, 48, 40)


def test_files_images_scaled(tiny_root):
    dataset = AVMNIST(tiny_root, train=False, remove_energy=None)
    assert dataset.images.shape == (20, 1, 28, 28)
    assert dataset.images.dtype == np.float32
    assert dataset.images.max() <= 1.0


# ---------------------------------------------------------------- real MNIST + FSDD


@pytest.fixture(scope="module")
def real_test_split():
    real_data_dir("mnist")
    real_data_dir("fsdd")
    return AVMNIST(train=False, seed=0)


def test_real_test_split_size(real_test_split):
    assert len(real_test_split) == 10000
    assert real_test_split.sequences.shape == (300, 48, 40)


def test_real_test_uses_only_test_takes(real_test_split):
    takes = {int(name[:-4].rsplit("_", 1)[1]) for name in real_test_split.audio_files}
    assert takes <= {0, 1, 2, 3, 4}


def test_real_labels_agree(real_test_split):
    paired = real_test_split.audio_targets[real_test_split.audio_index]
    np.testing.assert_array_equal(paired, real_test_split.targets)


def test_real_pca_removes_75_percent(real_test_split):
    assert real_test_split.pca.num_components == 34
    assert real_test_split.pca.energy_removed >= 0.75


def test_real_item(real_test_split):
    image, sequence, label = real_test_split[0]
    assert image.shape == (1, 28, 28)
    assert sequence.shape == (48, 40)
    assert label == 7
