"""Map-style datasets: ``Dataset``, ``TensorDataset`` and ``Subset``.

A dataset maps an index ``0 <= i < len(dataset)`` to one example, usually a
tuple ``(input, target)``, as in PyTorch's ``torch.utils.data``.

Datasets whose examples are rows of whole arrays also implement ``arrays()``.
``DataLoader`` then builds a batch by indexing those arrays once, instead of
calling ``__getitem__`` once per example in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["Dataset", "Subset", "TensorDataset"]


class Dataset:
    """Base class of map-style datasets. Subclasses implement ``__getitem__`` and ``__len__``."""

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")

    def arrays(self) -> tuple[np.ndarray, ...] | None:
        """Return arrays A_0, ..., A_{F-1} with ``self[i] == (A_0[i], ..., A_{F-1}[i])``, or None.

        The default returns None: examples can only be read one at a time. A
        dataset returns arrays only when its examples are exactly their rows, for
        example when no transform is set, so that batching rows of the arrays
        gives the same batch as collating the examples.
        """
        return None


def _array_of(value: Any) -> np.ndarray:
    """Return the NumPy array behind a tinymbm Tensor, or ``np.asarray(value)``."""
    data = getattr(value, "data", None)
    if isinstance(data, np.ndarray) and not isinstance(value, np.ndarray):
        return data
    return np.asarray(value)


class TensorDataset(Dataset):
    """Examples that are the rows of arrays or Tensors of equal first dimension.

    ``TensorDataset(x, y)[i]`` is ``(x[i], y[i])``, indexed as the inputs are: a
    Tensor gives a Tensor, an array gives an array (or a NumPy scalar).

    Args:
        *tensors: NumPy arrays or tinymbm Tensors, each of shape (N, ...).
    """

    def __init__(self, *tensors: Any) -> None:
        if not tensors:
            raise ValueError("TensorDataset needs at least one array or Tensor")

        converted = []
        for value in tensors:
            if isinstance(value, (list, tuple)):
                value = np.asarray(value)
            if np.ndim(_array_of(value)) == 0:
                raise ValueError(
                    f"TensorDataset: every input needs a first dimension, got a scalar {value!r}"
                )
            converted.append(value)

        lengths = [len(_array_of(value)) for value in converted]
        if len(set(lengths)) > 1:
            shapes = ", ".join(str(_array_of(value).shape) for value in converted)
            raise ValueError(f"TensorDataset: the first dimensions differ: shapes {shapes}")

        self.tensors = tuple(converted)

    def __getitem__(self, index: int) -> tuple:
        return tuple(value[index] for value in self.tensors)

    def __len__(self) -> int:
        return len(_array_of(self.tensors[0]))

    def arrays(self) -> tuple[np.ndarray, ...]:
        return tuple(_array_of(value) for value in self.tensors)


class Subset(Dataset):
    """The examples of ``dataset`` at ``indices``: ``Subset(d, idx)[i] == d[idx[i]]``.

    Args:
        dataset: any dataset.
        indices: a sequence of integer indices into ``dataset``.
    """

    def __init__(self, dataset: Dataset, indices: Sequence[int] | np.ndarray) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)

        n = len(dataset)
        if self.indices.size and (self.indices.min() < -n or self.indices.max() >= n):
            raise IndexError(
                f"Subset: indices range from {self.indices.min()} to {self.indices.max()} "
                f"but the dataset has {n} examples"
            )

    def __getitem__(self, index: int) -> Any:
        return self.dataset[int(self.indices[index])]

    def __len__(self) -> int:
        return len(self.indices)

    def arrays(self) -> tuple[np.ndarray, ...] | None:
        base = getattr(self.dataset, "arrays", lambda: None)()
        if base is None:
            return None
        return tuple(array[self.indices] for array in base)
