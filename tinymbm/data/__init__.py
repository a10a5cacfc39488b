"""Data for tinymbm: datasets, batching, transforms, and MNIST found offline first.

    from tinymbm.data import MNIST, DataLoader, transforms

    train = MNIST(train=True, transform=transforms.ToTensor())
    for images, labels in DataLoader(train, batch_size=64, shuffle=True, seed=0):
        ...  # images: float32 Tensor (64, 1, 28, 28); labels: int64 Tensor (64,)

MNIST is looked for in ``root``, then ``$TINYMBM_DATA``, then the user cache,
and downloaded only with ``download=True``. When none of those has it,
``load_mnist`` falls back to synthetic MNIST-style digits.
"""

from . import transforms
from .audio import MelSpectrogram, NormalizeFeatures, Spectrogram, feature_mean_std
from .avmnist import AVMNIST, PrincipalComponentRemoval, pair_by_label
from .datasets import Dataset, Subset, TensorDataset
from .download import ChecksumError, DownloadError
from .folder import ImageFolder
from .fsdd import FSDD, WavFormatError, read_wav
from .idx import IDXError, read_idx, read_idx_images, read_idx_labels, write_idx
from .loader import DataLoader, default_collate
from .mnist import (
    MNIST,
    DatasetNotFoundError,
    FashionMNIST,
    MNISTArrays,
    cache_dir,
    load_mnist,
)
from .synthetic import SyntheticDigits, make_synthetic_digits, save_synthetic_idx

__all__ = [
    "MNIST",
    "ChecksumError",
    "DataLoader",
    "Dataset",
    "DatasetNotFoundError",
    "DownloadError",
    "FashionMNIST",
    "IDXError",
    "ImageFolder",
    "MNISTArrays",
    "Subset",
    "SyntheticDigits",
    "TensorDataset",
    "cache_dir",
    "default_collate",
    "load_mnist",
    "make_synthetic_digits",
    "read_idx",
    "read_idx_images",
    "read_idx_labels",
    "save_synthetic_idx",
    "transforms",
    "write_idx",
]
__all__ += ["AVMNIST", "FSDD", "MelSpectrogram", "NormalizeFeatures", "PrincipalComponentRemoval"]
__all__ += ["Spectrogram", "WavFormatError", "feature_mean_std", "pair_by_label", "read_wav"]

from .paired import Degradation, Description, PairedMNIST, text_bayes_accuracy

__all__ += ["Degradation", "Description", "PairedMNIST", "text_bayes_accuracy"]
