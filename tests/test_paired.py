"""PairedMNIST: degraded images with partial, noisy descriptions of the same digit."""

import numpy as np
import pytest
from conftest import real_data_dir

import tinymbm as tm
from tinymbm import nn, optim
from tinymbm.data import DataLoader, load_mnist
from tinymbm.data.paired import (
    ATTRIBUTES,
    CHUNK_SIZE,
    FILLER_TOKENS,
    NUM_HINT_TOKENS,
    VOCABULARY,
    Degradation,
    Description,
    PairedMNIST,
    decode_tokens,
    degrade_images,
    describe_labels,
    digit_attributes,
    one_hot,
    text_bayes_accuracy,
)
from tinymbm.errors import DTypeError, ShapeError
from tinymbm.train import fit


def random_digits(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return n random uint8 images (n, 28, 28) and labels 0-9; the pairing does not read the ink."""
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=n)


# ---------------------------------------------------------------- determinism


def test_same_seed_same_pairs(rng):
    images, labels = random_digits(rng, 300)
    first = PairedMNIST.from_arrays(images, labels, seed=7)
    second = PairedMNIST.from_arrays(images, labels, seed=7)
    assert np.array_equal(first.images, second.images)
    assert np.array_equal(first.tokens, second.tokens)
    assert np.array_equal(first.sequences, second.sequences)


def test_other_seed_other_pairs(rng):
    images, labels = random_digits(rng, 300)
    first = PairedMNIST.from_arrays(images, labels, seed=7)
    second = PairedMNIST.from_arrays(images, labels, seed=8)
    assert not np.array_equal(first.images, second.images)
    assert not np.array_equal(first.tokens, second.tokens)


@pytest.mark.parametrize("prefix", [1, 250, CHUNK_SIZE, CHUNK_SIZE + 37])
def test_prefix_independent_of_total(rng, prefix):
    images, labels = random_digits(rng, CHUNK_SIZE + 300)
    whole = PairedMNIST.from_arrays(images, labels, seed=3)
    part = PairedMNIST.from_arrays(images[:prefix], labels[:prefix], seed=3)
    assert np.array_equal(part.images, whole.images[:prefix]), f"prefix {prefix}"
    assert np.array_equal(part.tokens, whole.tokens[:prefix]), f"prefix {prefix}"


# ---------------------------------------------------------------- shapes and dtypes


def test_example_shapes_and_dtypes(rng):
    images, labels = random_digits(rng, 20)
    image, sequence, label = PairedMNIST.from_arrays(images, labels)[3]
    assert image.shape == (1, 28, 28)
    assert image.dtype == np.float32
    assert sequence.shape == (8, len(VOCABULARY))
    assert sequence.dtype == np.float32
    assert np.asarray(label).dtype == np.int64


def test_sequences_are_one_hot_tokens(rng):
    images, labels = random_digits(rng, 50)
    pairs = PairedMNIST.from_arrays(images, labels)
    assert np.array_equal(pairs.sequences.sum(axis=2), np.ones((50, 8), dtype=np.float32))
    assert np.array_equal(pairs.sequences.argmax(axis=2), pairs.tokens)


def test_images_in_unit_range(rng):
    images, labels = random_digits(rng, 50)
    pairs = PairedMNIST.from_arrays(images, labels)
    assert pairs.images.min() >= 0.0
    assert pairs.images.max() <= 1.0


@pytest.mark.parametrize("length", [5, 8, 12])
def test_sequence_length_setting(rng, length):
    images, labels = random_digits(rng, 10)
    pairs = PairedMNIST.from_arrays(images, labels, description=Description(sequence_length=length))
    assert pairs.sequences.shape == (10, length, len(VOCABULARY)), f"length {length}"


def test_loader_batches_three_tensors(rng):
    images, labels = random_digits(rng, 20)
    batch = next(iter(DataLoader(PairedMNIST.from_arrays(images, labels), batch_size=8)))
    assert [tuple(t.shape) for t in batch] == [(8, 1, 28, 28), (8, 8, len(VOCABULARY)), (8,)]
    assert [t.dtype for t in batch] == [np.float32, np.float32, np.int64]


class TinyFusion(nn.Module):
    """A linear image score plus a linear score of the token counts."""

    def __init__(self) -> None:
        super().__init__()
        self.image = nn.Linear(784, 10)
        self.text = nn.Linear(len(VOCABULARY), 10)

    def forward(self, image, sequence):
        return self.image(image.flatten(1)) + self.text(sequence.sum(dim=1))


def test_fit_passes_image_and_sequence(rng):
    images, labels = random_digits(rng, 64)
    tm.manual_seed(0)
    model = TinyFusion()
    loader = DataLoader(PairedMNIST.from_arrays(images, labels), batch_size=16)
    history = fit(model, optim.Adam(model.parameters(), lr=1e-2), loader, epochs=1, progress=False)
    assert len(history["train_loss"]) == 1
    assert np.isfinite(history["train_loss"][0])


# ---------------------------------------------------------------- labels and hints


def test_targets_match_labels(rng):
    images, labels = random_digits(rng, 100)
    pairs = PairedMNIST.from_arrays(images, labels)
    assert np.array_equal(pairs.targets, labels)
    assert np.array_equal(pairs.clean_images, images)


def test_attribute_codes_distinct():
    table = digit_attributes()
    assert len({tuple(row) for row in table}) == 10


def test_vocabulary_layout():
    assert len(VOCABULARY) == NUM_HINT_TOKENS + len(FILLER_TOKENS)
    for a, (_, yes, no, _) in enumerate(ATTRIBUTES):
        assert VOCABULARY[2 * a] == yes, f"attribute {a}"
        assert VOCABULARY[2 * a + 1] == no, f"attribute {a}"


def test_hints_agree_unless_flipped(rng):
    labels = rng.integers(0, 10, size=2000)
    tokens, is_hint, flipped = describe_labels(labels, rng)
    table = digit_attributes()
    rows, positions = np.nonzero(is_hint)
    attribute = tokens[rows, positions] // 2
    stated_yes = tokens[rows, positions] % 2 == 0
    agrees = stated_yes == table[labels[rows], attribute]
    assert np.array_equal(agrees, ~flipped[rows, positions])


def test_fillers_outside_hints(rng):
    labels = rng.integers(0, 10, size=500)
    tokens, is_hint, flipped = describe_labels(labels, rng)
    assert np.all(tokens[~is_hint] >= NUM_HINT_TOKENS)
    assert np.all(tokens[is_hint] < NUM_HINT_TOKENS)
    assert not flipped[~is_hint].any()


def test_hint_counts_and_distinct_attributes(rng):
    labels = rng.integers(0, 10, size=500)
    tokens, is_hint, _ = describe_labels(labels, rng)
    assert set(is_hint.sum(axis=1)) <= {3, 4, 5}
    for row in range(len(labels)):
        attributes = tokens[row][is_hint[row]] // 2
        assert len(set(attributes)) == len(attributes), f"row {row}: {decode_tokens(tokens[row])}"


@pytest.mark.parametrize("noise", [0.0, 0.05, 0.3])
def test_contradiction_rate_matches_noise(rng, noise):
    labels = rng.integers(0, 10, size=4000)
    _, is_hint, flipped = describe_labels(labels, rng, Description(hint_noise=noise))
    hints = is_hint.sum()
    rate = flipped.sum() / hints
    # Five binomial standard deviations, so a correct generator fails about once in 10^6 runs.
    tolerance = 5 * np.sqrt(noise * (1 - noise) / hints)
    assert abs(rate - noise) <= tolerance, f"noise {noise}: measured {rate:.4f} over {hints} hints"


# ---------------------------------------------------------------- the text-only bound


@pytest.mark.parametrize("counts, noise, expected", [
    ((6,), 0.0, 1.0),    # all six attributes name the digit
    ((1,), 0.0, 0.2),    # one attribute splits the digits into two groups
    ((6,), 0.5, 0.1),    # hints that are coin flips carry nothing
])
def test_bayes_accuracy_cases(counts, noise, expected):
    accuracy = text_bayes_accuracy(Description(hint_counts=counts, hint_noise=noise))
    assert accuracy == pytest.approx(expected), f"counts {counts}, noise {noise}"


def test_bayes_accuracy_matches_sampling(rng):
    description = Description()
    labels = rng.integers(0, 10, size=20_000)
    tokens, is_hint, _ = describe_labels(labels, rng, description)

    # The Bayes rule: the digit whose attributes agree with the most hints wins,
    # because every hint has the same reliability 1 - ε > 1/2.
    table = digit_attributes()
    agreements = np.zeros((labels.size, 10))
    rows, positions = np.nonzero(is_hint)
    attribute = tokens[rows, positions] // 2
    stated_yes = tokens[rows, positions] % 2 == 0
    np.add.at(agreements, rows, table[:, attribute].T == stated_yes[:, None])

    # Ties are split evenly, as the expected accuracy of a random tie-break.
    best = agreements == agreements.max(axis=1, keepdims=True)
    sampled = (best[np.arange(labels.size), labels] / best.sum(axis=1)).mean()
    assert sampled == pytest.approx(text_bayes_accuracy(description), abs=0.015)


# ---------------------------------------------------------------- degradation


def test_no_degradation_keeps_images(rng):
    images, _ = random_digits(rng, 10)
    plain = degrade_images(images, rng, Degradation(blur_sigma=0.0, patches=0, noise_std=0.0))
    assert np.allclose(plain[:, 0], images / 255.0, atol=1e-6)


def test_degradation_changes_images(rng):
    images, _ = random_digits(rng, 10)
    degraded = degrade_images(images, rng)
    assert degraded.shape == (10, 1, 28, 28)
    assert not np.allclose(degraded[:, 0], images / 255.0, atol=0.05)


# ---------------------------------------------------------------- splits


def test_splits_draw_different_streams(rng):
    images, labels = random_digits(rng, 200)
    train = PairedMNIST.from_arrays(images, labels, train=True, seed=1)
    test = PairedMNIST.from_arrays(images, labels, train=False, seed=1)
    assert not np.array_equal(train.images, test.images)
    assert not np.array_equal(train.tokens, test.tokens)


def test_real_splits_use_matching_mnist():
    root = real_data_dir("mnist").parent
    train = PairedMNIST(root, train=True, limit=100)
    test = PairedMNIST(root, train=False, limit=100)
    mnist_train = load_mnist(root, train=True, fallback=False)
    mnist_test = load_mnist(root, train=False, fallback=False)
    assert train.source == "mnist"
    assert np.array_equal(train.clean_images, mnist_train.images[:100])
    assert np.array_equal(train.targets, mnist_train.labels[:100])
    assert np.array_equal(test.clean_images, mnist_test.images[:100])
    assert np.array_equal(test.targets, mnist_test.labels[:100])


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("labels, error", [
    (np.array([0, 10]), ValueError),
    (np.array([-1, 3]), ValueError),
    (np.array([0.0, 1.0]), DTypeError),
    (np.zeros((2, 1), dtype=np.int64), ShapeError),
])
def test_bad_labels_raise(rng, labels, error):
    images, _ = random_digits(rng, 2)
    with pytest.raises(error):
        PairedMNIST.from_arrays(images, labels)


@pytest.mark.parametrize("shape", [(2, 28), (2, 3, 28, 28), (2, 32, 32)])
def test_bad_image_shape_raises(shape):
    with pytest.raises(ShapeError):
        PairedMNIST.from_arrays(np.zeros(shape, dtype=np.uint8), np.array([1, 2]))


def test_count_mismatch_raises(rng):
    images, labels = random_digits(rng, 3)
    with pytest.raises(ShapeError):
        PairedMNIST.from_arrays(images, labels[:2])


@pytest.mark.parametrize("kwargs", [
    {"hint_counts": ()},
    {"hint_counts": (0,)},
    {"hint_counts": (7,)},
    {"sequence_length": 4},
    {"hint_noise": 1.5},
])
def test_bad_description_raises(kwargs):
    with pytest.raises(ValueError):
        Description(**kwargs)


@pytest.mark.parametrize("kwargs", [
    {"blur_sigma": -1.0},
    {"patches": -1},
    {"patch_size": 0},
    {"patch_size": 29},
    {"noise_std": float("nan")},
])
def test_bad_degradation_raises(kwargs):
    with pytest.raises(ValueError):
        Degradation(**kwargs)


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_bad_seed_raises(rng, seed):
    images, labels = random_digits(rng, 2)
    with pytest.raises(ValueError):
        PairedMNIST.from_arrays(images, labels, seed=seed)


def test_one_hot_rejects_out_of_range():
    with pytest.raises(ValueError):
        one_hot(np.array([0, len(VOCABULARY)]))
