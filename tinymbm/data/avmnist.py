"""Audio-visual MNIST: each MNIST image paired with a spoken recording of the same digit.

Construction, for one split (train or test):

1. Images. The MNIST images of the split, scaled to [0, 1], shape (N, 1, 28, 28).
2. Degrading the images (optional, on by default). A PCA is fit on the
   flattened MNIST *training* images only: mean μ (784,), eigenvalues
   λ_1 >= λ_2 >= ... of their covariance and unit eigenvectors v_j. The k
   leading components are removed from every image of either split:

       x' = x - Σ_{j<=k} v_j v_jᵀ (x - μ)

   With ``remove_energy = e``, k is the smallest number whose components carry
   at least the fraction e of the variance, Σ_{j<=k} λ_j >= e · Σ_j λ_j
   (on MNIST, e = 0.75 gives k = 34 of 784 components, which carry 75.5%). With
   ``remove_components = k`` it is given directly. The images then identify
   their digit less reliably, so a model gains from the audio as well.
   Measured once: a softmax regression (150 full-batch gradient steps on
   20,000 training images) reached 92% test accuracy on the original images
   and 40% on the degraded ones.
3. Audio. Only the Free Spoken Digit Dataset recordings of the *same* split
   are used: test takes 0-4 for test images, takes 5-49 for training images.
   Each becomes (T, F) float32 features, by default 48 frames × 40 log-mel
   bands (:class:`tinymbm.data.audio.MelSpectrogram`). Every band is then
   standardised with the mean and standard deviation of the FSDD training
   recordings.
4. Pairing. Within each digit c, the images of class c are matched with the
   recordings of class c: the recordings are shuffled, repeated as often as
   needed to cover all the images, and assigned in image order. So labels
   always agree, every recording is used either ⌊n_c / r_c⌋ or ⌈n_c / r_c⌉
   times (n_c images and r_c recordings of digit c), and the same seed gives
   the same pairs. There are far fewer recordings than images (2,700 for
   60,000 training images, 300 for 10,000 test images), so each recording
   recurs about 22 times in training and 33 times in test.

``dataset[i]`` returns ``(image (1, 28, 28) float32, sequence (T, F) float32, label int)``.

The image degradation follows the AV-MNIST benchmark, which also removes the
leading principal components of the MNIST images. The audio here is the clean
FSDD recordings, as log-mel frames that an LSTM reads one step at a time.
"""

from collections.abc import Callable
from typing import Any

import numpy as np

from tinymbm.data.audio import MelSpectrogram, NormalizeFeatures
from tinymbm.data.datasets import Dataset
from tinymbm.data.fsdd import FSDD
from tinymbm.errors import ShapeError

DEFAULT_REMOVE_ENERGY = 0.75
"""Fraction of the training images' variance that the removed components carry by default."""


# ---------------------------------------------------------------- image degradation


class PrincipalComponentRemoval:
    """Remove the leading principal components of a set of images.

    ``fit(train_images)`` computes the mean μ and the eigenvectors v_j of the
    covariance C = (1 / N) Σ_i (x_i - μ)(x_i - μ)ᵀ of the flattened images,
    sorted by eigenvalue λ_j, largest first. Calling the fitted object on
    images returns x' = x - Σ_{j<=k} v_j v_jᵀ (x - μ) in their original shape,
    as float32.

    Args:
        energy: remove the fewest leading components whose eigenvalues sum to
            at least this fraction of Σ_j λ_j, in (0, 1).
        num_components: remove exactly this many components (overrides energy).

    Attributes (after fit):
        mean: (D,) float64.
        components: (k, D) float64, one removed eigenvector per row.
        explained: (D,) float64, λ_j / Σ λ, largest first.
        num_components: k.
        energy_removed: Σ_{j<=k} λ_j / Σ λ, the fraction actually removed.
    """

    def __init__(
        self, energy: float | None = DEFAULT_REMOVE_ENERGY, num_components: int | None = None
    ) -> None:
        if num_components is None:
            if energy is None or not 0.0 < energy < 1.0:
                raise ValueError(
                    f"PrincipalComponentRemoval: energy must be in (0, 1), got {energy!r}"
                )
        elif (
            isinstance(num_components, bool)
            or not isinstance(num_components, (int, np.integer))
            or num_components < 0
        ):
            raise ValueError(
                "PrincipalComponentRemoval: num_components must be an int >= 0, "
                f"got {num_components!r}"
            )
        self.energy = energy
        self.requested_components = num_components
        self.mean: np.ndarray | None = None
        self.components: np.ndarray | None = None

    def fit(self, images: np.ndarray) -> "PrincipalComponentRemoval":
        """Fit μ and the leading eigenvectors on ``images`` of shape (N, ...) and return self."""
        flat = _flatten("PrincipalComponentRemoval.fit", images).astype(np.float64)
        if flat.shape[0] < 2:
            raise ValueError(
                f"PrincipalComponentRemoval.fit: need at least 2 images, got {flat.shape[0]}"
            )

        self.mean = flat.mean(axis=0)
        centred = flat - self.mean
        covariance = centred.T @ centred / flat.shape[0]

        # eigh returns eigenvalues in ascending order. Tiny negative ones are rounding error.
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        order = np.argsort(eigenvalues)[::-1]
        eigenvalues = np.clip(eigenvalues[order], 0.0, None)
        eigenvectors = eigenvectors[:, order]

        total = eigenvalues.sum()
        self.explained = eigenvalues / total if total > 0 else np.zeros_like(eigenvalues)
        if self.requested_components is not None:
            if self.requested_components > flat.shape[1]:
                raise ValueError(
                    f"PrincipalComponentRemoval: num_components={self.requested_components} "
                    f"exceeds the {flat.shape[1]} pixels per image"
                )
            k = self.requested_components
        else:
            cumulative = np.cumsum(self.explained)
            k = int(np.searchsorted(cumulative, self.energy - 1e-12) + 1)

        self.num_components = k
        self.energy_removed = float(self.explained[:k].sum())
        self.components = eigenvectors[:, :k].T.copy()
        return self

    def __call__(self, images: np.ndarray) -> np.ndarray:
        if self.components is None:
            raise RuntimeError("PrincipalComponentRemoval: call fit(train_images) before using it")
        flat = _flatten("PrincipalComponentRemoval", images).astype(np.float64)
        if flat.shape[1] != self.mean.shape[0]:
            raise ShapeError(
                f"PrincipalComponentRemoval: images have {flat.shape[1]} pixels "
                f"(shape {np.shape(images)}) but the fit had {self.mean.shape[0]}"
            )

        coefficients = (flat - self.mean) @ self.components.T
        degraded = flat - coefficients @ self.components

        return degraded.reshape(np.shape(images)).astype(np.float32)

    def __repr__(self) -> str:
        if self.components is None:
            return (
                f"PrincipalComponentRemoval(energy={self.energy}, "
                f"num_components={self.requested_components})"
            )
        return (
            f"PrincipalComponentRemoval(num_components={self.num_components}, "
            f"energy_removed={self.energy_removed:.3f})"
        )


def _flatten(name: str, images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim < 2:
        raise ShapeError(f"{name}: expected images of shape (N, ...), got shape {images.shape}")
    return images.reshape(images.shape[0], -1)


# ---------------------------------------------------------------- pairing


def pair_by_label(
    image_targets: np.ndarray, audio_targets: np.ndarray, seed: int | np.random.Generator | None = 0
) -> np.ndarray:
    """Choose, for every image, a recording of the same label.

    Within each label c, the recordings of c are shuffled, the shuffled list
    is repeated until it is as long as the list of images of c, and image
    number j of c (in index order) gets entry j. Each recording of c is so used
    ⌊n_c / r_c⌋ or ⌈n_c / r_c⌉ times.

    Args:
        image_targets: (N,) integer labels of the images.
        audio_targets: (R,) integer labels of the recordings.
        seed: an int seed, a ``numpy.random.Generator``, or None for the
            engine's generator (``tinymbm.random.generator()``).

    Returns:
        (N,) int64 indices into the recordings, with
        ``audio_targets[result[i]] == image_targets[i]`` for every i.

    Raises:
        ValueError: some image label has no recording.
    """
    image_targets = np.asarray(image_targets).reshape(-1)
    audio_targets = np.asarray(audio_targets).reshape(-1)
    rng = _generator_from(seed)

    audio_index = np.empty(image_targets.shape[0], dtype=np.int64)
    for label in np.unique(image_targets):
        images_of_label = np.flatnonzero(image_targets == label)
        recordings_of_label = np.flatnonzero(audio_targets == label)
        if recordings_of_label.size == 0:
            raise ValueError(
                f"pair_by_label: {images_of_label.size} images have label {label} "
                "but no recording does"
            )

        repeats = -(-images_of_label.size // recordings_of_label.size)
        shuffled = [rng.permutation(recordings_of_label) for _ in range(repeats)]
        audio_index[images_of_label] = np.concatenate(shuffled)[: images_of_label.size]
    return audio_index


def _generator_from(seed: int | np.random.Generator | None) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        from tinymbm.random import generator

        return generator()
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- the dataset


class AVMNIST(Dataset):
    """MNIST images paired with FSDD recordings of the same digit (see the module docstring).

    Args:
        root: passed to ``MNIST`` and ``FSDD``. None follows their usual search
            (TINYMBM_DATA, then the user cache).
        train: the training split (60,000 images, 2,700 recordings) if True,
            else the test split (10,000 images, 300 recordings).
        download: let ``MNIST`` and ``FSDD`` fetch missing data.
        seed: seed of the pairing (an int, a Generator, or None for the engine's generator).
        remove_energy: fraction of the training images' variance to remove
            with PCA, or None to keep the images as they are.
        remove_components: remove this many leading components instead.
        spectrogram: waveform -> (T, F) features. Defaults to ``MelSpectrogram()``.
        normalize_audio: standardise each feature with the FSDD training mean and std.

    Attributes:
        images: (N, 1, 28, 28) float32 images, degraded if requested.
        targets: (N,) int64 labels.
        sequences: (R, T, F) float32 features of the split's recordings.
        audio_targets: (R,) int64 labels of the recordings.
        audio_files: the R recordings' file names.
        audio_index: (N,) int64, image i is paired with ``sequences[audio_index[i]]``.
        pca: the fitted :class:`PrincipalComponentRemoval`, or None.

    ``arrays()`` returns None, so a DataLoader reads examples one at a time:
    the gathered training sequences alone would take 60,000 × T × F floats
    (460 MB at the defaults), while ``sequences`` stores each recording once.
    """

    def __init__(
        self,
        root: str | None = None,
        train: bool = True,
        download: bool = False,
        seed: int | np.random.Generator | None = 0,
        remove_energy: float | None = DEFAULT_REMOVE_ENERGY,
        remove_components: int | None = None,
        spectrogram: Callable[[np.ndarray], np.ndarray] | None = None,
        normalize_audio: bool = True,
    ) -> None:
        from tinymbm.data.mnist import MNIST

        self.train = bool(train)
        spectrogram = MelSpectrogram() if spectrogram is None else spectrogram

        mnist_train = MNIST(root, train=True, download=download)
        mnist = mnist_train if self.train else MNIST(root, train=False, download=download)
        fsdd_train = FSDD(root, train=True, download=download)
        fsdd = fsdd_train if self.train else FSDD(root, train=False, download=download)

        train_sequences = np.stack([spectrogram(waveform) for waveform in fsdd_train.recordings])
        if self.train:
            sequences = train_sequences
        else:
            sequences = np.stack([spectrogram(waveform) for waveform in fsdd.recordings])
        if normalize_audio:
            sequences = NormalizeFeatures.fit(train_sequences)(sequences)

        self._build(
            images=_mnist_images(mnist),
            targets=np.asarray(mnist.targets),
            sequences=sequences,
            audio_targets=fsdd.targets,
            audio_files=fsdd.files,
            seed=seed,
            pca=_make_pca(remove_energy, remove_components, _mnist_images(mnist_train)),
        )

    @classmethod
    def from_arrays(
        cls,
        images: np.ndarray,
        targets: np.ndarray,
        sequences: np.ndarray,
        audio_targets: np.ndarray,
        seed: int | np.random.Generator | None = 0,
        train_images: np.ndarray | None = None,
        remove_energy: float | None = None,
        remove_components: int | None = None,
        audio_files: list[str] | None = None,
    ) -> "AVMNIST":
        """Pair given arrays the same way, for other data or tests.

        Args:
            images: (N, 1, H, W) float images.
            targets: (N,) integer labels.
            sequences: (R, T, F) features of the recordings.
            audio_targets: (R,) integer labels.
            seed: seed of the pairing.
            train_images: images to fit the PCA on. Defaults to ``images``;
                pass the training images when ``images`` is a test split.
            remove_energy, remove_components: as in the constructor, off by default here.
            audio_files: the recordings' names, optional.
        """
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[1] != 1:
            raise ShapeError(
                f"AVMNIST.from_arrays: images must be (N, 1, H, W), got shape {images.shape}"
            )
        sequences = np.asarray(sequences, dtype=np.float32)
        if sequences.ndim != 3:
            raise ShapeError(
                f"AVMNIST.from_arrays: sequences must be (R, T, F), got shape {sequences.shape}"
            )

        dataset = cls.__new__(cls)
        dataset.train = None
        fit_on = images if train_images is None else np.asarray(train_images, dtype=np.float32)
        dataset._build(
            images=images,
            targets=np.asarray(targets),
            sequences=sequences,
            audio_targets=np.asarray(audio_targets),
            audio_files=audio_files,
            seed=seed,
            pca=_make_pca(remove_energy, remove_components, fit_on),
        )
        return dataset

    def _build(
        self,
        images: np.ndarray,
        targets: np.ndarray,
        sequences: np.ndarray,
        audio_targets: np.ndarray,
        audio_files: list[str] | None,
        seed: int | np.random.Generator | None,
        pca: PrincipalComponentRemoval | None,
    ) -> None:
        if targets.shape != (images.shape[0],):
            raise ShapeError(
                f"AVMNIST: {images.shape[0]} images but targets have shape {targets.shape}"
            )
        if audio_targets.shape != (sequences.shape[0],):
            raise ShapeError(
                f"AVMNIST: {sequences.shape[0]} sequences "
                f"but audio targets have shape {audio_targets.shape}"
            )

        self.pca = pca
        self.images = images if pca is None else pca(images)
        self.targets = targets.astype(np.int64)
        self.sequences = sequences.astype(np.float32)
        self.audio_targets = audio_targets.astype(np.int64)
        self.audio_files = list(audio_files) if audio_files is not None else None
        self.audio_index = pair_by_label(self.targets, self.audio_targets, seed)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, int]:
        return self.images[index], self.sequences[self.audio_index[index]], int(self.targets[index])

    def __repr__(self) -> str:
        split = {True: "train", False: "test", None: "arrays"}[self.train]
        removed = "none" if self.pca is None else f"{self.pca.num_components} components"
        return (
            f"AVMNIST(split={split!r}, size={len(self)}, recordings={self.sequences.shape[0]}, "
            f"sequence_shape={self.sequences.shape[1:]}, pca_removed={removed})"
        )


def _mnist_images(mnist: Any) -> np.ndarray:
    """Return an MNIST dataset's images as (N, 1, 28, 28) float32 in [0, 1]."""
    images = np.asarray(mnist.data)
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    images = images.astype(np.float32) / np.float32(scale)
    return images.reshape(images.shape[0], 1, *images.shape[-2:])


def _make_pca(
    remove_energy: float | None, remove_components: int | None, train_images: np.ndarray
) -> PrincipalComponentRemoval | None:
    if remove_energy is None and remove_components is None:
        return None
    return PrincipalComponentRemoval(remove_energy, remove_components).fit(train_images)
