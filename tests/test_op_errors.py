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


def test_permute_not_a_permutation():
    with pytest.raises(ShapeError, match="not a permutation"):
        tm.zeros(2, 3).permute(0, 0)
