"""DataLoader, collation, TensorDataset and Subset."""

from collections import namedtuple

import numpy as np
import pytest

import tinymbm as tm
from tinymbm.data import (
    DataLoader,
    Dataset,
    Subset,
    SyntheticDigits,
    TensorDataset,
    default_collate,
)
from tinymbm.errors import ShapeError


class ItemsOnly(Dataset):
    """Wrap a dataset but hide its arrays(), so the loader must call __getitem__."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.calls = 0

    def __getitem__(self, index):
        self.calls += 1
        return self.dataset[index]

    def __len__(self):
        return len(self.dataset)


class CountingTensorDataset(TensorDataset):
    def __init__(self, *tensors):
        super().__init__(*tensors)
        self.calls = 0

    def __getitem__(self, index):
        self.calls += 1
        return super().__getitem__(index)


def numbered(n: int) -> TensorDataset:
    return TensorDataset(np.arange(n, dtype=np.float32)[:, None], np.arange(n))


def first_column(batches) -> list[list[int]]:
    return [batch[1].data.tolist() for batch in batches]


BATCH_CASES = [
    # n, batch_size, drop_last, expected batch sizes
    (10, 3, False, [3, 3, 3, 1]),
    (10, 3, True, [3, 3, 3]),
    (9, 3, False, [3, 3, 3]),
    (9, 3, True, [3, 3, 3]),
    (2, 5, False, [2]),
    (2, 5, True, []),
    (0, 4, False, []),
    (7, 1, False, [1] * 7),
]


@pytest.mark.parametrize("n, batch_size, drop_last, sizes", BATCH_CASES)
def test_loader_batch_counts(n, batch_size, drop_last, sizes):
    loader = DataLoader(numbered(n), batch_size=batch_size, drop_last=drop_last)

    batches = list(loader)

    assert len(loader) == len(sizes), f"n={n} batch_size={batch_size} drop_last={drop_last}"
    assert [len(b[1].data) for b in batches] == sizes, f"n={n} batch_size={batch_size}"


def test_loader_in_order():
    batches = list(DataLoader(numbered(5), batch_size=2))

    assert first_column(batches) == [[0, 1], [2, 3], [4]]


@pytest.mark.parametrize("bad", [0, -1, -64])
def test_loader_nonpositive_batch_size(bad):
    with pytest.raises(ValueError, match=f"batch_size must be > 0, got {bad}"):
        DataLoader(numbered(4), batch_size=bad)


@pytest.mark.parametrize("bad", [2.0, "8", None, True])
def test_loader_batch_size_type(bad):
    with pytest.raises(TypeError, match="batch_size must be an int"):
        DataLoader(numbered(4), batch_size=bad)


def test_shuffle_reproducible_by_seed():
    loader_a = DataLoader(numbered(20), 6, shuffle=True, seed=3)
    loader_b = DataLoader(numbered(20), 6, shuffle=True, seed=3)

    epochs_a = [first_column(loader_a) for _ in range(3)]
    epochs_b = [first_column(loader_b) for _ in range(3)]

    assert epochs_a == epochs_b


def test_shuffle_new_order_each_epoch():
    loader = DataLoader(numbered(20), 20, shuffle=True, seed=3)

    first, second = first_column(loader), first_column(loader)

    assert first != second


def test_shuffle_visits_every_example():
    loader = DataLoader(numbered(23), 5, shuffle=True, seed=1)

    seen = sorted(i for batch in first_column(loader) for i in batch)

    assert seen == list(range(23))


def test_shuffle_seeds_differ():
    a = first_column(DataLoader(numbered(20), 20, shuffle=True, seed=1))
    b = first_column(DataLoader(numbered(20), 20, shuffle=True, seed=2))

    assert a != b


def test_shuffle_uses_manual_seed():
    tm.manual_seed(7)
    a = first_column(DataLoader(numbered(20), 20, shuffle=True))
    tm.manual_seed(7)
    b = first_column(DataLoader(numbered(20), 20, shuffle=True))

    assert a == b


def test_loader_batch_dtypes():
    dataset = SyntheticDigits(n=10, seed=0)

    images, labels = next(iter(DataLoader(dataset, batch_size=4)))

    assert isinstance(images, tm.Tensor)
    assert images.dtype == np.float32
    assert images.shape == (4, 28, 28)
    assert labels.dtype == np.int64
    assert labels.shape == (4,)


def test_fast_path_skips_getitem():
    dataset = CountingTensorDataset(np.zeros((10, 2), np.float32), np.arange(10))

    list(DataLoader(dataset, batch_size=3, shuffle=True, seed=0))

    assert dataset.calls == 0


FAST_PATH_CASES = [
    ("uint8 images", lambda: SyntheticDigits(n=23, seed=4)),
    ("float64 rows", lambda: TensorDataset(np.random.default_rng(0).normal(size=(23, 3)), np.arange(23))),
    ("float32 tensor", lambda: TensorDataset(tm.randn(23, 2, 2), tm.tensor(np.arange(23)))),
    ("bool column", lambda: TensorDataset(np.arange(23) % 2 == 0)),
    ("int32 labels", lambda: TensorDataset(np.arange(23, dtype=np.int32))),
]


@pytest.mark.parametrize("name, make", FAST_PATH_CASES, ids=[case[0] for case in FAST_PATH_CASES])
def test_fast_path_equals_getitem(name, make):
    dataset = make()
    fast = DataLoader(dataset, batch_size=5, shuffle=True, seed=11)
    slow = DataLoader(ItemsOnly(dataset), batch_size=5, shuffle=True, seed=11)

    for fast_batch, slow_batch in zip(fast, slow, strict=True):
        assert len(fast_batch) == len(slow_batch), name
        for fast_field, slow_field in zip(fast_batch, slow_batch):
            assert fast_field.dtype == slow_field.dtype, name
            np.testing.assert_array_equal(fast_field.data, slow_field.data, err_msg=name)


def test_transform_turns_off_fast_path():
    dataset = SyntheticDigits(n=6, seed=0, transform=lambda image: image[:2])

    images, _ = next(iter(DataLoader(dataset, batch_size=6)))

    assert images.shape == (6, 2, 28)


def test_collate_fn_used():
    loader = DataLoader(numbered(4), batch_size=2, collate_fn=lambda examples: len(examples))

    assert list(loader) == [2, 2]


# ---------------------------------------------------------------- default_collate

Pair = namedtuple("Pair", "x y")


def test_collate_ints_and_floats():
    ints, floats = default_collate([(1, 0.5), (2, 1.5)])

    assert ints.dtype == np.int64
    assert floats.dtype == np.float32
    assert ints.data.tolist() == [1, 2]


def test_collate_uint8_to_float32_unscaled():
    batch = default_collate([np.full((2, 2), 255, np.uint8), np.zeros((2, 2), np.uint8)])

    assert batch.dtype == np.float32
    assert batch.data.max() == 255.0


def test_collate_tensors_stacked():
    batch = default_collate([tm.ones(3), tm.zeros(3)])

    assert batch.shape == (2, 3)
    assert batch.dtype == np.float32
    assert batch.requires_grad is False


def test_collate_dict():
    batch = default_collate([{"x": 1, "name": "a"}, {"x": 2, "name": "b"}])

    assert batch["x"].data.tolist() == [1, 2]
    assert batch["name"] == ["a", "b"]


def test_collate_namedtuple():
    batch = default_collate([Pair(1, 2.0), Pair(3, 4.0)])

    assert isinstance(batch, Pair)
    assert batch.x.data.tolist() == [1, 3]


def test_collate_shape_mismatch():
    with pytest.raises(ShapeError, match=r"different shapes \[\(2,\), \(3,\)\]"):
        default_collate([np.zeros(2), np.zeros(3)])


def test_collate_unknown_type():
    with pytest.raises(TypeError, match="cannot batch examples of type object"):
        default_collate([object(), object()])


# ---------------------------------------------------------------- datasets


def test_tensor_dataset_items():
    dataset = TensorDataset(np.arange(6).reshape(3, 2), [7, 8, 9])

    x, y = dataset[1]

    assert len(dataset) == 3
    assert x.tolist() == [2, 3]
    assert y == 8


def test_tensor_dataset_tensor_items():
    dataset = TensorDataset(tm.arange(4))

    assert isinstance(dataset[2][0], tm.Tensor)


def test_tensor_dataset_length_mismatch():
    with pytest.raises(ValueError, match=r"first dimensions differ: shapes \(3,\), \(4,\)"):
        TensorDataset(np.zeros(3), np.zeros(4))


def test_tensor_dataset_empty_call():
    with pytest.raises(ValueError, match="at least one"):
        TensorDataset()


def test_subset_items_and_arrays():
    subset = Subset(numbered(10), [9, 0, 4])

    assert len(subset) == 3
    assert subset[0][1] == 9
    np.testing.assert_array_equal(subset.arrays()[1], [9, 0, 4])
    assert first_column(DataLoader(subset, batch_size=3)) == [[9, 0, 4]]


def test_subset_index_out_of_range():
    with pytest.raises(IndexError, match="indices range from 0 to 10 but the dataset has 10"):
        Subset(numbered(10), [0, 10])


def test_dataset_base_not_implemented():
    with pytest.raises(NotImplementedError, match="Dataset must implement __getitem__"):
        Dataset()[0]
