"""Bad input to the core ops raises before computing, with a message that names the values."""

import numpy as np
import pytest

import tinymbm as tm
import tinymbm.functional as F
from tinymbm.errors import DTypeError, ShapeError


def test_matmul_incompatible_shapes_names_both():
    with pytest.raises(ShapeError, match=r"matmul: shapes \(2, 3\) and \(4, 5\) are not aligned"):
        tm.ones(2, 3) @ tm.ones(4, 5)


def test_matmul_error_is_also_runtime_error():
    with pytest.raises(RuntimeError):
        tm.ones(2, 3) @ tm.ones(4, 5)


def test_broadcast_failure_names_both_shapes():
    with pytest.raises(ShapeError, match=r"add: shapes \(2, 3\) and \(4,\) cannot be broadcast"):
        tm.ones(2, 3) + tm.ones(4)


def test_broadcast_failure_is_also_value_error():
    with pytest.raises(ValueError):
        tm.ones(2, 3) * tm.ones(2)


def test_cross_entropy_class_index_out_of_range():
    with pytest.raises(IndexError, match=r"class index 10 at position 1 is out of range \[0, 10\)"):
        F.cross_entropy(tm.zeros(3, 10), [0, 10, 2])


def test_cross_entropy_negative_class_index():
    with pytest.raises(IndexError, match=r"class index -1 at position 0"):
        F.cross_entropy(tm.zeros(2, 10), [-1, 3])


def test_cross_entropy_target_wrong_length():
    with pytest.raises(ShapeError, match=r"target has shape \(5,\) but the input has a batch of 4"):
        F.cross_entropy(tm.zeros(4, 10), np.zeros(5, dtype=np.int64))


def test_cross_entropy_float_target():
    with pytest.raises(DTypeError, match="integer class indices"):
        F.cross_entropy(tm.zeros(2, 3), tm.tensor([0.0, 1.0]))


def test_cross_entropy_bad_reduction():
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.cross_entropy(tm.zeros(2, 3), [0, 1], reduction="avg")


def test_linear_feature_mismatch_names_both_shapes():
    with pytest.raises(ShapeError, match=r"input has 3 features \(input shape \(2, 3\)\) but weight expects 4 \(weight shape \(5, 4\)\)"):
        F.linear(tm.zeros(2, 3), tm.zeros(5, 4))


def test_reshape_wrong_size():
    with pytest.raises(ShapeError, match=r"cannot reshape a tensor of shape \(2, 3\) \(6 elements\) into shape \(4,\)"):
        tm.zeros(2, 3).reshape(4)


def test_dim_out_of_range():
    with pytest.raises(IndexError, match="dim 2 is out of range for a tensor with 2 dimensions"):
        tm.zeros(2, 3).sum(dim=2)


def test_permute_repeated_axis():
    with pytest.raises(ValueError, match=r"dim \(0, 0\) names the same axis twice"):
        tm.zeros(2, 3).permute(0, 0)


def test_permute_too_few_axes():
    with pytest.raises(ShapeError, match="not a permutation"):
        tm.zeros(2, 3, 4).permute(0, 1)


def test_float_ops_on_integers_give_float32():
    assert tm.tensor([1, 2]).sigmoid().dtype == np.float32
    assert np.allclose(tm.tensor([1, 2]).sigmoid().numpy(), [0.7311, 0.8808], atol=1e-4)
    assert (tm.tensor([1, 2]) / 2).dtype == np.float32
    assert tm.tensor([0, 1]).exp().dtype == np.float32


def test_dim_of_wrong_type():
    with pytest.raises(TypeError, match="dim must be an int or a tuple of ints, got 1.0"):
        tm.zeros(2, 3).sum(dim=1.0)


def test_dim_repeated():
    with pytest.raises(ValueError, match="names the same axis twice"):
        tm.zeros(2, 3).sum(dim=(1, 1))


def test_hook_changing_shape_raises():
    a = tm.tensor([1.0, 2.0], requires_grad=True)
    a.register_hook(lambda grad: tm.zeros(3))
    with pytest.raises(RuntimeError, match=r"returned a gradient of shape \(3,\).*has shape \(2,\)"):
        (a * 2).sum().backward()


def test_min_has_its_own_grad_fn_name():
    assert "MinAll" in repr(tm.tensor([1.0, 2.0], requires_grad=True).min())


def test_negative_seed_accepted():
    tm.manual_seed(-1)
    first = tm.randn(3).numpy().copy()
    tm.manual_seed(-1)
    assert np.array_equal(first, tm.randn(3).numpy())
