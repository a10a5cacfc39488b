"""Tensor creation, dtype rules, conversion and the factory functions."""

import numpy as np
import pytest

import tinymbm as tm
from tinymbm.errors import DTypeError


@pytest.mark.parametrize(
    "data, dtype",
    [
        (1.5, np.float32),
        ([1.0, 2.0], np.float32),
        (3, np.int64),
        ([1, 2], np.int64),
        (np.zeros(2, dtype=np.float64), np.float64),
        (np.zeros(2, dtype=np.float32), np.float32),
        (np.zeros(2, dtype=np.int32), np.int64),
        (np.zeros(2, dtype=np.uint8), np.int64),
        ([True, False], np.bool_),
    ],
)
def test_tensor_dtype_rules(data, dtype):
    assert tm.tensor(data).dtype == dtype


def test_tensor_explicit_dtype():
    assert tm.tensor([1, 2], dtype=tm.float64).dtype == np.float64
    assert tm.tensor([1.5], dtype="float32").dtype == np.float32


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(DTypeError, match="Only floating point tensors can require gradients"):
        tm.tensor([1, 2], requires_grad=True)


def test_tensor_copies_its_data():
    array = np.ones(3, dtype=np.float32)
    t = tm.tensor(array)
    array[0] = 5
    assert t.data[0] == 1


def test_attributes(rng):
    data = rng.standard_normal((2, 3)).astype(np.float32)
    t = tm.tensor(data, requires_grad=True)
    assert t.shape == (2, 3)
    assert t.ndim == 2
    assert t.dtype == np.float32
    assert t.grad is None
    assert t.grad_fn is None
    assert t.is_leaf
    assert isinstance(t.numpy(), np.ndarray)
    assert np.array_equal(t.numpy(), data)


def test_item_and_errors():
    assert tm.tensor([[2.5]]).item() == 2.5
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        tm.tensor([1.0, 2.0]).item()


def test_factories_shapes_and_dtypes():
    assert tm.zeros(2, 3).shape == (2, 3)
    assert tm.ones((4,)).shape == (4,)
    assert tm.zeros(2).dtype == np.float32
    assert tm.randn(3, 4, dtype=tm.float64).dtype == np.float64
    assert tm.rand(5).dtype == np.float32
    assert tm.randn(2, requires_grad=True).requires_grad


def test_manual_seed_repeats_draws():
    tm.manual_seed(7)
    first = tm.randn(5).numpy().copy()
    tm.manual_seed(7)
    assert np.array_equal(first, tm.randn(5).numpy())


def test_rand_range():
    tm.manual_seed(3)
    values = tm.rand(1000).numpy()
    assert values.min() >= 0
    assert values.max() < 1


def test_detach_leaves_graph(rng):
    x = tm.tensor(rng.standard_normal(3), requires_grad=True)
    y = (x * 2).detach()
    assert y.grad_fn is None
    assert not y.requires_grad


def test_no_grad_records_nothing(rng):
    x = tm.tensor(rng.standard_normal(3), requires_grad=True)
    with tm.no_grad():
        y = x * 2
    assert y.grad_fn is None
    assert not y.requires_grad
    z = x * 2
    assert z.requires_grad


def test_float32_stays_float32(rng):
    x = tm.tensor(rng.standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    y = ((x * 2.0 + 1) ** 2 / 3.0).exp().log().tanh().sigmoid().sum()
    assert y.dtype == np.float32
    y.backward()
    assert x.grad.dtype == np.float32


def test_reflected_operators(rng):
    x = tm.tensor(rng.random(3) + 0.5)
    assert np.allclose((2.0 / x).numpy(), 2.0 / x.numpy())
    assert np.allclose((1 - x).numpy(), 1 - x.numpy())
    assert np.allclose((3 * x).numpy(), 3 * x.numpy())
    assert np.allclose((2 ** x).numpy(), 2 ** x.numpy())
    assert isinstance(np.ones(3) * x, tm.Tensor)


def test_comparisons_give_bool_tensors(rng):
    x = tm.tensor(rng.standard_normal(5))
    mask = x > 0
    assert mask.dtype == np.bool_
    assert np.array_equal(mask.numpy(), x.numpy() > 0)


def test_max_dim_returns_values_and_indices():
    x = tm.tensor([[1.0, 5.0, 5.0], [7.0, 2.0, 0.0]])
    values, indices = x.max(dim=1)
    assert values.tolist() == [5.0, 7.0]
    assert indices.tolist() == [1, 0]
    assert indices.dtype == np.int64
    assert x.max().item() == 7.0


def test_numpy_style_reduction_arguments(rng):
    x = tm.tensor(rng.standard_normal((2, 3)))
    assert x.sum(axis=1, keepdims=True).shape == (2, 1)
    assert x.mean(axis=0).shape == (3,)


def test_shape_methods(rng):
    x = tm.tensor(rng.standard_normal((2, 3, 4)))
    assert x.reshape(6, 4).shape == (6, 4)
    assert x.view((4, 6)).shape == (4, 6)
    assert x.transpose(0, 2).shape == (4, 3, 2)
    assert x.permute(1, 2, 0).shape == (3, 4, 2)
    assert x.flatten(1).shape == (2, 12)
    assert x.flatten().shape == (24,)
    assert tm.tensor(np.ones((2, 3))).T.shape == (3, 2)


def test_repr_shows_grad_fn(rng):
    x = tm.tensor(rng.standard_normal(2), requires_grad=True)
    assert "requires_grad=True" in repr(x)
    assert "grad_fn=<MulBackward>" in repr(x * 2)


def test_stack_and_cat(rng):
    a = tm.tensor(rng.standard_normal((2, 3)))
    b = tm.tensor(rng.standard_normal((2, 3)))
    assert tm.stack([a, b], dim=1).shape == (2, 2, 3)
    assert tm.cat([a, b], dim=0).shape == (4, 3)
