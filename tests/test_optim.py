"""Tests of tinymbm.optim and the fused Adam kernel.

Expected trajectories are computed by hand with plain Python floats, from the update
rules written out in each test, so they do not reuse the code under test.
"""

import math

import numpy as np
import pytest

from tinymbm.errors import ShapeError
from tinymbm.kernels.optim import adam_update, adam_update_reference
from tinymbm.optim import SGD, Adam, Optimizer
from tinymbm.tensor import Tensor


def make_param(values, dtype=np.float64) -> Tensor:
    return Tensor(np.array(values, dtype=dtype), requires_grad=True)


def run_steps(optimizer: Optimizer, param: Tensor, grads) -> list:
    """Set ``param.grad`` to each gradient in turn, step, and return p after each step."""
    trajectory = []
    for grad in grads:
        param.grad = np.array(grad, dtype=param.data.dtype)
        optimizer.step()
        trajectory.append(param.data.copy())
    return trajectory


# ---------------------------------------------------------------- SGD by hand

GRADS = [0.5, -1.0, 2.0]

# p0 = 1.0, lr = 0.1, gradients 0.5, -1.0, 2.0. Each row spells out the arithmetic.
SGD_CASES = [
    # plain: p -= lr * grad
    ("plain", 0.0, 0.0, [1.0 - 0.05, 0.95 + 0.1, 1.05 - 0.2]),
    # momentum 0.9: buf = 0.5, then 0.9 * 0.5 - 1.0 = -0.55, then 0.9 * -0.55 + 2.0 = 1.505
    ("momentum", 0.9, 0.0, [1.0 - 0.05, 0.95 + 0.055, 1.005 - 0.1505]),
    # weight decay 0.1: g = 0.5 + 0.1, then -1.0 + 0.094, then 2.0 + 0.10306
    ("weight-decay", 0.0, 0.1, [1.0 - 0.06, 0.94 + 0.0906, 1.0306 - 0.210306]),
    # both: g = 0.6, buf = 0.6; g = -0.906, buf = 0.54 - 0.906 = -0.366;
    # g = 2.09766, buf = -0.3294 + 2.09766 = 1.76826
    ("both", 0.9, 0.1, [1.0 - 0.06, 0.94 + 0.0366, 0.9766 - 0.176826]),
]


@pytest.mark.parametrize("name, momentum, weight_decay, expected", SGD_CASES,
                         ids=[case[0] for case in SGD_CASES])
def test_sgd_trajectory(name, momentum, weight_decay, expected):
    param = make_param([1.0])
    optimizer = SGD([param], lr=0.1, momentum=momentum, weight_decay=weight_decay)

    trajectory = run_steps(optimizer, param, [[g] for g in GRADS])

    for step, (actual, value) in enumerate(zip(trajectory, expected), start=1):
        assert actual[0] == pytest.approx(value, rel=1e-12), f"{name}: step {step}"


def test_sgd_momentum_buffer_state():
    param = make_param([1.0])
    optimizer = SGD([param], lr=0.1, momentum=0.9)

    run_steps(optimizer, param, [[0.5], [-1.0]])

    assert optimizer.state[0]["momentum_buffer"][0] == pytest.approx(-0.55, rel=1e-12)


# ---------------------------------------------------------------- Adam by hand


def adam_by_hand(p, grads, lr, beta1, beta2, eps, weight_decay):
    """Return p after each step of PyTorch's Adam rule, in plain Python floats."""
    m = 0.0
    v = 0.0
    trajectory = []
    for t, grad in enumerate(grads, start=1):
        g = grad + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        denom = math.sqrt(v) / math.sqrt(1 - beta2**t) + eps
        p = p - lr / (1 - beta1**t) * m / denom
        trajectory.append(p)
    return trajectory


ADAM_CASES = [
    ("defaults", {"lr": 1e-3}),
    ("large-lr", {"lr": 0.1}),
    ("betas", {"lr": 0.05, "betas": (0.5, 0.9)}),
    ("eps", {"lr": 0.05, "eps": 0.1}),
    ("weight-decay", {"lr": 0.05, "weight_decay": 0.3}),
]


@pytest.mark.parametrize("name, kwargs", ADAM_CASES, ids=[case[0] for case in ADAM_CASES])
def test_adam_trajectory(name, kwargs):
    param = make_param([1.0, -2.0])
    optimizer = Adam([param], **kwargs)
    grads = [[0.5, 0.1], [-1.0, 0.3], [2.0, -0.2]]
    beta1, beta2 = kwargs.get("betas", (0.9, 0.999))
    hyper = (kwargs["lr"], beta1, beta2, kwargs.get("eps", 1e-8), kwargs.get("weight_decay", 0.0))

    trajectory = run_steps(optimizer, param, grads)

    for element, p0 in enumerate([1.0, -2.0]):
        expected = adam_by_hand(p0, [g[element] for g in grads], *hyper)
        for step, (actual, value) in enumerate(zip(trajectory, expected), start=1):
            assert actual[element] == pytest.approx(value, rel=1e-12, abs=1e-15), (
                f"{name}: element {element}, step {step}"
            )


def test_adam_first_step_moves_lr():
    # At t = 1, m / (1 - beta1) = g and sqrt(v / (1 - beta2)) = |g|, so the first
    # step moves every element by lr * g / (|g| + eps), almost exactly lr.
    param = make_param([1.0, 1.0, 1.0])
    optimizer = Adam([param], lr=0.01)

    run_steps(optimizer, param, [[3.0, -0.002, 40.0]])

    expected = [1.0 - 0.01 * 3.0 / (3.0 + 1e-8),
                1.0 + 0.01 * 0.002 / (0.002 + 1e-8),
                1.0 - 0.01 * 40.0 / (40.0 + 1e-8)]
    for element, value in enumerate(expected):
        assert param.data[element] == pytest.approx(value, rel=1e-12), f"element {element}"


def test_adam_state_step_count():
    param = make_param([1.0])
    optimizer = Adam([param])

    run_steps(optimizer, param, [[1.0], [1.0], [1.0]])

    assert optimizer.state[0]["step"] == 3


# ---------------------------------------------------------------- fused kernel


def random_adam_arrays(rng, n, dtype):
    param = rng.standard_normal(n).astype(dtype)
    grad = rng.standard_normal(n).astype(dtype)
    exp_avg = (0.1 * rng.standard_normal(n)).astype(dtype)
    exp_avg_sq = (0.01 * rng.random(n)).astype(dtype)
    return [param, grad, exp_avg, exp_avg_sq]


KERNEL_CASES = [
    # (dtype, n, lr, beta1, beta2, eps, weight_decay)
    (np.float32, 1, 1e-3, 0.9, 0.999, 1e-8, 0.0),
    (np.float32, 257, 0.1, 0.8, 0.99, 1e-6, 0.01),
    (np.float64, 1, 1e-3, 0.9, 0.999, 1e-8, 0.0),
    (np.float64, 257, 0.1, 0.5, 0.9, 1e-3, 0.2),
    (np.float64, 0, 1e-3, 0.9, 0.999, 1e-8, 0.0),
]


@pytest.mark.parametrize("case", KERNEL_CASES, ids=lambda case: f"{case[0].__name__}-n{case[1]}")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_adam_kernel_matches_reference(case, seed):
    dtype, n, lr, beta1, beta2, eps, weight_decay = case
    rng = np.random.default_rng(seed)
    fused = random_adam_arrays(rng, n, dtype)
    reference = [array.copy() for array in fused]

    for step in (1, 2, 3, 50):
        adam_update(*fused, step, lr, beta1, beta2, eps, weight_decay)
        adam_update_reference(*reference, step, lr, beta1, beta2, eps, weight_decay)

    for name, a, b in zip(["param", "grad", "exp_avg", "exp_avg_sq"], fused, reference):
        np.testing.assert_array_equal(a, b, err_msg=f"{name}, case {case}, seed {seed}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_kernel_keeps_dtype(dtype):
    arrays = random_adam_arrays(np.random.default_rng(3), 5, dtype)

    adam_update(*arrays, 1, 1e-3, 0.9, 0.999, 1e-8, 0.0)

    for array in arrays:
        assert array.dtype == dtype


# ---------------------------------------------------------------- dtypes and layouts


@pytest.mark.parametrize("make_optimizer", [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1),
    lambda ps: Adam(ps, lr=0.1, weight_decay=0.1),
], ids=["SGD", "Adam"])
def test_float32_stays_float32(make_optimizer):
    param = make_param([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    optimizer = make_optimizer([param])

    run_steps(optimizer, param, [[[0.1, 0.2], [0.3, 0.4]]] * 2)

    assert param.data.dtype == np.float32
    for name, value in optimizer.state[0].items():
        if isinstance(value, np.ndarray):
            assert value.dtype == np.float32, f"state {name!r}"


def test_float32_adam_near_float64():
    param32 = make_param([0.3, -0.7], dtype=np.float32)
    param64 = make_param([0.3, -0.7], dtype=np.float64)
    optimizer32 = Adam([param32], lr=0.01)
    optimizer64 = Adam([param64], lr=0.01)
    grads = [[0.5, -0.25], [0.125, 1.0], [-2.0, 0.5]]

    run_steps(optimizer32, param32, grads)
    run_steps(optimizer64, param64, grads)

    np.testing.assert_allclose(param32.data, param64.data, rtol=1e-6)


def test_adam_non_contiguous_param():
    data = np.arange(6.0).reshape(2, 3).T  # a transposed, non-contiguous view
    param = Tensor(data, requires_grad=True)
    optimizer = Adam([param], lr=0.1)

    run_steps(optimizer, param, [np.ones((3, 2))])

    # The first step moves each element by lr * g / (|g| + eps), just under lr.
    np.testing.assert_allclose(param.data, np.arange(6.0).reshape(2, 3).T - 0.1, atol=1e-8)


def test_adam_matrix_param_in_place():
    param = make_param(np.zeros((2, 3)))
    data_before = param.data
    optimizer = Adam([param], lr=0.1)

    run_steps(optimizer, param, [np.ones((2, 3))])

    assert param.data is data_before


def test_grad_none_skipped():
    updated = make_param([1.0])
    untouched = make_param([5.0])
    optimizer = Adam([updated, untouched], lr=0.1)

    updated.grad = np.array([1.0])
    optimizer.step()

    assert untouched.data[0] == 5.0
    assert 1 not in optimizer.state


def test_grad_shape_mismatch():
    param = make_param([1.0, 2.0])
    optimizer = Adam([param])
    param.grad = np.ones(3)

    with pytest.raises(ShapeError, match=r"\(3,\)"):
        optimizer.step()


def test_param_groups_own_lr():
    fast = make_param([1.0])
    slow = make_param([1.0])
    optimizer = SGD([{"params": [fast], "lr": 0.5}, {"params": [slow]}], lr=0.1)

    fast.grad = np.array([1.0])
    slow.grad = np.array([1.0])
    optimizer.step()

    assert fast.data[0] == pytest.approx(0.5)
    assert slow.data[0] == pytest.approx(0.9)


def test_plain_tensor_accepted():
    param = Tensor(np.ones(2), requires_grad=True)

    optimizer = SGD([param], lr=0.1)

    assert optimizer.params[0] is param


def test_accepts_generator():
    params = [make_param([1.0]), make_param([2.0])]

    optimizer = Adam(param for param in params)

    assert len(optimizer.params) == 2


def test_minimizes_quadratic_through_autograd():
    # loss = sum((p - 3)^2) has its minimum at p = 3.
    param = make_param([0.0, 10.0])
    optimizer = Adam([param], lr=0.1)

    for _ in range(300):
        optimizer.zero_grad()
        loss = ((param - 3.0) ** 2).sum()
        loss.backward()
        optimizer.step()

    np.testing.assert_allclose(param.data, [3.0, 3.0], atol=1e-2)


# ---------------------------------------------------------------- zero_grad


def test_zero_grad_sets_none():
    param = make_param([1.0])
    optimizer = SGD([param], lr=0.1)
    param.grad = np.array([2.0])

    optimizer.zero_grad()

    assert param.grad is None


def test_zero_grad_fills_zeros():
    param = make_param([1.0])
    optimizer = SGD([param], lr=0.1)
    param.grad = np.array([2.0])

    optimizer.zero_grad(set_to_none=False)

    np.testing.assert_array_equal(param.grad, [0.0])


# ---------------------------------------------------------------- state dicts


@pytest.mark.parametrize("make_optimizer", [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9),
    lambda ps: Adam(ps, lr=0.1),
], ids=["SGD", "Adam"])
def test_state_dict_resumes_exactly(make_optimizer):
    grads = [[0.5, -1.0], [0.25, 2.0], [-0.75, 0.5], [1.5, -0.5]]
    param = make_param([1.0, 2.0])
    optimizer = make_optimizer([param])
    run_steps(optimizer, param, grads[:2])
    saved = optimizer.state_dict()
    saved_param = param.data.copy()
    expected = run_steps(optimizer, param, grads[2:])

    resumed_param = make_param(saved_param)
    resumed = make_optimizer([resumed_param])
    resumed.load_state_dict(saved)
    actual = run_steps(resumed, resumed_param, grads[2:])

    for step, (a, e) in enumerate(zip(actual, expected)):
        np.testing.assert_array_equal(a, e, err_msg=f"step {step}")


def test_state_dict_is_copy():
    param = make_param([1.0])
    optimizer = Adam([param])
    run_steps(optimizer, param, [[1.0]])
    saved = optimizer.state_dict()
    exp_avg_before = saved["state"][0]["exp_avg"].copy()

    run_steps(optimizer, param, [[1.0]])

    np.testing.assert_array_equal(saved["state"][0]["exp_avg"], exp_avg_before)


def test_state_dict_layout():
    params = [make_param([1.0]), make_param([2.0]), make_param([3.0])]
    optimizer = Adam([{"params": params[:2]}, {"params": params[2:], "lr": 0.5}])

    groups = optimizer.state_dict()["param_groups"]

    assert [group["params"] for group in groups] == [[0, 1], [2]]
    assert groups[1]["lr"] == 0.5


def test_load_state_dict_casts_to_param_dtype():
    source_param = make_param([1.0], dtype=np.float64)
    source = Adam([source_param])
    run_steps(source, source_param, [[1.0]])
    param = make_param([1.0], dtype=np.float32)
    optimizer = Adam([param])

    optimizer.load_state_dict(source.state_dict())

    assert optimizer.state[0]["exp_avg"].dtype == np.float32


def test_load_state_dict_restores_hyperparameters():
    source = SGD([make_param([1.0])], lr=0.25, momentum=0.5)
    optimizer = SGD([make_param([1.0])], lr=0.1)

    optimizer.load_state_dict(source.state_dict())

    assert optimizer.param_groups[0]["lr"] == 0.25


def adam_state_after_step(values):
    param = make_param(values)
    optimizer = Adam([param])
    param.grad = np.ones_like(param.data)
    optimizer.step()
    return optimizer.state_dict()


LOAD_MISMATCH_CASES = [
    ("group-count", lambda: Adam([{"params": [make_param([1.0])]},
                                  {"params": [make_param([1.0])]}]),
     adam_state_after_step([1.0]), "parameter groups"),
    ("group-size", lambda: Adam([make_param([1.0]), make_param([1.0])]),
     adam_state_after_step([1.0]), "group 0"),
    ("state-shape", lambda: Adam([make_param([1.0, 2.0])]),
     adam_state_after_step([1.0]), "shape"),
    ("not-a-state-dict", lambda: Adam([make_param([1.0])]),
     {"weights": np.ones(1)}, "param_groups"),
]


@pytest.mark.parametrize("name, make_optimizer, state_dict, fragment", LOAD_MISMATCH_CASES,
                         ids=[case[0] for case in LOAD_MISMATCH_CASES])
def test_load_state_dict_mismatch(name, make_optimizer, state_dict, fragment):
    optimizer = make_optimizer()

    with pytest.raises(ValueError, match=fragment):
        optimizer.load_state_dict(state_dict)

    assert optimizer.state == {}, f"{name}: state changed by a failed load"


# ---------------------------------------------------------------- bad input

BAD_HYPERPARAMETER_CASES = [
    (SGD, {"lr": -0.1}, "-0.1"),
    (SGD, {"lr": float("nan")}, "nan"),
    (SGD, {"lr": 0.1, "momentum": -0.5}, "momentum"),
    (SGD, {"lr": 0.1, "weight_decay": -1.0}, "weight_decay"),
    (Adam, {"lr": -1.0}, "lr"),
    (Adam, {"lr": math.inf}, "inf"),
    (Adam, {"betas": (1.0, 0.999)}, "beta1"),
    (Adam, {"betas": (0.9, -0.1)}, "beta2"),
    (Adam, {"betas": (0.9,)}, "betas"),
    (Adam, {"eps": -1e-8}, "eps"),
    (Adam, {"weight_decay": -0.1}, "weight_decay"),
]


@pytest.mark.parametrize("cls, kwargs, fragment", BAD_HYPERPARAMETER_CASES,
                         ids=[f"{c.__name__}-{k}" for c, k, _ in BAD_HYPERPARAMETER_CASES])
def test_bad_hyperparameter(cls, kwargs, fragment):
    with pytest.raises(ValueError) as error:
        cls([make_param([1.0])], **kwargs)

    assert fragment in str(error.value), f"{cls.__name__}({kwargs}): {error.value}"


@pytest.mark.parametrize("value", ["0.1", None, True], ids=["str", "None", "bool"])
def test_hyperparameter_not_a_number(value):
    with pytest.raises(TypeError, match="lr must be a real number"):
        SGD([make_param([1.0])], lr=value)


def test_rejects_param_without_grad():
    frozen = Tensor(np.ones(2))

    with pytest.raises(ValueError, match="does not require grad"):
        SGD([frozen], lr=0.1)


def test_rejects_non_tensor():
    with pytest.raises(TypeError, match="ndarray"):
        SGD([np.ones(2)], lr=0.1)


def test_rejects_single_tensor():
    with pytest.raises(TypeError, match="list"):
        SGD(make_param([1.0]), lr=0.1)


def test_rejects_non_leaf():
    param = make_param([1.0])

    with pytest.raises(ValueError, match="leaf"):
        SGD([param * 2.0], lr=0.1)


def test_rejects_duplicate_param():
    param = make_param([1.0])

    with pytest.raises(ValueError, match="more than once"):
        Adam([param, param])


def test_rejects_empty_params():
    with pytest.raises(ValueError, match="empty"):
        Adam([])


def test_failed_group_leaves_optimizer_unchanged():
    optimizer = SGD([make_param([1.0])], lr=0.1)

    with pytest.raises(ValueError):
        optimizer.add_param_group({"params": [make_param([2.0])], "lr": -1.0})

    assert len(optimizer.params) == 1
