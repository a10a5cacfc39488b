"""The checks that grade each exercise, shared by the grader and ``tests/test_exercises.py``.

How a blanked reference gets exercised:

- The kernel exercises (``conv_forward``, ``conv_backward``, ``maxpool_backward``,
  ``lstm_cell_backward``, ``adam_step``) call the student's reference function
  directly and compare it with the engine's Numba twin on a table of small
  cases, float64 and float32 (shapes and dtypes too). A backward exercise is
  also compared with float64 central differences of the forward kernel.
- The op of a conv, pool or LSTM exercise (``F.conv2d``, ``F.max_pool2d``,
  ``F.lstm_cell``) then runs through ``tm.autograd.gradcheck`` with a kernel
  backend that takes the student's function for the exercise and the
  engine's kernels for the rest. That backend is registered in the kernel
  module's ``BACKENDS`` under the name "grading", and the module's
  ``backend`` attribute selects it for one check. ``conv_forward`` and
  ``adam_step`` also run a short training loop through the student's code.
- ``cross_entropy_backward`` and ``topological_sort`` are checked through
  the engine itself: gradcheck of ``F.cross_entropy``, the graph order of
  ``tinymbm.autograd._topological_order`` on hand-built graphs and a
  3000-op chain, and (for cross-entropy) a short training run.

Each exercise is graded on its own: while one exercise's checks run,
:func:`isolated` swaps in the grader's own versions of the other exercises
that the engine calls on the way (the backward graph order and the
cross-entropy backward), so a blank in one exercise costs no points in
another.

This module imports only NumPy and ``tinymbm``. The grader loads it by file
path inside a subprocess whose ``tinymbm`` is the student's copy, so the
checks are the teacher's and the code under test is the student's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import os
import time
import traceback
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

import tinymbm as tm
import tinymbm.functional as F
from tinymbm import autograd
from tinymbm.kernels import conv as conv_kernels
from tinymbm.kernels import lstm as lstm_kernels
from tinymbm.kernels import optim as optim_kernels
from tinymbm.kernels import pool as pool_kernels


@dataclasses.dataclass(frozen=True)
class Check:
    """One graded check: a name, its points, and a function that raises on failure.

    The function takes a ``numpy.random.Generator`` seeded for that check.
    """

    name: str
    points: int
    function: Callable[[np.random.Generator], None]


# ------------------------------------------------------------------ helpers


def _assert_close(actual: Any, expected: Any, label: str, case: Any, rtol: float = 1e-10, atol: float = 1e-12) -> None:
    """Raise AssertionError naming ``label``, the case and the worst element unless the arrays agree."""
    if not isinstance(actual, np.ndarray):
        raise AssertionError(f"{label}: returned {type(actual).__name__}, expected numpy.ndarray ({case})")  # noqa: TRY004
    expected = np.asarray(expected)
    if actual.shape != expected.shape:
        raise AssertionError(f"{label}: shape {actual.shape}, expected {expected.shape} ({case})")
    if np.allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True):
        return

    difference = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    difference = np.where(np.isnan(difference), np.inf, difference)
    index = np.unravel_index(int(np.argmax(difference)), difference.shape)
    raise AssertionError(
        f"{label}: element {tuple(int(i) for i in index)} is {float(actual[index]):.10g}, expected "
        f"{float(expected[index]):.10g} (max difference {difference.max():.3g}; {case})"
    )


def _assert_dtype(actual: Any, dtype: Any, label: str, case: Any) -> None:
    if not isinstance(actual, np.ndarray):
        raise AssertionError(f"{label}: returned {type(actual).__name__}, expected numpy.ndarray ({case})")  # noqa: TRY004
    if actual.dtype != np.dtype(dtype):
        raise AssertionError(f"{label}: dtype {actual.dtype}, expected {np.dtype(dtype)} ({case})")


def _numerical_gradient(loss: Callable[[], float], array: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Return d loss / d array by float64 central differences, perturbing ``array`` in place."""
    flat = array.reshape(-1)
    if not np.shares_memory(flat, array):
        raise ValueError("_numerical_gradient needs a contiguous array it can perturb in place")
    grad = np.zeros(array.size)

    for k in range(array.size):
        original = flat[k]
        flat[k] = original + eps
        plus = loss()
        flat[k] = original - eps
        minus = loss()
        flat[k] = original
        grad[k] = (plus - minus) / (2 * eps)
    return grad.reshape(array.shape)


def _projection(function: Callable, grad_output: np.ndarray, *args: Any) -> Callable[[], float]:
    """Return L() = Σ function(*args) · grad_output.

    The arrays in ``args`` are read at each call, so perturbing one in place
    changes L, which is what :func:`_numerical_gradient` needs.
    """
    return lambda: float(np.sum(function(*args) * grad_output))


@contextlib.contextmanager
def _kernel_backend(module: Any, base: str, **overrides: Callable) -> Iterator[None]:
    """Make the ops of a kernel module run backend ``base`` with some kernels replaced.

    The mixed backend is registered as BACKENDS["grading"] and selected through
    the module's ``backend`` attribute, and both are restored on exit.
    """
    kernels = dict(vars(module.BACKENDS[base]))
    kernels.update(overrides)
    previous = module.backend
    module.BACKENDS["grading"] = SimpleNamespace(**kernels)
    module.backend = "grading"
    try:
        yield
    finally:
        module.backend = previous
        del module.BACKENDS["grading"]


def _gradcheck(fn: Callable, inputs: list, case: Any) -> None:
    try:
        tm.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)
    except tm.autograd.GradcheckError as error:
        raise AssertionError(f"{error} ({case})") from None


def _leaf(array: np.ndarray) -> tm.Tensor:
    return tm.tensor(array, requires_grad=True)


# -------------------------------------------------------- grader stand-ins


def _load_standins() -> Any:
    """Load standins.py from this file's folder, or return None where it is absent.

    Student copies leave that file out, because it contains working solutions
    to two exercises.
    """
    path = Path(__file__).with_name("standins.py")
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("tinymbm_grader_standins", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_STANDINS = _load_standins()


@contextlib.contextmanager
def isolated(exercise: str) -> Iterator[None]:
    """Run the engine with the grader's versions of every exercise except ``exercise``.

    Only exercises that the engine calls from other code paths are swapped:
    the backward graph order (called by every ``backward()``) and the
    cross-entropy backward (called by the training runs). The kernel
    exercises need no swap, because each check picks its kernels explicitly.

    NOTE: a student copy has no standins.py, so there nothing is swapped, and
    a blank ``topological_sort`` also fails the other exercises' local checks
    that call ``backward()``. The teacher's grader always has the stand-ins.
    """
    saved_order = autograd._topological_order
    saved_cross_entropy = F.CrossEntropy.__dict__["backward"]
    if _STANDINS is not None and exercise != "topological_sort":
        autograd._topological_order = _STANDINS.topological_order
    if _STANDINS is not None and exercise != "cross_entropy_backward":
        F.CrossEntropy.backward = staticmethod(_STANDINS.cross_entropy_backward)
    try:
        yield
    finally:
        autograd._topological_order = saved_order
        F.CrossEntropy.backward = saved_cross_entropy


# -------------------------------------------------------------- convolution

# (N, C, H, W, F, KH, KW, stride, padding, with bias)
CONV_CASES = [
    (1, 1, 4, 4, 1, 3, 3, (1, 1), (0, 0), True),
    (2, 2, 5, 5, 3, 3, 3, (1, 1), (1, 1), True),
    (2, 3, 6, 5, 2, 2, 3, (2, 1), (0, 1), False),
    (1, 2, 7, 6, 2, 3, 2, (2, 3), (1, 0), True),
    (2, 1, 5, 5, 2, 1, 1, (1, 1), (0, 0), True),
]


def _conv_inputs(rng: np.random.Generator, case: tuple, dtype: Any = np.float64) -> tuple:
    n, c, h, w, f, kh, kw, _, _, with_bias = case
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = rng.standard_normal((f, c, kh, kw)).astype(dtype)
    bias = rng.standard_normal(f).astype(dtype) if with_bias else None
    return x, weight, bias


def _describe_conv(case: tuple) -> str:
    n, c, h, w, f, kh, kw, stride, padding, with_bias = case
    return (
        f"x ({n}, {c}, {h}, {w}), weight ({f}, {c}, {kh}, {kw}), stride {stride}, "
        f"padding {padding}, bias {'yes' if with_bias else 'None'}"
    )


def _conv_output_shape(case: tuple) -> tuple:
    n, _, h, w, f, kh, kw, (sh, sw), (ph, pw), _ = case
    return (n, f, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)


def check_conv_forward_shape_and_dtype(rng: np.random.Generator) -> None:
    for dtype in (np.float64, np.float32):
        for case in CONV_CASES:
            x, weight, bias = _conv_inputs(rng, case, dtype)
            stride, padding = case[7], case[8]
            y = conv_kernels.reference_conv2d_forward(x, weight, bias, stride, padding)
            _assert_dtype(y, dtype, "reference_conv2d_forward", _describe_conv(case))
            if y.shape != _conv_output_shape(case):
                raise AssertionError(
                    f"reference_conv2d_forward: shape {y.shape}, expected {_conv_output_shape(case)} "
                    f"from OH = (H + 2·ph - KH) // sh + 1 ({_describe_conv(case)})"
                )


def check_conv_forward_matches_numba(rng: np.random.Generator) -> None:
    for case in CONV_CASES:
        x, weight, bias = _conv_inputs(rng, case)
        stride, padding = case[7], case[8]
        expected = conv_kernels.conv2d_forward(x, weight, bias, stride, padding)
        actual = conv_kernels.reference_conv2d_forward(x, weight, bias, stride, padding)
        _assert_close(actual, expected, "reference_conv2d_forward vs conv2d_forward", _describe_conv(case))


def check_conv_forward_gradcheck(rng: np.random.Generator) -> None:
    # The engine's backward is correct, so gradcheck's central differences of
    # the student's forward must agree with it.
    with _kernel_backend(conv_kernels, "numba", forward=conv_kernels.reference_conv2d_forward):
        for case in CONV_CASES[1:4]:
            x, weight, bias = _conv_inputs(rng, case)
            stride, padding = case[7], case[8]
            inputs = [_leaf(x), _leaf(weight)] + ([] if bias is None else [_leaf(bias)])
            _gradcheck(functools.partial(F.conv2d, stride=stride, padding=padding), inputs, _describe_conv(case))


def check_conv_forward_training(rng: np.random.Generator) -> None:
    x = rng.standard_normal((4, 1, 6, 6))
    target_weight = rng.standard_normal((2, 1, 3, 3))
    target = conv_kernels.conv2d_forward(x, target_weight, np.array([0.5, -0.5]), (1, 1), (1, 1))
    weight = _leaf(0.1 * rng.standard_normal((2, 1, 3, 3)))
    bias = _leaf(np.zeros(2))

    losses = []
    with _kernel_backend(conv_kernels, "numba", forward=conv_kernels.reference_conv2d_forward):
        for _ in range(60):
            loss = F.mse_loss(F.conv2d(tm.tensor(x), weight, bias, padding=1), tm.tensor(target))
            weight.grad = bias.grad = None
            loss.backward()
            weight.data -= 0.1 * weight.grad
            bias.data -= 0.1 * bias.grad
            losses.append(loss.item())

    if not losses[-1] < 1e-3 * losses[0]:
        raise AssertionError(
            f"fitting a 3×3 conv to a target conv for 60 SGD steps took the loss from {losses[0]:.4g} "
            f"only to {losses[-1]:.4g}; expected below 0.1% of the start"
        )


def check_conv_backward_shape_and_dtype(rng: np.random.Generator) -> None:
    for dtype in (np.float64, np.float32):
        for case in CONV_CASES:
            x, weight, _ = _conv_inputs(rng, case, dtype)
            stride, padding = case[7], case[8]
            grad_output = rng.standard_normal(_conv_output_shape(case)).astype(dtype)
            description = _describe_conv(case)

            dx = conv_kernels.reference_conv2d_backward_input(grad_output, weight, x.shape, stride, padding)
            dw = conv_kernels.reference_conv2d_backward_weight(grad_output, x, weight.shape, stride, padding)
            db = conv_kernels.reference_conv2d_backward_bias(grad_output)
            for name, value, shape in (("input", dx, x.shape), ("weight", dw, weight.shape), ("bias", db, (case[4],))):
                _assert_dtype(value, dtype, f"reference_conv2d_backward_{name}", description)
                if value.shape != shape:
                    raise AssertionError(
                        f"reference_conv2d_backward_{name}: shape {value.shape}, expected {shape} ({description})"
                    )


def check_conv_backward_matches_numba(rng: np.random.Generator) -> None:
    for case in CONV_CASES:
        x, weight, _ = _conv_inputs(rng, case)
        stride, padding = case[7], case[8]
        grad_output = rng.standard_normal(_conv_output_shape(case))
        description = _describe_conv(case)

        _assert_close(
            conv_kernels.reference_conv2d_backward_input(grad_output, weight, x.shape, stride, padding),
            conv_kernels.conv2d_backward_input(grad_output, weight, x.shape, stride, padding),
            "reference_conv2d_backward_input vs conv2d_backward_input", description,
        )
        _assert_close(
            conv_kernels.reference_conv2d_backward_weight(grad_output, x, weight.shape, stride, padding),
            conv_kernels.conv2d_backward_weight(grad_output, x, weight.shape, stride, padding),
            "reference_conv2d_backward_weight vs conv2d_backward_weight", description,
        )
        _assert_close(
            conv_kernels.reference_conv2d_backward_bias(grad_output),
            conv_kernels.conv2d_backward_bias(grad_output),
            "reference_conv2d_backward_bias vs conv2d_backward_bias", description,
        )


def check_conv_backward_numerical(rng: np.random.Generator) -> None:
    for case in (CONV_CASES[1], CONV_CASES[3]):
        x, weight, bias = _conv_inputs(rng, case)
        stride, padding = case[7], case[8]
        grad_output = rng.standard_normal(_conv_output_shape(case))
        description = _describe_conv(case) + ", float64 central differences of conv2d_forward"

        loss = _projection(conv_kernels.conv2d_forward, grad_output, x, weight, bias, stride, padding)

        _assert_close(
            conv_kernels.reference_conv2d_backward_input(grad_output, weight, x.shape, stride, padding),
            _numerical_gradient(loss, x), "reference_conv2d_backward_input", description, rtol=1e-5, atol=1e-6,
        )
        _assert_close(
            conv_kernels.reference_conv2d_backward_weight(grad_output, x, weight.shape, stride, padding),
            _numerical_gradient(loss, weight), "reference_conv2d_backward_weight", description,
            rtol=1e-5, atol=1e-6,
        )
        _assert_close(
            conv_kernels.reference_conv2d_backward_bias(grad_output),
            _numerical_gradient(loss, bias), "reference_conv2d_backward_bias", description, rtol=1e-5, atol=1e-6,
        )


def check_conv_backward_gradcheck(rng: np.random.Generator) -> None:
    reference = {
        "backward_input": conv_kernels.reference_conv2d_backward_input,
        "backward_weight": conv_kernels.reference_conv2d_backward_weight,
        "backward_bias": conv_kernels.reference_conv2d_backward_bias,
    }
    with _kernel_backend(conv_kernels, "numba", **reference):
        for case in CONV_CASES[1:4]:
            x, weight, bias = _conv_inputs(rng, case)
            stride, padding = case[7], case[8]
            inputs = [_leaf(x), _leaf(weight)] + ([] if bias is None else [_leaf(bias)])
            _gradcheck(functools.partial(F.conv2d, stride=stride, padding=padding), inputs, _describe_conv(case))


# ------------------------------------------------------------------ pooling

# (N, C, H, W, kernel_size, stride, padding)
POOL_CASES = [
    (1, 1, 4, 4, (2, 2), (2, 2), (0, 0)),
    (2, 2, 5, 5, (3, 3), (1, 1), (1, 1)),
    (1, 2, 6, 5, (2, 3), (1, 2), (1, 1)),
    (2, 1, 5, 4, (3, 2), (2, 1), (0, 0)),
]


def _distinct_values(rng: np.random.Generator, shape: tuple, dtype: Any = np.float64) -> np.ndarray:
    """Values at least 0.01 apart, so no window has a tie that a small step could flip."""
    size = int(np.prod(shape))
    values = (rng.permutation(size) - size / 2) * 0.05 + rng.uniform(0, 0.01, size)
    return values.reshape(shape).astype(dtype)


def _describe_pool(case: tuple) -> str:
    n, c, h, w, kernel_size, stride, padding = case
    return f"x ({n}, {c}, {h}, {w}), kernel_size {kernel_size}, stride {stride}, padding {padding}"


def _pool_forward(rng: np.random.Generator, case: tuple, dtype: Any = np.float64) -> tuple:
    n, c, h, w, kernel_size, stride, padding = case
    x = _distinct_values(rng, (n, c, h, w), dtype)
    y, indices = pool_kernels.max_pool2d_forward(x, kernel_size, stride, padding)
    return x, y, indices


def _pool_values(x: np.ndarray, kernel_size: tuple, stride: tuple, padding: tuple) -> np.ndarray:
    return pool_kernels.max_pool2d_forward(x, kernel_size, stride, padding)[0]


def check_maxpool_backward_shape_and_dtype(rng: np.random.Generator) -> None:
    for dtype in (np.float64, np.float32):
        for case in POOL_CASES:
            x, y, indices = _pool_forward(rng, case, dtype)
            grad_output = rng.standard_normal(y.shape).astype(dtype)
            dx = pool_kernels.reference_max_pool2d_backward(grad_output, indices, x.shape)
            _assert_dtype(dx, dtype, "reference_max_pool2d_backward", _describe_pool(case))
            if dx.shape != x.shape:
                raise AssertionError(
                    f"reference_max_pool2d_backward: shape {dx.shape}, expected {x.shape} ({_describe_pool(case)})"
                )


def check_maxpool_backward_matches_numba(rng: np.random.Generator) -> None:
    for case in POOL_CASES:
        x, y, indices = _pool_forward(rng, case)
        grad_output = rng.standard_normal(y.shape)
        _assert_close(
            pool_kernels.reference_max_pool2d_backward(grad_output, indices, x.shape),
            pool_kernels.max_pool2d_backward(grad_output, indices, x.shape),
            "reference_max_pool2d_backward vs max_pool2d_backward", _describe_pool(case),
        )


def check_maxpool_backward_overlap(rng: np.random.Generator) -> None:
    # One pixel is the maximum of all nine overlapping 3×3 windows of a 5×5
    # input, so it must receive the sum of their nine gradients.
    x = np.full((1, 1, 5, 5), -1.0)
    x[0, 0, 2, 2] = 5.0
    y, indices = pool_kernels.max_pool2d_forward(x, (3, 3), (1, 1), (0, 0))
    grad_output = rng.uniform(0.5, 1.5, y.shape)
    expected = np.zeros_like(x)
    expected[0, 0, 2, 2] = grad_output.sum()

    _assert_close(
        pool_kernels.reference_max_pool2d_backward(grad_output, indices, x.shape), expected,
        "reference_max_pool2d_backward", "one maximum shared by nine overlapping 3×3 windows, stride 1",
    )


def check_maxpool_backward_numerical(rng: np.random.Generator) -> None:
    for case in POOL_CASES[1:3]:
        x, y, indices = _pool_forward(rng, case)
        grad_output = rng.standard_normal(y.shape)
        kernel_size, stride, padding = case[4], case[5], case[6]

        loss = _projection(_pool_values, grad_output, x, kernel_size, stride, padding)

        _assert_close(
            pool_kernels.reference_max_pool2d_backward(grad_output, indices, x.shape),
            _numerical_gradient(loss, x), "reference_max_pool2d_backward",
            _describe_pool(case) + ", float64 central differences of max_pool2d_forward", rtol=1e-5, atol=1e-6,
        )


def check_maxpool_backward_gradcheck(rng: np.random.Generator) -> None:
    with _kernel_backend(pool_kernels, "numba", backward=pool_kernels.reference_max_pool2d_backward):
        for case in POOL_CASES:
            x, _, _ = _pool_forward(rng, case)
            kernel_size, stride, padding = case[4], case[5], case[6]
            pool = functools.partial(F.max_pool2d, kernel_size=kernel_size, stride=stride, padding=padding)
            _gradcheck(pool, [_leaf(x)], _describe_pool(case))


# --------------------------------------------------------------------- LSTM

# (N, H)
LSTM_CASES = [(1, 1), (2, 3), (3, 5)]


def _lstm_step(rng: np.random.Generator, batch: int, hidden: int, dtype: Any = np.float64) -> tuple:
    """Return (gates, c, dh, dc, activations, tanh_c_next) for one random cell step."""
    gates = (2 * rng.standard_normal((batch, 4 * hidden))).astype(dtype)
    c = rng.standard_normal((batch, hidden)).astype(dtype)
    grad_h_next = rng.standard_normal((batch, hidden)).astype(dtype)
    grad_c_next = rng.standard_normal((batch, hidden)).astype(dtype)
    # The reference forward is not an exercise, and it runs without compiling.
    _, _, activations, tanh_c_next = lstm_kernels.reference_lstm_cell_forward(gates, c)
    return gates, c, grad_h_next, grad_c_next, activations, tanh_c_next


def _lstm_states(gates: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Return [h' c'] side by side (N, 2H), so one projection covers both outputs."""
    h_next, c_next, _, _ = lstm_kernels.reference_lstm_cell_forward(gates, c)
    return np.concatenate([h_next, c_next], axis=1)


def check_lstm_cell_backward_shape_and_dtype(rng: np.random.Generator) -> None:
    for dtype in (np.float64, np.float32):
        for batch, hidden in LSTM_CASES:
            _, c, dh, dc, activations, tanh_c_next = _lstm_step(rng, batch, hidden, dtype)
            result = lstm_kernels.reference_lstm_cell_backward(dh, dc, c, activations, tanh_c_next)
            case = f"N={batch}, H={hidden}, {np.dtype(dtype)}"
            if not isinstance(result, tuple) or len(result) != 2:
                raise AssertionError(f"reference_lstm_cell_backward: expected a pair (grad_gates, grad_c) ({case})")
            for name, value, shape in zip(("grad_gates", "grad_c"), result, ((batch, 4 * hidden), (batch, hidden))):
                _assert_dtype(value, dtype, f"reference_lstm_cell_backward {name}", case)
                if value.shape != shape:
                    raise AssertionError(f"reference_lstm_cell_backward {name}: shape {value.shape}, expected {shape} ({case})")


def check_lstm_cell_backward_matches_numba(rng: np.random.Generator) -> None:
    for batch, hidden in LSTM_CASES:
        _, c, dh, dc, activations, tanh_c_next = _lstm_step(rng, batch, hidden)
        actual = lstm_kernels.reference_lstm_cell_backward(dh, dc, c, activations, tanh_c_next)
        expected = lstm_kernels.lstm_cell_backward(dh, dc, c, activations, tanh_c_next)
        for name, value, target in zip(("grad_gates", "grad_c"), actual, expected):
            _assert_close(value, target, f"reference_lstm_cell_backward {name} vs lstm_cell_backward", f"N={batch}, H={hidden}")


def check_lstm_cell_backward_numerical(rng: np.random.Generator) -> None:
    for batch, hidden in LSTM_CASES:
        gates, c, dh, dc, activations, tanh_c_next = _lstm_step(rng, batch, hidden)

        loss = _projection(_lstm_states, np.concatenate([dh, dc], axis=1), gates, c)

        grad_gates, grad_c = lstm_kernels.reference_lstm_cell_backward(dh, dc, c, activations, tanh_c_next)
        case = f"N={batch}, H={hidden}, float64 central differences of L = Σ h'·dh' + Σ c'·dc'"
        _assert_close(grad_gates, _numerical_gradient(loss, gates), "grad_gates", case, rtol=1e-5, atol=1e-6)
        _assert_close(grad_c, _numerical_gradient(loss, c), "grad_c", case, rtol=1e-5, atol=1e-6)


def check_lstm_cell_backward_out(rng: np.random.Generator) -> None:
    _, c, dh, dc, activations, tanh_c_next = _lstm_step(rng, 2, 3)
    expected = lstm_kernels.reference_lstm_cell_backward(dh, dc, c, activations, tanh_c_next)
    out = (np.full((2, 12), np.nan), np.full((2, 3), np.nan))

    result = lstm_kernels.reference_lstm_cell_backward(dh, dc, c, activations, tanh_c_next, out=out)

    if not isinstance(result, tuple) or len(result) != 2 or result[0] is not out[0] or result[1] is not out[1]:
        raise AssertionError("reference_lstm_cell_backward(..., out=out) must return the arrays of out themselves")
    for name, value, target in zip(("grad_gates", "grad_c"), out, expected):
        _assert_close(value, target, f"out {name}", "written through out= vs returned without it")


def check_lstm_cell_backward_gradcheck(rng: np.random.Generator) -> None:
    input_size = 3
    with _kernel_backend(lstm_kernels, "reference", backward=lstm_kernels.reference_lstm_cell_backward):
        for batch, hidden in LSTM_CASES[1:]:
            inputs = [
                _leaf(rng.standard_normal((batch, input_size))),
                _leaf(rng.standard_normal((batch, hidden))),
                _leaf(rng.standard_normal((batch, hidden))),
                _leaf(0.5 * rng.standard_normal((4 * hidden, input_size))),
                _leaf(0.5 * rng.standard_normal((4 * hidden, hidden))),
                _leaf(0.5 * rng.standard_normal(4 * hidden)),
                _leaf(0.5 * rng.standard_normal(4 * hidden)),
            ]

            def cell(x, h, c, weight_ih, weight_hh, bias_ih, bias_hh):
                h_next, c_next = F.lstm_cell(x, (h, c), weight_ih, weight_hh, bias_ih, bias_hh)
                return h_next * 0.7 + c_next * 1.3

            _gradcheck(cell, inputs, f"F.lstm_cell, N={batch}, I={input_size}, H={hidden}")


# ------------------------------------------------------------ cross-entropy

REDUCTIONS = ("mean", "sum", "none")


def check_cross_entropy_gradcheck(rng: np.random.Generator) -> None:
    for reduction in REDUCTIONS:
        logits = rng.standard_normal((4, 5)) * 2
        target = rng.integers(0, 5, size=4)
        _gradcheck(
            functools.partial(F.cross_entropy, target=target, reduction=reduction), [_leaf(logits)],
            f"F.cross_entropy, logits (4, 5), reduction={reduction!r}",
        )


def check_cross_entropy_formula(rng: np.random.Generator) -> None:
    for reduction in REDUCTIONS:
        logits = rng.standard_normal((3, 4)) * 2
        target = rng.integers(0, 4, size=3)
        x = _leaf(logits)
        loss = F.cross_entropy(x, target, reduction=reduction)
        upstream = rng.uniform(0.5, 1.5, loss.shape)
        loss.backward(upstream)

        softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
        softmax /= softmax.sum(axis=1, keepdims=True)
        one_hot = np.eye(4)[target]
        scale = {"mean": np.full(3, upstream / 3), "sum": np.full(3, upstream), "none": upstream}[reduction]
        expected = (softmax - one_hot) * scale[:, None]
        _assert_close(x.grad, expected, "x.grad", f"(softmax - one_hot) · upstream, reduction={reduction!r}")


def check_cross_entropy_float32(rng: np.random.Generator) -> None:
    logits = rng.standard_normal((5, 3)) * 3
    target = rng.integers(0, 3, size=5)
    grads = {}
    for dtype in (np.float64, np.float32):
        x = _leaf(logits.astype(dtype))
        F.cross_entropy(x, target).backward()
        grads[dtype] = x.grad

    _assert_dtype(grads[np.float32], np.float32, "x.grad", "float32 logits (5, 3)")
    _assert_close(grads[np.float32], grads[np.float64], "float32 x.grad vs float64", "logits (5, 3)", rtol=1e-4, atol=1e-6)


def _blobs(rng: np.random.Generator, per_class: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Three Gaussian blobs in the plane, 3 units from the origin at 0°, 120° and 240°."""
    angles = np.array([0.0, 2.0, 4.0]) * np.pi / 3
    centers = 3 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    labels = np.repeat(np.arange(3), per_class)
    points = centers[labels] + 0.5 * rng.standard_normal((labels.size, 2))
    return points, labels


def check_cross_entropy_training(rng: np.random.Generator) -> None:
    points, labels = _blobs(rng)
    weight = _leaf(0.01 * rng.standard_normal((3, 2)))
    bias = _leaf(np.zeros(3))

    losses = []
    for _ in range(100):
        loss = F.cross_entropy(F.linear(tm.tensor(points), weight, bias), labels)
        weight.grad = bias.grad = None
        loss.backward()
        weight.data -= 0.5 * weight.grad
        bias.data -= 0.5 * bias.grad
        losses.append(loss.item())

    scores = points @ weight.data.T + bias.data
    accuracy = float(np.mean(scores.argmax(axis=1) == labels))
    if not accuracy >= 0.9:
        raise AssertionError(f"softmax regression on three separable blobs reached accuracy {accuracy:.2f}, expected >= 0.9")
    if not losses[-1] < 0.3 * losses[0]:
        raise AssertionError(f"loss went from {losses[0]:.4g} to {losses[-1]:.4g} in 100 SGD steps; expected below 30% of the start")


# --------------------------------------------------------------------- Adam

# (lr, beta1, beta2, eps, weight_decay)
ADAM_SETTINGS = [
    (1e-2, 0.9, 0.999, 1e-8, 0.0),
    (0.1, 0.8, 0.99, 1e-6, 0.01),
]


def _adam_state(rng: np.random.Generator, size: int, dtype: Any) -> list[np.ndarray]:
    """Return [param, exp_avg, exp_avg_sq] with random values (the moments start at zero, as in Adam)."""
    return [rng.standard_normal(size).astype(dtype), np.zeros(size, dtype=dtype), np.zeros(size, dtype=dtype)]


def _adam_run(rng: np.random.Generator, dtype: Any, setting: tuple, steps: int = 5) -> None:
    lr, beta1, beta2, eps, weight_decay = setting
    student = _adam_state(rng, 9, dtype)
    engine = [array.copy() for array in student]
    case = f"{np.dtype(dtype)}, lr={lr}, betas=({beta1}, {beta2}), eps={eps}, weight_decay={weight_decay}"
    rtol, atol = (1e-12, 1e-15) if dtype == np.float64 else (1e-6, 1e-7)

    for step in range(1, steps + 1):
        grad = rng.standard_normal(9).astype(dtype)
        optim_kernels.adam_update_reference(student[0], grad, student[1], student[2], step, lr, beta1, beta2, eps, weight_decay)
        optim_kernels.adam_update(engine[0], grad, engine[1], engine[2], step, lr, beta1, beta2, eps, weight_decay)
        for name, value, target in zip(("param", "exp_avg", "exp_avg_sq"), student, engine):
            _assert_dtype(value, dtype, name, case)
            _assert_close(value, target, f"{name} after step {step} vs adam_update", case, rtol=rtol, atol=atol)


def check_adam_in_place(rng: np.random.Generator) -> None:
    param, exp_avg, exp_avg_sq = _adam_state(rng, 6, np.float64)
    before = param.copy()
    grad = rng.standard_normal(6)
    grad_before = grad.copy()

    result = optim_kernels.adam_update_reference(param, grad, exp_avg, exp_avg_sq, 1, 1e-2, 0.9, 0.999, 1e-8, 0.0)

    if result is not None:
        raise AssertionError(f"adam_update_reference returned {type(result).__name__}; it must update in place and return None")
    if np.array_equal(param, before):
        raise AssertionError("adam_update_reference left param unchanged; it must update param in place")
    if not np.any(exp_avg) or not np.any(exp_avg_sq):
        raise AssertionError("adam_update_reference left exp_avg or exp_avg_sq at zero; it must update them in place")
    if not np.array_equal(grad, grad_before):
        raise AssertionError("adam_update_reference changed grad; grad is read only")


def check_adam_first_step(rng: np.random.Generator) -> None:
    # At t = 1 without weight decay: m = (1 - β1) g and v = (1 - β2) g², so the
    # bias corrections give m̂ = g and sqrt(v̂) = |g|, and p moves by lr·g / (|g| + eps).
    lr, eps = 0.05, 1e-8
    param, exp_avg, exp_avg_sq = _adam_state(rng, 7, np.float64)
    start = param.copy()
    grad = rng.standard_normal(7)

    optim_kernels.adam_update_reference(param, grad, exp_avg, exp_avg_sq, 1, lr, 0.9, 0.999, eps, 0.0)

    case = "first step, lr=0.05, betas=(0.9, 0.999), eps=1e-8"
    _assert_close(exp_avg, 0.1 * grad, "exp_avg", case, rtol=1e-12)
    _assert_close(exp_avg_sq, 0.001 * grad * grad, "exp_avg_sq", case, rtol=1e-12)
    _assert_close(param, start - lr * grad / (np.abs(grad) + eps), "param", case, rtol=1e-9)


def check_adam_matches_numba(rng: np.random.Generator) -> None:
    for setting in ADAM_SETTINGS:
        _adam_run(rng, np.float64, setting)


def check_adam_float32(rng: np.random.Generator) -> None:
    for setting in ADAM_SETTINGS:
        _adam_run(rng, np.float32, setting)


def check_adam_training(rng: np.random.Generator) -> None:
    # Minimize Σ (p - target)², whose gradient is 2 (p - target).
    target = rng.standard_normal(5)
    param, exp_avg, exp_avg_sq = _adam_state(rng, 5, np.float64)
    start = float(np.sum((param - target) ** 2))

    for step in range(1, 301):
        grad = 2 * (param - target)
        optim_kernels.adam_update_reference(param, grad, exp_avg, exp_avg_sq, step, 0.05, 0.9, 0.999, 1e-8, 0.0)

    end = float(np.sum((param - target) ** 2))
    if not end < 1e-3 * start:
        raise AssertionError(
            f"300 Adam steps (lr=0.05) on Σ (p - target)² took the loss from {start:.4g} only to {end:.4g}; "
            "expected below 0.1% of the start"
        )


# ---------------------------------------------------------- graph ordering


class _SplitHalves(tm.autograd.Function):
    """Two outputs from one node: the first k columns of x and the rest."""

    @staticmethod
    def forward(ctx: Any, x: np.ndarray, k: int) -> tuple:
        ctx.k, ctx.width = k, x.shape[1]
        return x[:, :k].copy(), x[:, k:].copy()

    @staticmethod
    def backward(ctx: Any, left: np.ndarray, right: np.ndarray) -> tuple:
        return np.concatenate([left, right], axis=1), None


def _graphs(rng: np.random.Generator) -> dict[str, tm.Tensor]:
    """Return named graphs as their scalar outputs: a chain, diamonds, a two-output node, a random DAG."""
    graphs = {}

    x = _leaf(rng.standard_normal(3))
    y = x
    for _ in range(6):
        y = (y * 1.1).tanh()
    graphs["chain"] = y.sum()

    # One path from a to the output is much longer than the other, so a
    # breadth-first order would visit a before its last consumer.
    a = _leaf(rng.standard_normal(3)) * 2.0
    long = a
    for _ in range(4):
        long = long.exp() * 0.5
    graphs["uneven diamond"] = (a * long).sum()

    b = _leaf(rng.standard_normal((2, 4)))
    left, right = _SplitHalves.apply(b.tanh(), 1)
    graphs["two-output node"] = (left.sum() * right).sum() + left.sum()

    pool = [_leaf(rng.standard_normal(4)) for _ in range(3)]
    for _ in range(25):
        i, j = rng.integers(0, len(pool), size=2)
        kind = rng.integers(0, 3)
        if kind == 0:
            pool.append(pool[i] + pool[j])
        elif kind == 1:
            pool.append(pool[i] * pool[j].tanh())
        else:
            pool.append(pool[i].sigmoid() - 0.5 * pool[j])
    graphs["random DAG"] = tm.stack(pool[-6:]).sum()
    return graphs


def _reachable(root: Any) -> dict[int, Any]:
    found = {id(root): root}
    stack = [root]
    while stack:
        for tensor in stack.pop().inputs:
            producer = None if tensor is None else tensor.grad_fn
            if producer is not None and id(producer) not in found:
                found[id(producer)] = producer
                stack.append(producer)
    return found


def _student_order(output: tm.Tensor, graph: str) -> list:
    order = autograd._topological_order(output.grad_fn)
    if not isinstance(order, list):
        raise AssertionError(  # noqa: TRY004
            f"_topological_order returned {type(order).__name__}, expected a list of nodes ({graph})"
        )
    return order


def check_topological_covers_each_node_once(rng: np.random.Generator) -> None:
    for graph, output in _graphs(rng).items():
        order = _student_order(output, graph)
        ids = [id(node) for node in order]
        if len(ids) != len(set(ids)):
            raise AssertionError(f"_topological_order lists some node more than once ({graph})")
        expected = _reachable(output.grad_fn)
        missing = [node for key, node in expected.items() if key not in set(ids)]
        if missing:
            raise AssertionError(f"_topological_order misses {len(missing)} reachable node(s), e.g. {missing[0]!r} ({graph})")
        extra = len(set(ids) - set(expected))
        if extra:
            raise AssertionError(f"_topological_order lists {extra} node(s) not reachable from the root ({graph})")


def check_topological_consumers_first(rng: np.random.Generator) -> None:
    for graph, output in _graphs(rng).items():
        order = _student_order(output, graph)
        position = {id(node): k for k, node in enumerate(order)}
        for node in order:
            for tensor in node.inputs:
                producer = None if tensor is None else tensor.grad_fn
                if producer is not None and position.get(id(producer), -1) < position[id(node)]:
                    raise AssertionError(
                        f"_topological_order puts {producer!r} (position {position.get(id(producer))}) before "
                        f"its consumer {node!r} (position {position[id(node)]}) ({graph})"
                    )


def check_topological_root_first(rng: np.random.Generator) -> None:
    for graph, output in _graphs(rng).items():
        order = _student_order(output, graph)
        if not order or order[0] is not output.grad_fn:
            raise AssertionError(f"_topological_order must start with the root node {output.grad_fn!r} ({graph})")


def check_topological_deep_chain(rng: np.random.Generator) -> None:
    # 3000 ops is three times Python's default recursion limit, so only an
    # explicit stack (or a loop) gets through.
    depth = 3000
    x = _leaf(rng.uniform(0.5, 1.5, 2))
    y = x
    for _ in range(depth):
        y = y * 1.0002
    y.sum().backward()

    _assert_close(x.grad, np.full(2, 1.0002**depth), "x.grad", f"y = x · 1.0002 applied {depth} times", rtol=1e-9)


def check_topological_backward(rng: np.random.Generator) -> None:
    def shared(x, w):
        hidden = (x @ w).tanh()
        return (hidden * hidden.sigmoid() + hidden * x.sum()).sum()

    _gradcheck(shared, [_leaf(rng.standard_normal((2, 3))), _leaf(rng.standard_normal((3, 3)))],
               "a graph where the hidden layer and x each feed several consumers")


# ------------------------------------------------------------------- table

CHECKS: dict[str, list[Check]] = {
    "topological_sort": [
        Check("covers_each_node_once", 2, check_topological_covers_each_node_once),
        Check("consumers_before_producers", 3, check_topological_consumers_first),
        Check("root_first", 1, check_topological_root_first),
        Check("deep_chain_no_recursion", 2, check_topological_deep_chain),
        Check("backward_gradcheck", 2, check_topological_backward),
    ],
    "cross_entropy_backward": [
        Check("gradcheck_each_reduction", 4, check_cross_entropy_gradcheck),
        Check("softmax_minus_one_hot", 2, check_cross_entropy_formula),
        Check("float32", 2, check_cross_entropy_float32),
        Check("training_run", 2, check_cross_entropy_training),
    ],
    "conv_forward": [
        Check("shape_and_dtype", 2, check_conv_forward_shape_and_dtype),
        Check("matches_numba", 4, check_conv_forward_matches_numba),
        Check("gradcheck_with_engine_backward", 2, check_conv_forward_gradcheck),
        Check("training_run", 2, check_conv_forward_training),
    ],
    "conv_backward": [
        Check("shape_and_dtype", 2, check_conv_backward_shape_and_dtype),
        Check("matches_numba", 3, check_conv_backward_matches_numba),
        Check("numerical_gradient", 3, check_conv_backward_numerical),
        Check("op_gradcheck", 2, check_conv_backward_gradcheck),
    ],
    "maxpool_backward": [
        Check("shape_and_dtype", 2, check_maxpool_backward_shape_and_dtype),
        Check("matches_numba", 3, check_maxpool_backward_matches_numba),
        Check("overlapping_windows_add", 2, check_maxpool_backward_overlap),
        Check("numerical_gradient", 2, check_maxpool_backward_numerical),
        Check("op_gradcheck", 1, check_maxpool_backward_gradcheck),
    ],
    "lstm_cell_backward": [
        Check("shape_and_dtype", 2, check_lstm_cell_backward_shape_and_dtype),
        Check("matches_numba", 3, check_lstm_cell_backward_matches_numba),
        Check("numerical_gradient", 2, check_lstm_cell_backward_numerical),
        Check("out_argument", 1, check_lstm_cell_backward_out),
        Check("op_gradcheck", 2, check_lstm_cell_backward_gradcheck),
    ],
    "adam_step": [
        Check("updates_in_place", 2, check_adam_in_place),
        Check("first_step_formula", 1, check_adam_first_step),
        Check("matches_numba_float64", 3, check_adam_matches_numba),
        Check("matches_numba_float32", 2, check_adam_float32),
        Check("training_run", 2, check_adam_training),
    ],
}


# ------------------------------------------------------------------ running


def check_seed(exercise: str, check: str, base_seed: int = 0) -> int:
    """Return the seed of one check: fixed per (exercise, check), shifted by ``base_seed``."""
    return (zlib.crc32(f"{exercise}/{check}".encode()) + base_seed) % 2**32


def describe_error(error: BaseException) -> str:
    """Return ``Type: message``, plus the innermost source line for errors other than a failed assert."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, AssertionError):
        return text
    frames = traceback.extract_tb(error.__traceback__)
    if frames:
        last = frames[-1]
        # Paths inside the graded copy (the working directory) read best relative to it.
        filename = os.path.relpath(last.filename) if os.path.abspath(last.filename).startswith(os.getcwd()) else last.filename
        text += f" (at {filename}:{last.lineno} in {last.name})"
    return text


def run_check(exercise: str, check: Check, base_seed: int = 0) -> dict[str, Any]:
    """Run one check with the other exercises isolated; return its result as a dict.

    Keys: check, points, max_points, passed, message, seconds.
    """
    rng = np.random.default_rng(check_seed(exercise, check.name, base_seed))
    start = time.perf_counter()
    try:
        with isolated(exercise), np.errstate(all="ignore"):
            check.function(rng)
    except Exception as error:  # noqa: BLE001 - a student's code may raise anything
        passed, message = False, describe_error(error)
    else:
        passed, message = True, ""

    return {
        "check": check.name,
        "points": check.points if passed else 0,
        "max_points": check.points,
        "passed": passed,
        "message": message,
        "seconds": round(time.perf_counter() - start, 3),
    }
