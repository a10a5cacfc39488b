"""MNIST and Fashion-MNIST, found on disk first and downloaded only on request.

Where the IDX files are looked for, in order (the first folder holding both
files of the requested split wins; each file raw or .gz):

1. ``root``, when given: ``root/mnist``, ``root/MNIST/raw`` (torchvision's
   layout), then ``root`` itself. Fashion-MNIST uses ``fashion-mnist`` and
   ``FashionMNIST/raw``.
2. The environment variable ``TINYMBM_DATA``, in the same three layouts: a folder
   containing ``mnist/`` and ``fashion-mnist/``, or the folder of the files.
3. The user cache: ``$XDG_CACHE_HOME/tinymbm/mnist``, by default
   ``~/.cache/tinymbm/mnist``.
4. With ``download=True`` only: a download into ``root/mnist`` when ``root`` is
   given, else into the user cache, with SHA-256 checks (see ``download.py``).

File names are the canonical ones: ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .datasets import Dataset
from .download import (
    DEFAULT_TIMEOUT,
    SHA256,
    SHA256_UNCOMPRESSED,
    ChecksumError,
    DownloadError,
    download_dataset,
    sha256_file,
)
from .idx import IDXError, read_idx_images, read_idx_labels

__all__ = [
    "DATA_ENV_VAR",
    "MNIST",
    "DatasetNotFoundError",
    "FashionMNIST",
    "MNISTArrays",
    "cache_dir",
    "load_mnist",
]

DATA_ENV_VAR = "TINYMBM_DATA"
IMAGE_SIZE = 28
NUM_CLASSES = 10

SPLIT_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DatasetNotFoundError(FileNotFoundError):
    """No folder contains the data set's files, and no download was requested or it failed.

    The message names every place looked, every URL tried, and how to get the data.
    """


def cache_dir() -> Path:
    """Return tinymbm's user cache folder: ``$XDG_CACHE_HOME/tinymbm`` or ``~/.cache/tinymbm``.

    A relative ``XDG_CACHE_HOME`` is ignored, as the XDG base directory
    specification requires.
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "tinymbm"


def _find_file(folder: Path, name: str) -> Path | None:
    """Return ``folder/name`` or ``folder/name.gz``, whichever exists (raw first), else None."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


class MNIST(Dataset):
    """The MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28.

    ``dataset[i]`` is ``(image, label)``. Without a transform, ``image`` is the
    uint8 array (28, 28) with 0 for background and 255 for full ink. (torchvision
    returns a PIL image here; tinymbm returns the array.) ``label`` is an int in
    0..9.

    Args:
        root: a folder to look in first (see the module docstring for layouts);
            with ``download=True`` the files are downloaded into ``root/mnist``.
        train: the training split (True) or the test split (False).
        download: download the files when no folder contains them.
        transform: called on each image, e.g. ``transforms.ToTensor()``.
        target_transform: called on each label.
        verify: check the SHA-256 of files found on disk against the published
            sums (downloads are always checked).
        mirrors: base URLs to download from; see ``download.resolve_mirrors``.
        timeout: seconds a download waits for the connection and for each read.

    Attributes:
        data: uint8 array (N, 28, 28).
        targets: int64 array (N,).
        classes: the class names, index = label.
        folder: the folder the files were read from.
        source: where that folder came from: ``"root"``, ``"TINYMBM_DATA"``,
            ``"cache"`` or ``"download"``.

    Raises:
        DatasetNotFoundError: no folder holds the files and no download was
            requested, or every download mirror failed.
        IDXError: a file is corrupt, or the images and labels do not match.
        ChecksumError: a downloaded file, or with ``verify=True`` a file on
            disk, has the wrong SHA-256.
    """

    name = "MNIST"
    dataset_key = "mnist"
    torchvision_folder = "MNIST"
    classes: ClassVar[list[str]] = [
        "0 - zero",
        "1 - one",
        "2 - two",
        "3 - three",
        "4 - four",
        "5 - five",
        "6 - six",
        "7 - seven",
        "8 - eight",
        "9 - nine",
    ]

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        train: bool = True,
        download: bool = False,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
        verify: bool = False,
        mirrors: Sequence[str] | str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.root = Path(root).expanduser() if root is not None else None
        self.train = bool(train)
        self.transform = transform
        self.target_transform = target_transform

        self.folder, self.source = self._locate(download, mirrors, timeout)
        images_name, labels_name = SPLIT_FILES[self.train]
        images_path = _find_file(self.folder, images_name)
        labels_path = _find_file(self.folder, labels_name)
        assert images_path is not None and labels_path is not None

        if verify:
            self._verify(images_path)
            self._verify(labels_path)

        self.data = read_idx_images(images_path)
        self.targets = read_idx_labels(labels_path).astype(np.int64)
        self._check_contents(images_path, labels_path)

    @property
    def split(self) -> str:
        return "train" if self.train else "test"

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {name: index for index, name in enumerate(self.classes)}

    def candidate_folders(self) -> list[tuple[Path, str]]:
        """Return the folders looked in, in order, each with its origin (``"root"``, ...)."""
        candidates = []

        # NOTE: MNIST and Fashion-MNIST use the same file names, so a base folder
        # that directly contains one of them is accepted by both classes.
        def add_layouts(base: Path, origin: str) -> None:
            for folder in (base / self.dataset_key, base / self.torchvision_folder / "raw", base):
                candidates.append((folder, origin))

        if self.root is not None:
            add_layouts(self.root, "root")
        env_value = os.environ.get(DATA_ENV_VAR, "")
        if env_value:
            add_layouts(Path(env_value).expanduser(), DATA_ENV_VAR)
        candidates.append((cache_dir() / self.dataset_key, "cache"))

        return candidates

    def _locate(
        self, download: bool, mirrors: Sequence[str] | str | None, timeout: float
    ) -> tuple[Path, str]:
        names = SPLIT_FILES[self.train]
        candidates = self.candidate_folders()

        for folder, origin in candidates:
            if all(_find_file(folder, name) is not None for name in names):
                return folder, origin

        if not download:
            raise DatasetNotFoundError(self._not_found_message(candidates, None))

        if self.root is not None:
            target = self.root / self.dataset_key
        else:
            target = cache_dir() / self.dataset_key
        try:
            download_dataset(
                self.dataset_key, target, [f"{name}.gz" for name in names], mirrors, timeout
            )
        except DownloadError as error:
            raise DatasetNotFoundError(self._not_found_message(candidates, error)) from error
        return target, "download"

    def _not_found_message(
        self, candidates: list[tuple[Path, str]], error: DownloadError | None
    ) -> str:
        names = SPLIT_FILES[self.train]
        lines = [
            (
                f"{self.name} ({self.split} split) not found: no folder holds both "
                f"{names[0]}[.gz] and {names[1]}[.gz]. Looked in:"
            )
        ]

        for folder, origin in candidates:
            if not folder.is_dir():
                state = "no such folder"
            else:
                missing = [f"{name}[.gz]" for name in names if _find_file(folder, name) is None]
                state = "missing " + " and ".join(missing)
            lines.append(f"  {folder}  (from {origin}: {state})")
        if not os.environ.get(DATA_ENV_VAR):
            lines.append(f"  ${DATA_ENV_VAR} is not set")

        if error is None:
            lines.append("No download was requested (download=False).")
        else:
            lines.append(f"The download of {error.filename} failed; URLs tried:")
            lines.extend(f"  {url}: {reason}" for url, reason in error.attempts)

        cache = cache_dir() / self.dataset_key
        lines.append(
            f"To fix this, set {DATA_ENV_VAR} to a folder that contains {self.dataset_key}/ "
            f"with the four IDX files, pass root= (--data-dir in the lessons), or pass "
            f"download=True with network access to download them into {cache}."
        )
        return "\n".join(lines)

    def _verify(self, path: Path) -> None:
        if path.suffix == ".gz":
            expected = SHA256[self.dataset_key][path.name]
        else:
            expected = SHA256_UNCOMPRESSED[self.dataset_key][path.name]

        actual = sha256_file(path)
        if actual != expected:
            raise ChecksumError(
                f"{path}: SHA-256 mismatch: expected {expected}, got {actual}; "
                f"the file was left in place. Delete it and download it again.",
                path.name,
                expected,
                actual,
            )

    def _check_contents(self, images_path: Path, labels_path: Path) -> None:
        n, rows, columns = self.data.shape
        if (rows, columns) != (IMAGE_SIZE, IMAGE_SIZE):
            raise IDXError(
                f"{images_path}: images are {rows}x{columns}, expected "
                f"{IMAGE_SIZE}x{IMAGE_SIZE} for {self.name}"
            )
        if len(self.targets) != n:
            raise IDXError(
                f"{labels_path}: {len(self.targets)} labels but {images_path} has {n} images"
            )
        if n and self.targets.max() >= NUM_CLASSES:
            raise IDXError(
                f"{labels_path}: label {self.targets.max()} is out of range, "
                f"expected 0..{NUM_CLASSES - 1}"
            )

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image: Any = self.data[index]
        label: Any = int(self.targets[index])

        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label

    def arrays(self) -> tuple[np.ndarray, ...] | None:
        if self.transform is not None or self.target_transform is not None:
            return None
        return self.data, self.targets

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, examples={len(self)}, "
            f"folder={str(self.folder)!r}, source={self.source!r})"
        )


class FashionMNIST(MNIST):
    """Fashion-MNIST: 28x28 grey-scale photos of ten kinds of clothing, in MNIST's format.

    Same API and search order as ``MNIST``, with the folders ``fashion-mnist``
    (and torchvision's ``FashionMNIST/raw``) in place of ``mnist``.
    """

    name = "Fashion-MNIST"
    dataset_key = "fashion-mnist"
    torchvision_folder = "FashionMNIST"
    classes: ClassVar[list[str]] = [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ]


class MNISTArrays(NamedTuple):
    """The arrays of one split and where they came from."""

    images: np.ndarray
    """uint8 (N, 28, 28), 0 background to 255 full ink."""
    labels: np.ndarray
    """int64 (N,), values 0..9."""
    source: str
    """``"mnist"``, ``"fashion-mnist"`` or ``"synthetic"``."""


# Data sets whose synthetic fallback has been announced, so each is announced once.
_FALLBACK_ANNOUNCED: set[str] = set()


def load_mnist(
    data_dir: str | os.PathLike | None = None,
    train: bool = True,
    download: bool = False,
    fallback: bool = True,
    fashion: bool = False,
    synthetic_size: int | None = None,
    seed: int = 0,
) -> MNISTArrays:
    """Load one split of MNIST (or Fashion-MNIST) as arrays, or synthetic digits.

    The real data is looked for as ``MNIST`` does. When it is not found (or
    its download fails) and ``fallback`` is True, synthetic MNIST-style digits
    are returned instead. One line on stderr then states that and how to get
    the real data.

    Args:
        data_dir: a folder to look in first (a lesson's ``--data-dir``).
        train: the training split (True) or the test split (False).
        download: download the real files when no folder holds them.
        fallback: return synthetic digits instead of raising when the data is
            not found.
        fashion: load Fashion-MNIST instead of MNIST (the fallback is still digits).
        synthetic_size: number of synthetic examples (default: 60,000 for the
            training split, 10,000 for the test split, as MNIST).
        seed: seed of the synthetic digits.

    Returns:
        ``MNISTArrays(images, labels, source)``: uint8 (N, 28, 28), int64 (N,),
        and ``"mnist"``, ``"fashion-mnist"`` or ``"synthetic"``.
    """
    dataset_class = FashionMNIST if fashion else MNIST
    if data_dir is not None and not os.path.isdir(data_dir):
        # A folder the user named explicitly must exist: silently training on
        # synthetic digits because of a typo would give a wrong result.
        raise FileNotFoundError(f"load_mnist: the data folder {os.fspath(data_dir)!r} does not exist")
    try:
        dataset = dataset_class(data_dir, train=train, download=download)
        return MNISTArrays(dataset.data, dataset.targets, dataset.dataset_key)
    except (DatasetNotFoundError, ChecksumError) as error:
        if not fallback:
            raise
        reason = "not found" if isinstance(error, DatasetNotFoundError) else "failed its checksum"

    # Imported here because rendering the glyphs needs matplotlib and PIL,
    # which loading real MNIST does not.
    from .synthetic import make_synthetic_digits

    if synthetic_size is not None:
        n = synthetic_size
    else:
        n = 60_000 if train else 10_000
    if dataset_class.name not in _FALLBACK_ANNOUNCED:
        _FALLBACK_ANNOUNCED.add(dataset_class.name)
        print(
            f"tinymbm: {dataset_class.name} {reason}, so using synthetic MNIST-style digits; "
            f"for the real data set {DATA_ENV_VAR}=/path/to/data (a folder containing "
            f"{dataset_class.dataset_key}/), pass --data-dir, or call MNIST(root, download=True) once.",
            file=sys.stderr,
        )
    images, labels = make_synthetic_digits(n, seed=seed, train=train)
    return MNISTArrays(images, labels, "synthetic")
