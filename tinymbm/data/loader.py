"""``DataLoader``: batches of a dataset as tinymbm Tensors, in order or shuffled.

Collation (``default_collate``) stacks the examples of a batch field by field:

- NumPy arrays and NumPy scalars: ``np.stack``; uint8 becomes float32 with its
  values kept (0..255; ``transforms.ToTensor`` is what scales to [0, 1]), other
  integers become int64, floating arrays keep their dtype (float16 -> float32);
- Tensors: their arrays are stacked into a new Tensor with no graph (a loader
  feeds inputs, not parameters);
- Python ints -> int64, Python floats -> float32, bools -> bool;
- tuples and lists -> a list with one collated entry per field (a named tuple
  stays a named tuple), dicts -> a dict per key, strings -> a list.

Fast path: when the dataset's ``arrays()`` returns arrays (a ``TensorDataset``,
or ``MNIST`` without transforms) and no ``collate_fn`` is given, a batch is
built by indexing each array once with the batch's indices. It gives the same
batch as collating the examples one by one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from tinymbm import random as tm_random
from tinymbm.errors import DTypeError, ShapeError
from tinymbm.tensor import Tensor

__all__ = ["DataLoader", "default_collate"]


def _as_batch_tensor(array: np.ndarray) -> Tensor:
    """Wrap a stacked batch in a Tensor, with the dtype rules of the module docstring."""
    if array.dtype == np.uint8 or array.dtype == np.float16:
        array = array.astype(np.float32)
    elif array.dtype.kind in "iu":
        array = array.astype(np.int64, copy=False)
    elif array.dtype.kind not in "fb":
        raise DTypeError(
            f"collate: cannot make a Tensor of dtype {array.dtype}; "
            f"expected numbers (integer, floating or bool)"
        )
    return Tensor(array)


def _stack(arrays: Sequence[np.ndarray]) -> np.ndarray:
    shapes = {np.shape(a) for a in arrays}
    if len(shapes) > 1:
        raise ShapeError(
            f"collate: the examples of a batch have different shapes {sorted(shapes)}; "
            f"resize them to one shape (e.g. with transforms.Resize) or pass a collate_fn"
        )
    return np.stack(arrays)


def default_collate(batch: Sequence[Any]) -> Any:
    """Stack a list of examples into a batch; see the module docstring for each type.

    Args:
        batch: the examples, all of the same structure.

    Returns:
        A Tensor of shape (B, ...) for a list of arrays, Tensors or numbers, or a
        list, named tuple or dict of such Tensors for structured examples.
    """
    if len(batch) == 0:
        raise ValueError("collate: the batch is empty")
    first = batch[0]

    if isinstance(first, Tensor):
        return Tensor(_stack([example.data for example in batch]))
    if isinstance(first, (np.ndarray, np.generic)):
        return _as_batch_tensor(_stack([np.asarray(example) for example in batch]))
    if isinstance(first, bool):
        return Tensor(np.asarray(batch, dtype=np.bool_))
    if isinstance(first, int):
        return Tensor(np.asarray(batch, dtype=np.int64))
    if isinstance(first, float):
        return Tensor(np.asarray(batch, dtype=np.float32))
    if isinstance(first, str):
        return list(batch)
    if isinstance(first, Mapping):
        return {key: default_collate([example[key] for example in batch]) for key in first}

    if isinstance(first, (tuple, list)):
        lengths = {len(example) for example in batch}
        if len(lengths) > 1:
            raise ShapeError(
                f"collate: the examples of a batch have different lengths {sorted(lengths)}"
            )
        fields = [default_collate(list(values)) for values in zip(*batch)]
        if isinstance(first, tuple) and hasattr(first, "_fields"):
            return type(first)(*fields)
        return fields

    raise TypeError(
        f"collate: cannot batch examples of type {type(first).__name__}; expected arrays, "
        f"Tensors, numbers, strings, or tuples, lists or dicts of them"
    )


class DataLoader:
    """Iterate over a dataset in batches.

    Each epoch (each ``iter(loader)``) visits every example once: in index
    order, or in a fresh random permutation when ``shuffle`` is True.

    Args:
        dataset: anything with ``__len__`` and ``__getitem__``; datasets whose
            ``arrays()`` returns arrays are batched without a Python loop.
        batch_size: examples per batch (> 0).
        shuffle: visit the examples in a new random order each epoch.
        drop_last: drop the last batch when it has fewer than ``batch_size``
            examples.
        seed: seed of the shuffling. With a seed, the loader owns a
            ``np.random.default_rng(seed)`` and each epoch draws the next
            permutation from it, so two loaders with one seed give the same
            sequence of epochs. Without one, the permutations come from
            ``tinymbm.random.generator()`` (set by ``tm.manual_seed``).
        collate_fn: builds a batch from a list of examples (default:
            ``default_collate``); turns off the fast path.

    ``len(loader)`` is the number of batches: ``N // batch_size`` with
    ``drop_last``, else ``ceil(N / batch_size)``.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(f"DataLoader: batch_size must be an int, got {batch_size!r}")
        if batch_size <= 0:
            raise ValueError(f"DataLoader: batch_size must be > 0, got {batch_size}")

        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = seed
        self.collate_fn = collate_fn
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def __len__(self) -> int:
        n = len(self.dataset)
        if self.drop_last:
            return n // self.batch_size
        return math.ceil(n / self.batch_size)

    def _epoch_order(self, n: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(n)
        rng = self._rng if self._rng is not None else tm_random.generator()
        return rng.permutation(n)

    def __iter__(self) -> Iterator[Any]:
        n = len(self.dataset)
        order = self._epoch_order(n)

        arrays = None
        if self.collate_fn is None:
            arrays = getattr(self.dataset, "arrays", lambda: None)()

        for start in range(0, n, self.batch_size):
            indices = order[start : start + self.batch_size]
            if self.drop_last and len(indices) < self.batch_size:
                return

            if arrays is not None:
                yield [_as_batch_tensor(array[indices]) for array in arrays]
            else:
                examples = [self.dataset[int(i)] for i in indices]
                yield (self.collate_fn or default_collate)(examples)

    def __repr__(self) -> str:
        return (
            f"DataLoader(dataset={type(self.dataset).__name__}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, seed={self.seed!r})"
        )
