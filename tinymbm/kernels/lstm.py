"""LSTM cell kernels: the gate nonlinearities and the cell update, fused.

The matrix products stay outside, in BLAS (``numpy @``). A caller first forms
the pre-activations of all four gates in one array, then one kernel call
applies the nonlinearities and updates the cell.

Notation: N batch, H hidden size, I input size. Gates are stacked along the
last axis in the order input, forget, cell, output (i, f, g, o), the same order
as PyTorch, so ``gates[:, 0:H]`` is i, ``gates[:, H:2H]`` is f,
``gates[:, 2H:3H]`` is g and ``gates[:, 3H:4H]`` is o.

Forward, with ``gates = x @ W_ih.T + b_ih + h @ W_hh.T + b_hh`` of shape (N, 4H)::

    i = σ(gates[:, 0:H])       f = σ(gates[:, H:2H])
    g = tanh(gates[:, 2H:3H])  o = σ(gates[:, 3H:4H])
    c' = f ⊙ c + i ⊙ g
    h' = o ⊙ tanh(c')

Backward, given dh' = ∂L/∂h' and dc' = ∂L/∂c' (the gradient that reaches c'
directly, for example from the next time step)::

    dc_total = dc' + dh' ⊙ o ⊙ (1 - tanh(c')²)
    d(gates_i) = dc_total ⊙ g ⊙ i ⊙ (1 - i)
    d(gates_f) = dc_total ⊙ c ⊙ f ⊙ (1 - f)
    d(gates_g) = dc_total ⊙ i ⊙ (1 - g²)
    d(gates_o) = dh' ⊙ tanh(c') ⊙ o ⊙ (1 - o)
    dc = dc_total ⊙ f

Each kernel comes twice behind one signature: a reference version written with
NumPy as literally as the equations, and a Numba version that computes the
nonlinearities itself in SIMD-friendly loops. Tests hold the two equal.

Both kernels take an optional ``out``, a tuple of preallocated arrays with the
shapes and dtype of the results, as NumPy's ufuncs do. The kernel then writes
the results into those arrays and returns them. ``tinymbm.functional.lstm_layer``
uses it to write every step straight into its (T, N, ·) arrays, with no copy.
"""

import math
from types import SimpleNamespace

import numpy as np
from numba import njit, types
from numba.extending import overload

# ---------------------------------------------------------------- reference


def reference_sigmoid(z: np.ndarray) -> np.ndarray:
    """Compute σ(z) = 1 / (1 + exp(-z)) elementwise without overflow.

    For z < 0 the same value is written exp(z) / (1 + exp(z)), so exp never
    receives a large positive argument.
    """
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def reference_lstm_cell_forward(
    gates: np.ndarray, c: np.ndarray, out: tuple | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Apply the gate nonlinearities and update the cell (NumPy reference).

    Args:
        gates: (N, 4H) pre-activations, stacked i, f, g, o.
        c: (N, H) cell state.
        out: None, or four arrays to write the results into.

    Returns:
        ``(h_next, c_next, activations, tanh_c_next)``: h' (N, H), c' (N, H),
        the activated gates ``[i, f, g, o]`` stacked as (N, 4H), and tanh(c')
        (N, H). The last two are what :func:`reference_lstm_cell_backward` needs.
    """
    hidden = c.shape[1]

    i = reference_sigmoid(gates[:, 0 * hidden:1 * hidden])
    f = reference_sigmoid(gates[:, 1 * hidden:2 * hidden])
    g = np.tanh(gates[:, 2 * hidden:3 * hidden])
    o = reference_sigmoid(gates[:, 3 * hidden:4 * hidden])

    c_next = f * c + i * g
    tanh_c_next = np.tanh(c_next)
    h_next = o * tanh_c_next

    activations = np.concatenate([i, f, g, o], axis=1)
    return _store((h_next, c_next, activations, tanh_c_next), out)


def reference_lstm_cell_backward(
    grad_h_next: np.ndarray,
    grad_c_next: np.ndarray,
    c: np.ndarray,
    activations: np.ndarray,
    tanh_c_next: np.ndarray,
    out: tuple | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Backpropagate through one cell update (NumPy reference).

    Args:
        grad_h_next: (N, H) gradient of the loss with respect to h'.
        grad_c_next: (N, H) gradient that reaches c' directly (zeros if none).
        c: (N, H) cell state the forward pass received.
        activations: (N, 4H) activated gates ``[i, f, g, o]`` from the forward pass.
        tanh_c_next: (N, H) tanh(c') from the forward pass.
        out: None, or two arrays to write the results into.

    Returns:
        ``(grad_gates, grad_c)``: the gradient of the pre-activations (N, 4H)
        and of the previous cell state c (N, H).
    """
    # BEGIN EXERCISE lstm_cell_backward: implement the module docstring's backward equations, then return _store((grad_gates, grad_c), out)
    hidden = c.shape[1]
    i = activations[:, 0 * hidden:1 * hidden]
    f = activations[:, 1 * hidden:2 * hidden]
    g = activations[:, 2 * hidden:3 * hidden]
    o = activations[:, 3 * hidden:4 * hidden]

    grad_c_total = grad_c_next + grad_h_next * o * (1 - tanh_c_next**2)

    grad_i = grad_c_total * g * i * (1 - i)
    grad_f = grad_c_total * c * f * (1 - f)
    grad_g = grad_c_total * i * (1 - g**2)
    grad_o = grad_h_next * tanh_c_next * o * (1 - o)

    grad_gates = np.concatenate([grad_i, grad_f, grad_g, grad_o], axis=1)
    grad_c = grad_c_total * f
    return _store((grad_gates, grad_c), out)
    # END EXERCISE lstm_cell_backward


def _store(results: tuple, out: tuple | None) -> tuple:
    if out is None:
        return results
    for target, value in zip(out, results):
        target[...] = value
    return out


# -------------------------------------------------------------------- numba
#
# math.exp and math.tanh compile to scalar libm calls, which LLVM cannot
# vectorize, and with them the fused kernel ran several times slower than
# NumPy's SIMD ufuncs. The helpers below compute exp and expm1 from a Taylor
# polynomial and a power of two built from the exponent bits. That is plain
# arithmetic, which LLVM turns into SIMD code. There is one set for float64
# and one for float32, because float32 does half the work per element at
# twice the SIMD width.
#
# Every helper uses error_model="numpy": a division by zero gives inf or nan,
# as in NumPy, instead of a ZeroDivisionError check on every division, which
# would stop LLVM from vectorizing the loop.

_JIT = {"cache": True, "inline": "always", "error_model": "numpy"}

# ln 2 split in two: k * _LN2_HI is exact for the k that occur, so the reduced
# argument r = x - k ln 2 keeps its full precision.
_INV_LN2 = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10

_INV_LN2_F32 = np.float32(1.4426950408889634)
_LN2_HI_F32 = np.float32(0.693359375)
_LN2_LO_F32 = np.float32(-2.1219444005469058e-04)


@njit(**_JIT)
def _expm1_reduced_f64(x):
    """Split x = k ln2 + r with |r| <= ln2 / 2 and return (k, e^r - 1).

    e^r - 1 is its Taylor series up to r^13 / 13!. The first term left out is
    below 5e-18 for |r| <= ln2 / 2, under float64 rounding.
    """
    k = np.floor(x * _INV_LN2 + 0.5)
    r = (x - k * _LN2_HI) - k * _LN2_LO

    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    return k, p * r


@njit(**_JIT)
def _power_of_two_f64(k):
    # A float64 with biased exponent k + 1023 and a zero mantissa is 2^k
    # (valid for -1022 <= k <= 1023).
    return np.int64((np.int64(k) + 1023) << 52).view(np.float64)


@njit(**_JIT)
def _exp_nonpositive_f64(x):
    """Compute exp(x) for float64 x <= 0 (x = -inf gives 0, NaN gives NaN)."""
    # exp(-746) is below half the smallest subnormal float64, so it rounds to 0.
    x = max(x, -746.0)
    k, p = _expm1_reduced_f64(x)

    # Building 2^(k + 100), then multiplying by 2^-100, keeps the exponent
    # field valid down into the subnormal range, where the last product rounds
    # correctly.
    scale = _power_of_two_f64(k + 100)
    return (scale + scale * p) * 7.888609052210118e-31  # 2^-100


@njit(**_JIT)
def _expm1_nonpositive_f64(x):
    """Compute exp(x) - 1 for float64 x <= 0, accurate near 0 where 1 - exp(x) cancels."""
    # Below -50, exp(x) - 1 rounds to -1 in float64.
    x = max(x, -50.0)
    k, p = _expm1_reduced_f64(x)

    # exp(x) - 1 = 2^k (e^r - 1) + (2^k - 1), and 2^k - 1 is exact.
    scale = _power_of_two_f64(k)
    return scale * p + (scale - 1.0)


@njit(**_JIT)
def _expm1_reduced_f32(x):
    """Split x = k ln2 + r with |r| <= ln2 / 2 and return (k, e^r - 1), all float32.

    The Taylor series stops at r^7 / 7!. The first term left out is below 6e-9
    for |r| <= ln2 / 2, under float32 rounding.
    """
    k = np.floor(x * _INV_LN2_F32 + np.float32(0.5))
    r = (x - k * _LN2_HI_F32) - k * _LN2_LO_F32

    p = np.float32(1.0 / 5040.0)
    p = p * r + np.float32(1.0 / 720.0)
    p = p * r + np.float32(1.0 / 120.0)
    p = p * r + np.float32(1.0 / 24.0)
    p = p * r + np.float32(1.0 / 6.0)
    p = p * r + np.float32(0.5)
    p = p * r + np.float32(1.0)
    return k, p * r


@njit(**_JIT)
def _power_of_two_f32(k):
    # A float32 with biased exponent k + 127 and a zero mantissa is 2^k
    # (valid for -126 <= k <= 127).
    return np.int32((np.int32(k) + 127) << 23).view(np.float32)


@njit(**_JIT)
def _exp_nonpositive_f32(x):
    """Compute exp(x) for float32 x <= 0 (x = -inf gives 0, NaN gives NaN)."""
    # exp(-104) is below half the smallest subnormal float32, so it rounds to 0.
    x = max(x, np.float32(-104.0))
    k, p = _expm1_reduced_f32(x)

    scale = _power_of_two_f32(k + np.float32(64.0))
    return (scale + scale * p) * np.float32(5.421010862427522e-20)  # 2^-64


@njit(**_JIT)
def _expm1_nonpositive_f32(x):
    """Compute exp(x) - 1 for float32 x <= 0, accurate near 0."""
    # Below -20, exp(x) - 1 rounds to -1 in float32.
    x = max(x, np.float32(-20.0))
    k, p = _expm1_reduced_f32(x)

    scale = _power_of_two_f32(k)
    return scale * p + (scale - np.float32(1.0))


@njit(**_JIT)
def _sigmoid_f64(z):
    """Compute σ(z) = 1 / (1 + exp(-z)) for float64, written with exp(-|z|) to avoid overflow."""
    e = _exp_nonpositive_f64(-abs(z))
    s = 1.0 / (1.0 + e)
    return s if z >= 0 else e * s


@njit(**_JIT)
def _tanh_f64(z):
    """Compute tanh(z) = (1 - exp(-2|z|)) / (1 + exp(-2|z|)) for float64, with the sign of z."""
    m = _expm1_nonpositive_f64(-2.0 * abs(z))
    return math.copysign(-m / (2.0 + m), z)


@njit(**_JIT)
def _sigmoid_f32(z):
    """Compute σ(z) for float32, as :func:`_sigmoid_f64` does."""
    e = _exp_nonpositive_f32(-abs(z))
    s = np.float32(1.0) / (np.float32(1.0) + e)
    return s if z >= 0 else e * s


@njit(**_JIT)
def _tanh_f32(z):
    """Compute tanh(z) for float32, as :func:`_tanh_f64` does."""
    m = _expm1_nonpositive_f32(np.float32(-2.0) * abs(z))
    return math.copysign(-m / (np.float32(2.0) + m), z)


# _sigmoid and _tanh pick the float32 or float64 helper. Compiled code uses
# the overloads below, which choose by type once, at compile time. The Python
# bodies serve NUMBA_DISABLE_JIT=1, where the kernels run as plain Python.


def _sigmoid(z):
    """Compute σ(z) in the precision of z."""
    return _sigmoid_f32(z) if isinstance(z, np.float32) else _sigmoid_f64(z)


def _tanh(z):
    """Compute tanh(z) in the precision of z."""
    return _tanh_f32(z) if isinstance(z, np.float32) else _tanh_f64(z)


@overload(_sigmoid)
def _sigmoid_for_type(z):
    if z == types.float32:
        return lambda z: _sigmoid_f32(z)
    return lambda z: _sigmoid_f64(z)


@overload(_tanh)
def _tanh_for_type(z):
    if z == types.float32:
        return lambda z: _tanh_f32(z)
    return lambda z: _tanh_f64(z)


@njit(cache=True, error_model="numpy")
def lstm_cell_forward(gates, c, out=None):
    """Apply the gate nonlinearities and update the cell (Numba).

    Same arguments, results and equations as :func:`reference_lstm_cell_forward`.
    ``gates``, ``c`` and the arrays of ``out`` must share one dtype, float32
    or float64.
    """
    batch, hidden = c.shape
    if out is None:
        h_next = np.empty((batch, hidden), dtype=c.dtype)
        c_next = np.empty((batch, hidden), dtype=c.dtype)
        activations = np.empty((batch, 4 * hidden), dtype=c.dtype)
        tanh_c_next = np.empty((batch, hidden), dtype=c.dtype)
    else:
        h_next, c_next, activations, tanh_c_next = out

    # Each inner loop reads one or two arrays and writes one. LLVM vectorizes
    # loops of that shape, but not a single loop that writes four arrays it
    # cannot prove distinct.
    for n in range(batch):
        for j in range(hidden):
            activations[n, j] = _sigmoid(gates[n, j])
        for j in range(hidden, 2 * hidden):
            activations[n, j] = _sigmoid(gates[n, j])
        for j in range(2 * hidden, 3 * hidden):
            activations[n, j] = _tanh(gates[n, j])
        for j in range(3 * hidden, 4 * hidden):
            activations[n, j] = _sigmoid(gates[n, j])

        for j in range(hidden):
            i = activations[n, j]
            f = activations[n, hidden + j]
            g = activations[n, 2 * hidden + j]
            c_next[n, j] = f * c[n, j] + i * g
        for j in range(hidden):
            tanh_c_next[n, j] = _tanh(c_next[n, j])
        for j in range(hidden):
            o = activations[n, 3 * hidden + j]
            h_next[n, j] = o * tanh_c_next[n, j]

    return h_next, c_next, activations, tanh_c_next


@njit(cache=True, error_model="numpy")
def lstm_cell_backward(grad_h_next, grad_c_next, c, activations, tanh_c_next, out=None):
    """Backpropagate through one cell update (Numba).

    Same arguments, results and equations as :func:`reference_lstm_cell_backward`.
    """
    batch, hidden = c.shape
    if out is None:
        grad_gates = np.empty((batch, 4 * hidden), dtype=c.dtype)
        grad_c = np.empty((batch, hidden), dtype=c.dtype)
    else:
        grad_gates, grad_c = out

    # A plain 1 would be an int64, which turns float32 arithmetic into float64.
    one = c.dtype.type(1)

    # One output array per loop, for SIMD as in the forward kernel. grad_c
    # holds dc_total until the last loop multiplies it by f.
    for n in range(batch):
        for j in range(hidden):
            o = activations[n, 3 * hidden + j]
            tc = tanh_c_next[n, j]
            grad_c[n, j] = grad_c_next[n, j] + grad_h_next[n, j] * o * (one - tc * tc)

        for j in range(hidden):
            i = activations[n, j]
            g = activations[n, 2 * hidden + j]
            grad_gates[n, j] = grad_c[n, j] * g * i * (one - i)
        for j in range(hidden):
            f = activations[n, hidden + j]
            grad_gates[n, hidden + j] = grad_c[n, j] * c[n, j] * f * (one - f)
        for j in range(hidden):
            i = activations[n, j]
            g = activations[n, 2 * hidden + j]
            grad_gates[n, 2 * hidden + j] = grad_c[n, j] * i * (one - g * g)
        for j in range(hidden):
            o = activations[n, 3 * hidden + j]
            tc = tanh_c_next[n, j]
            grad_gates[n, 3 * hidden + j] = grad_h_next[n, j] * tc * o * (one - o)

        for j in range(hidden):
            grad_c[n, j] *= activations[n, hidden + j]

    return grad_gates, grad_c


# ------------------------------------------------------------ backend choice

BACKENDS = {
    "numba": SimpleNamespace(forward=lstm_cell_forward, backward=lstm_cell_backward),
    "reference": SimpleNamespace(
        forward=reference_lstm_cell_forward, backward=reference_lstm_cell_backward
    ),
}

# The backend that the LSTM ops of tinymbm.functional run. Tests, benchmarks
# and lessons set it to "reference" to run the NumPy versions through the same
# autograd ops.
backend = "numba"


def select(name: str | None = None) -> SimpleNamespace:
    """Return the kernels of backend ``name``, "numba" or "reference" (default: ``backend``).

    The result has the attributes ``forward`` and ``backward``.
    """
    chosen = backend if name is None else name
    if chosen not in BACKENDS:
        raise ValueError(
            f"unknown LSTM kernel backend {chosen!r}; expected one of {sorted(BACKENDS)}"
        )
    return BACKENDS[chosen]
