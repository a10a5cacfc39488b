"""Paired multimodal MNIST: a degraded image and a partial, noisy description of the same digit.

Each example is ``(image, sequence, label)``: the MNIST image, degraded so that
its digit is often unclear, and a sequence of ``T`` tokens that hints at the
label. Neither modality alone is enough to classify well, and together they
are, which is what a fusion model such as MBM(I, T) = CNN(I) + RNN(T) needs to
show a gain.

**The vocabulary** (``VOCABULARY``, F = 20 tokens). Six yes/no attributes of a
digit, each with one token for "yes" and one for "no", give the 12 hint tokens:

    attribute        "yes" token   "no" token     digits with "yes"
    parity           even          odd            0 2 4 6 8
    size             big           small          5 6 7 8 9   (greater than 4)
    closed loop      loop          open           0 6 8 9
    straight lines   straight      curved         1 4 7       (drawn with straight strokes only)
    prime            prime         not-prime      2 3 5 7
    multiple of 3    triple        not-triple     0 3 6 9

The ten digits have ten different attribute codes, so all six hints together
name the digit. Eight filler tokens ("the", "digit", "is", "looks", "maybe",
"written", "a", "number") carry no information about the label.

**A description** has ``T = 8`` tokens (``Description``). Its number of hints
h is drawn uniformly from {3, 4, 5}. The h attributes are drawn without
replacement from the six, and each hint states the digit's true value of its
attribute, except that with probability ``hint_noise = 0.05`` it states the
opposite value (a contradicting hint). The hints sit at random positions and
fillers, drawn uniformly, fill the other T - h positions. Tokens are encoded
one-hot, so a sequence is a float32 array (T, F).

**Why the text alone is not enough.** Three or four of the six attributes
often leave two or three digits possible (even + big + loop fits 6 and 8),
and a contradicting hint can point to the wrong digit. The best possible
text-only classifier, the Bayes rule over the hints
(``text_bayes_accuracy``), is right 66.9% of the time at the defaults.

**The image degradation** (``Degradation``), applied to each image in [0, 1]:

1. a Gaussian blur with standard deviation ``blur_sigma = 1.0`` pixel, which
   merges close strokes (4 and 9, 3 and 8 look alike);
2. ``patches = 2`` random squares of ``patch_size = 11`` pixels (each inside
   the image, at a uniformly drawn position) replaced by uniform noise in
   [0, 1], which hide a part of the digit, often the part that tells two
   digits apart;
3. additive Gaussian noise with standard deviation ``noise_std = 0.1``,
   then clipping to [0, 1].

**Why the image alone is not enough.** Some patches erase the very stroke
that separates two digits, and the noise and blur hide thin strokes. The
``tinymbm.models.CNN`` of the fusion lesson (lessons/09_mbm_fusion.py, seed
0), trained on the first 12,000 training pairs for 2 epochs, reached 81.2%
test accuracy on the 10,000 test pairs. In the same run the LSTM reader on the descriptions reached 65.0%, and the fused
model MBM = CNN + RNN reached 92.0%: a hint such as "loop" or "odd" often
settles exactly the confusion that the image leaves open.

**Determinism and splits.** Training pairs are built from the MNIST training
split and test pairs from the test split. All the randomness comes from
``numpy.random.default_rng([seed, split, chunk])`` for consecutive chunks of
``CHUNK_SIZE`` examples, and each chunk draws the same numbers whatever the
number of examples used. So one seed gives the same pairs on every run, the
first n pairs of a split do not depend on how many are built, and the two
splits draw different noise and descriptions.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinymbm.errors import DTypeError, ShapeError

from .datasets import Dataset

__all__ = [
    "ATTRIBUTES",
    "FILLER_TOKENS",
    "VOCABULARY",
    "Degradation",
    "Description",
    "PairedMNIST",
    "decode_tokens",
    "degrade_images",
    "describe_labels",
    "digit_attributes",
    "one_hot",
    "text_bayes_accuracy",
]

NUM_CLASSES = 10
IMAGE_SIZE = 28
CHUNK_SIZE = 1000
SPLIT_CODES = {"train": 0, "test": 1}

# (attribute, "yes" token, "no" token, the digits that have the attribute)
ATTRIBUTES: tuple[tuple[str, str, str, frozenset[int]], ...] = (
    ("parity", "even", "odd", frozenset({0, 2, 4, 6, 8})),
    ("size", "big", "small", frozenset({5, 6, 7, 8, 9})),
    ("closed loop", "loop", "open", frozenset({0, 6, 8, 9})),
    ("straight lines", "straight", "curved", frozenset({1, 4, 7})),
    ("prime", "prime", "not-prime", frozenset({2, 3, 5, 7})),
    ("multiple of 3", "triple", "not-triple", frozenset({0, 3, 6, 9})),
)
FILLER_TOKENS: tuple[str, ...] = ("the", "digit", "is", "looks", "maybe", "written", "a", "number")

# Attribute a's "yes" token has index 2a and its "no" token 2a + 1; the fillers follow.
VOCABULARY: tuple[str, ...] = tuple(
    token for _, yes, no, _ in ATTRIBUTES for token in (yes, no)
) + FILLER_TOKENS
NUM_HINT_TOKENS = 2 * len(ATTRIBUTES)


@dataclass(frozen=True)
class Degradation:
    """Image degradation settings: blur, then noise patches, then additive noise, then clipping.

    Attributes:
        blur_sigma: standard deviation of the Gaussian blur, in pixels (0: no blur).
        patches: number of square patches replaced by uniform noise in [0, 1].
        patch_size: side of each patch, in pixels (1 to 28).
        noise_std: standard deviation of the additive Gaussian noise (0: none).
    """

    blur_sigma: float = 1.0
    patches: int = 2
    patch_size: int = 11
    noise_std: float = 0.1

    def __post_init__(self) -> None:
        if not (np.isfinite(self.blur_sigma) and self.blur_sigma >= 0):
            raise ValueError(f"Degradation: blur_sigma must be a finite number >= 0, got {self.blur_sigma!r}")
        if isinstance(self.patches, bool) or not isinstance(self.patches, int) or self.patches < 0:
            raise ValueError(f"Degradation: patches must be an int >= 0, got {self.patches!r}")
        if (isinstance(self.patch_size, bool) or not isinstance(self.patch_size, int)
                or not 1 <= self.patch_size <= IMAGE_SIZE):
            raise ValueError(
                f"Degradation: patch_size must be an int from 1 to {IMAGE_SIZE}, got {self.patch_size!r}"
            )
        if not (np.isfinite(self.noise_std) and self.noise_std >= 0):
            raise ValueError(f"Degradation: noise_std must be a finite number >= 0, got {self.noise_std!r}")


@dataclass(frozen=True)
class Description:
    """Token sequence settings.

    Attributes:
        sequence_length: T, tokens per sequence (at least the largest hint count).
        hint_counts: the possible numbers of hints h, drawn uniformly (each 1 to 6).
        hint_noise: probability that a hint states the wrong value of its attribute.
    """

    sequence_length: int = 8
    hint_counts: tuple[int, ...] = (3, 4, 5)
    hint_noise: float = 0.05

    def __post_init__(self) -> None:
        counts = tuple(self.hint_counts)
        if not counts or any(isinstance(h, bool) or not isinstance(h, int) for h in counts):
            raise ValueError(f"Description: hint_counts must be a non-empty tuple of ints, got {self.hint_counts!r}")
        if min(counts) < 1 or max(counts) > len(ATTRIBUTES):
            raise ValueError(
                f"Description: each hint count must be from 1 to {len(ATTRIBUTES)} (the number of "
                f"attributes), got {self.hint_counts!r}"
            )
        object.__setattr__(self, "hint_counts", counts)
        if (isinstance(self.sequence_length, bool) or not isinstance(self.sequence_length, int)
                or self.sequence_length < max(counts)):
            raise ValueError(
                f"Description: sequence_length must be an int >= the largest hint count "
                f"{max(counts)}, got {self.sequence_length!r}"
            )
        if not 0.0 <= self.hint_noise <= 1.0:
            raise ValueError(f"Description: hint_noise must be a probability in [0, 1], got {self.hint_noise!r}")


# ---------------------------------------------------------------- descriptions


def digit_attributes() -> np.ndarray:
    """Return the (10, 6) bool table A[d, a]: does digit d have attribute a (``ATTRIBUTES`` order)?"""
    table = np.zeros((NUM_CLASSES, len(ATTRIBUTES)), dtype=bool)
    for a, (_, _, _, digits) in enumerate(ATTRIBUTES):
        table[sorted(digits), a] = True
    return table


def _description_draws(rng: np.random.Generator, size: int, description: Description) -> dict[str, np.ndarray]:
    """Draw every random number of ``size`` descriptions, independently of the labels."""
    num_attributes = len(ATTRIBUTES)
    length = description.sequence_length
    max_hints = max(description.hint_counts)

    return {
        "counts": rng.choice(np.asarray(description.hint_counts), size=size),
        # A random permutation per row: the first h entries are the hinted attributes.
        "attributes": np.argsort(rng.random((size, num_attributes)), axis=1)[:, :max_hints],
        "flips": rng.random((size, max_hints)) < description.hint_noise,
        # Distinct random positions per row: the first h take the hints.
        "positions": np.argsort(rng.random((size, length)), axis=1)[:, :max_hints],
        "fillers": rng.integers(0, len(FILLER_TOKENS), size=(size, length)),
    }


def _assemble_descriptions(labels: np.ndarray, draws: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """Turn drawn numbers into tokens (N, T), is_hint (N, T) and flipped (N, T)."""
    table = digit_attributes()
    size, length = draws["fillers"].shape
    rows = np.arange(size)

    tokens = NUM_HINT_TOKENS + draws["fillers"]
    is_hint = np.zeros((size, length), dtype=bool)
    flipped = np.zeros((size, length), dtype=bool)

    for j in range(draws["attributes"].shape[1]):
        used = j < draws["counts"]
        attribute = draws["attributes"][:, j]
        position = draws["positions"][:, j]
        stated = table[labels, attribute] ^ draws["flips"][:, j]

        # "yes" is token 2a and "no" is 2a + 1.
        hint = 2 * attribute + (~stated).astype(np.int64)
        tokens[rows[used], position[used]] = hint[used]
        is_hint[rows[used], position[used]] = True
        flipped[rows[used], position[used]] = draws["flips"][used, j]

    return tokens.astype(np.int64), is_hint, flipped


def describe_labels(labels: Any, rng: np.random.Generator,
                    description: Description = Description()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one description per label (see the module docstring).

    Args:
        labels: (N,) integer digits 0-9.
        rng: the generator every draw comes from.
        description: the sequence length, hint counts and hint noise.

    Returns:
        ``(tokens, is_hint, flipped)``: int64 (N, T) indices into ``VOCABULARY``,
        bool (N, T) marking the hint positions, and bool (N, T) marking the hints
        that state the wrong value.
    """
    labels = _check_labels("describe_labels", labels)
    draws = _description_draws(rng, labels.shape[0], description)
    return _assemble_descriptions(labels, draws)


def one_hot(tokens: Any, num_tokens: int = len(VOCABULARY)) -> np.ndarray:
    """Encode token indices (..., T) as float32 one-hot vectors (..., T, num_tokens)."""
    tokens = np.asarray(tokens)
    if tokens.dtype.kind not in "iu":
        raise DTypeError(f"one_hot: expected integer token indices, got dtype {tokens.dtype}")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= num_tokens):
        raise ValueError(
            f"one_hot: token indices must be in [0, {num_tokens}), got values from "
            f"{tokens.min()} to {tokens.max()}"
        )
    return np.eye(num_tokens, dtype=np.float32)[tokens]


def decode_tokens(tokens: Any) -> list[str]:
    """Return the words of one sequence of token indices (T,), e.g. ``["the", "odd", ...]``."""
    return [VOCABULARY[int(t)] for t in np.asarray(tokens).reshape(-1)]


def text_bayes_accuracy(description: Description = Description()) -> float:
    """Return the accuracy of the best classifier that reads only the hints.

    Every digit is equally likely, and the fillers and positions carry no information
    about it, so the Bayes rule picks the digit d maximising the likelihood of
    the hinted values v_a over the hinted attributes S,

        P(v | d) = Π_{a∈S} (1 - ε if v_a = A[d, a] else ε),   ε = hint_noise.

    Its accuracy, summed exactly over every hint count h, attribute set S of
    size h and value vector v, is

        Σ_h P(h) Σ_{|S|=h} C(6, h)^-1 Σ_v (1/10) max_d P(v | d).

    No model that reads only the sequence can beat it on average.
    """
    table = digit_attributes()
    epsilon = description.hint_noise
    counts = description.hint_counts
    total = 0.0

    for h in counts:
        subsets = list(itertools.combinations(range(len(ATTRIBUTES)), h))
        for subset in subsets:
            truth = table[:, subset]
            for values in itertools.product((False, True), repeat=h):
                agree = truth == np.asarray(values)
                likelihood = np.where(agree, 1.0 - epsilon, epsilon).prod(axis=1)
                total += likelihood.max() / NUM_CLASSES / len(subsets) / len(counts)
    return float(total)


# ---------------------------------------------------------------- image degradation


def _gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Blur (N, H, W) images with a separable Gaussian of standard deviation ``sigma`` (zero padding)."""
    if sigma == 0:
        return images
    radius = max(1, int(np.ceil(3 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()

    height, width = images.shape[1:]
    padded = np.pad(images, ((0, 0), (radius, radius), (0, 0)))
    rows = sum(w * padded[:, radius + k: radius + k + height, :] for k, w in zip(offsets, weights))
    padded = np.pad(rows, ((0, 0), (0, 0), (radius, radius)))
    return sum(w * padded[:, :, radius + k: radius + k + width] for k, w in zip(offsets, weights))


def _degradation_draws(rng: np.random.Generator, size: int, degradation: Degradation) -> dict[str, np.ndarray]:
    """Draw every random number of ``size`` image degradations."""
    side = degradation.patch_size
    return {
        "corners": rng.integers(0, IMAGE_SIZE - side + 1, size=(size, degradation.patches, 2)),
        "fill": rng.random((size, degradation.patches, side, side)),
        "noise": rng.standard_normal((size, IMAGE_SIZE, IMAGE_SIZE)),
    }


def _apply_degradation(images: np.ndarray, draws: dict[str, np.ndarray],
                       degradation: Degradation) -> np.ndarray:
    """Blur, cover patches, add noise and clip (N, 28, 28) images in [0, 1]; return float32."""
    degraded = _gaussian_blur(images.astype(np.float64), degradation.blur_sigma)

    side = degradation.patch_size
    for n in range(degraded.shape[0]):
        for p in range(degradation.patches):
            top, left = draws["corners"][n, p]
            degraded[n, top: top + side, left: left + side] = draws["fill"][n, p]

    degraded = degraded + degradation.noise_std * draws["noise"]
    return np.clip(degraded, 0.0, 1.0).astype(np.float32)


def degrade_images(images: Any, rng: np.random.Generator,
                   degradation: Degradation = Degradation()) -> np.ndarray:
    """Degrade images as the module docstring describes.

    Args:
        images: (N, 28, 28) or (N, 1, 28, 28); uint8 in 0..255 or floating in [0, 1].
        rng: the generator every draw comes from.
        degradation: the blur, patches and noise.

    Returns:
        float32 (N, 1, 28, 28) in [0, 1].
    """
    images = _as_unit_images("degrade_images", images)
    draws = _degradation_draws(rng, images.shape[0], degradation)
    return _apply_degradation(images, draws, degradation)[:, None]


# ---------------------------------------------------------------- input checks


def _check_labels(name: str, labels: Any) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ShapeError(f"{name}: labels must have shape (N,), got {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise DTypeError(f"{name}: labels must be integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(
            f"{name}: labels must be digits 0-9, got values from {labels.min()} to {labels.max()}"
        )
    return labels.astype(np.int64)


def _as_unit_images(name: str, images: Any) -> np.ndarray:
    """Return images as float (N, 28, 28) in [0, 1] from uint8 or float, with or without a channel axis."""
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ShapeError(
            f"{name}: images must have shape (N, 28, 28) or (N, 1, 28, 28), got {images.shape}"
        )
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255.0)
    if images.dtype.kind != "f":
        raise DTypeError(f"{name}: images must be uint8 or floating, got dtype {images.dtype}")
    return images.astype(np.float32)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"PairedMNIST: seed must be an int >= 0, got {seed!r}")
    return int(seed)


# ---------------------------------------------------------------- the dataset


class PairedMNIST(Dataset):
    """Degraded MNIST images paired with partial, noisy descriptions (see the module docstring).

    ``dataset[i]`` is ``(image, sequence, label)``: float32 (1, 28, 28) in [0, 1],
    float32 (T, F) one-hot tokens, and an int64 label. ``DataLoader`` batches
    them as ``(images (B, 1, 28, 28), sequences (B, T, F), labels (B,))``, and
    ``tinymbm.train.fit`` then calls ``model(images, sequences)``.

    Args:
        root: folder with the real MNIST (a lesson's ``--data-dir``). None looks in
            ``$TINYMBM_DATA`` and the user cache, as ``load_mnist`` does.
        train: pair the training split (True) or the test split (False).
        seed: an int >= 0; the same seed gives the same pairs.
        limit: build only the first ``limit`` pairs of the split (None: all of
            them). They equal the first pairs of the whole split.
        download: download MNIST when no folder contains it.
        fallback: use synthetic digits, with one printed line, when real MNIST
            is not found; False raises ``DatasetNotFoundError`` instead.
        degradation: the image degradation.
        description: the token sequences.

    Attributes:
        images: float32 (N, 1, 28, 28), the degraded images.
        clean_images: uint8 (N, 28, 28), the source images.
        sequences: float32 (N, T, F), the one-hot descriptions.
        tokens: int64 (N, T), indices into ``VOCABULARY``.
        is_hint: bool (N, T), True at the hint tokens.
        flipped: bool (N, T), True at the hints that state the wrong value.
        targets: int64 (N,), the labels.
        source: ``"mnist"`` or ``"synthetic"``.
        split: ``"train"`` or ``"test"``.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        train: bool = True,
        seed: int = 0,
        limit: int | None = None,
        download: bool = False,
        fallback: bool = True,
        degradation: Degradation = Degradation(),
        description: Description = Description(),
    ) -> None:
        from .mnist import load_mnist

        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
            raise ValueError(f"PairedMNIST: limit must be a positive int or None, got {limit!r}")
        seed = _check_seed(seed)

        # Without real MNIST, render only as many synthetic digits as are used.
        loaded = load_mnist(root, train=train, download=download, fallback=fallback, seed=seed,
                            synthetic_size=limit)
        images, labels = loaded.images, loaded.labels
        if limit is not None:
            images, labels = images[:limit], labels[:limit]

        self._build(images, labels, "train" if train else "test", seed, loaded.source,
                    degradation, description)

    @classmethod
    def from_arrays(
        cls,
        images: Any,
        labels: Any,
        train: bool = True,
        seed: int = 0,
        degradation: Degradation = Degradation(),
        description: Description = Description(),
    ) -> PairedMNIST:
        """Pair given images and labels the same way (for other digit data, or tests).

        Args:
            images: (N, 28, 28) or (N, 1, 28, 28), uint8 or floating in [0, 1].
            labels: (N,) integer digits 0-9.
            train: which split's random streams to draw from.
            seed: an int >= 0.
            degradation, description: as in the constructor.
        """
        dataset = cls.__new__(cls)
        dataset._build(images, labels, "train" if train else "test", _check_seed(seed), "arrays",
                       degradation, description)
        return dataset

    def _build(self, images: Any, labels: Any, split: str, seed: int, source: str,
               degradation: Degradation, description: Description) -> None:
        unit_images = _as_unit_images("PairedMNIST", images)
        labels = _check_labels("PairedMNIST", labels)
        if labels.shape[0] != unit_images.shape[0]:
            raise ShapeError(
                f"PairedMNIST: {unit_images.shape[0]} images but {labels.shape[0]} labels"
            )

        self.split = split
        self.seed = seed
        self.source = source
        self.degradation = degradation
        self.description = description
        self.clean_images = np.asarray(images).reshape(unit_images.shape)
        self.targets = labels

        pieces: dict[str, list[np.ndarray]] = {"images": [], "tokens": [], "is_hint": [], "flipped": []}
        for chunk, start in enumerate(range(0, labels.shape[0], CHUNK_SIZE)):
            stop = min(start + CHUNK_SIZE, labels.shape[0])

            # Every draw is made for a whole chunk, in a fixed order, then cut to the
            # examples present, so the first n pairs never depend on the total count.
            rng = np.random.default_rng([seed, SPLIT_CODES[split], chunk])
            text_draws = _description_draws(rng, CHUNK_SIZE, description)
            image_draws = _degradation_draws(rng, CHUNK_SIZE, degradation)
            used = stop - start
            text_draws = {key: value[:used] for key, value in text_draws.items()}
            image_draws = {key: value[:used] for key, value in image_draws.items()}

            tokens, is_hint, flipped = _assemble_descriptions(labels[start:stop], text_draws)
            pieces["images"].append(_apply_degradation(unit_images[start:stop], image_draws, degradation))
            pieces["tokens"].append(tokens)
            pieces["is_hint"].append(is_hint)
            pieces["flipped"].append(flipped)

        length = description.sequence_length
        empty = {"images": np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.float32),
                 "tokens": np.zeros((0, length), np.int64), "is_hint": np.zeros((0, length), bool),
                 "flipped": np.zeros((0, length), bool)}
        joined = {key: np.concatenate(value) if value else empty[key] for key, value in pieces.items()}

        self.images = joined["images"][:, None]
        self.tokens = joined["tokens"]
        self.is_hint = joined["is_hint"]
        self.flipped = joined["flipped"]
        self.sequences = one_hot(self.tokens)

    def __len__(self) -> int:
        return self.targets.shape[0]

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, np.int64]:
        return self.images[index], self.sequences[index], self.targets[index]

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.images, self.sequences, self.targets

    def words(self, index: int) -> list[str]:
        """Return the tokens of example ``index`` as words."""
        return decode_tokens(self.tokens[index])

    def __repr__(self) -> str:
        return (
            f"PairedMNIST(split={self.split!r}, size={len(self)}, source={self.source!r}, "
            f"seed={self.seed}, sequence_shape={self.sequences.shape[1:]})"
        )
