"""Max-pooling kernels: max_pool2d forward and backward, in NCHW layout.

Notation: N batch, C channels, H×W input size, KH×KW window size, OH×OW output
size, (sh, sw) stride, (ph, pw) padding on each side. x is the input, y the
output and dy = ∂L/∂y the gradient that arrives from above.

Forward. Window (oh, ow) covers the rows h = oh·sh - ph + i and columns
w = ow·sw - pw + j for 0 <= i < KH and 0 <= j < KW, and only the positions
inside the input take part::

    y[n, c, oh, ow] = max over the window of x[n, c, h, w]
    indices[n, c, oh, ow] = h·W + w of the position that gave the maximum
    OH = (H + 2·ph - KH) // sh + 1
    OW = (W + 2·pw - KW) // sw + 1

The rules follow PyTorch's CPU kernel, so the two agree position by position:

- Padding never wins, as if it held -inf; so an all-negative window at the
  border returns its largest real value, not 0.
- On a tie, the first maximum in row-major order wins.
- NaN counts as larger than any number, and the first NaN of a window wins.
  (PyTorch 2.13's CPU kernel lets a later NaN replace an earlier one; the
  output value is NaN either way, only the index differs.)

Backward. The whole gradient of an output goes to the input position that won
its window. Where windows overlap, one input position can win several windows,
and then it receives the sum::

    dx[n, c, h, w] = Σ dy[n, c, oh, ow] over the (oh, ow) with indices[n, c, oh, ow] = h·W + w

Each kernel comes twice behind one signature: ``reference_*`` written as
plain loops over the formula, and the Numba version, parallel over the N·C
image planes. Calls of the Numba versions from several Python threads run one
at a time (``tinymbm.kernels.shares.one_parallel_kernel_at_a_time``).
``kernel_size``, ``stride`` and ``padding`` are pairs of ints.
Callers check the arguments first (``tinymbm.functional.max_pool2d`` does);
in particular a padding of at most half the window keeps every window at
least partly inside the input.
"""

import math
from types import SimpleNamespace

import numpy as np
from numba import njit, prange

from tinymbm.kernels.conv import conv_output_size
from tinymbm.kernels.shares import one_parallel_kernel_at_a_time

# ---------------------------------------------------------------- reference


def reference_max_pool2d_forward(
    x: np.ndarray,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Compute the maximum of every window, and where it was, with one loop per index.

    Args:
        x: (N, C, H, W) input, float32 or float64.
        kernel_size: (KH, KW).
        stride: (sh, sw).
        padding: (ph, pw).

    Returns:
        ``(y, indices)``: y of shape (N, C, OH, OW) and dtype of x, and int64
        indices of the same shape, each the flat position h·W + w of its
        window's maximum within the H×W plane.
    """
    n_batch, channels, height, width = x.shape
    kernel_h, kernel_w = kernel_size
    sh, sw = stride
    ph, pw = padding
    out_h = conv_output_size(height, kernel_h, sh, ph)
    out_w = conv_output_size(width, kernel_w, sw, pw)
    y = np.zeros((n_batch, channels, out_h, out_w), dtype=x.dtype)
    indices = np.zeros((n_batch, channels, out_h, out_w), dtype=np.int64)

    for n in range(n_batch):
        for c in range(channels):
            for oh in range(out_h):
                for ow in range(out_w):
                    best = None
                    best_index = -1
                    for i in range(kernel_h):
                        for j in range(kernel_w):
                            h = oh * sh - ph + i
                            w = ow * sw - pw + j
                            if not (0 <= h < height and 0 <= w < width):
                                continue  # padding never wins
                            value = x[n, c, h, w]
                            if best is None:
                                wins = True
                            elif math.isnan(best):
                                wins = False  # the first NaN stays
                            else:
                                # Strictly greater, so a tie keeps the earlier position.
                                wins = math.isnan(value) or value > best
                            if wins:
                                best = value
                                best_index = h * width + w
                    y[n, c, oh, ow] = best
                    indices[n, c, oh, ow] = best_index
    return y, indices


def reference_max_pool2d_backward(
    grad_output: np.ndarray,
    indices: np.ndarray,
    input_shape: tuple[int, int, int, int],
) -> np.ndarray:
    """Send each output's gradient to the input position that won its window.

    Args:
        grad_output: (N, C, OH, OW) gradient dy.
        indices: (N, C, OH, OW) int64 flat positions from the forward pass.
        input_shape: (N, C, H, W) of x.

    Returns:
        dx of shape (N, C, H, W) and dtype of grad_output.
    """
    # BEGIN EXERCISE maxpool_backward: implement dx, adding dy[n, c, oh, ow] at the flat position indices[n, c, oh, ow]
    n_batch, channels, out_h, out_w = grad_output.shape
    width = input_shape[3]
    dx = np.zeros(input_shape, dtype=grad_output.dtype)

    for n in range(n_batch):
        for c in range(channels):
            for oh in range(out_h):
                for ow in range(out_w):
                    h, w = divmod(int(indices[n, c, oh, ow]), width)
                    dx[n, c, h, w] += grad_output[n, c, oh, ow]
    return dx
    # END EXERCISE maxpool_backward


# -------------------------------------------------------------------- numba


@one_parallel_kernel_at_a_time
@njit(cache=True, parallel=True)
def max_pool2d_forward(x, kernel_size, stride, padding):
    """Compute the maximum of every window and its flat position; same signature as the reference."""
    n_batch, channels, height, width = x.shape
    kernel_h, kernel_w = kernel_size
    sh, sw = stride
    ph, pw = padding
    out_h = conv_output_size(height, kernel_h, sh, ph)
    out_w = conv_output_size(width, kernel_w, sw, pw)
    y = np.empty((n_batch, channels, out_h, out_w), dtype=x.dtype)
    indices = np.empty((n_batch, channels, out_h, out_w), dtype=np.int64)

    for task in prange(n_batch * channels):
        n = task // channels
        c = task % channels
        for oh in range(out_h):
            # Clip the window to the input, so padding never takes part.
            h_lo = max(oh * sh - ph, 0)
            h_hi = min(oh * sh - ph + kernel_h, height)
            for ow in range(out_w):
                w_lo = max(ow * sw - pw, 0)
                w_hi = min(ow * sw - pw + kernel_w, width)

                best = x[n, c, h_lo, w_lo]
                best_index = h_lo * width + w_lo
                for h in range(h_lo, h_hi):
                    for w in range(w_lo, w_hi):
                        value = x[n, c, h, w]
                        # "not value <= best" means value is greater or NaN, and
                        # strictly greater keeps the first of tied maxima.
                        # best == best is false only once best is NaN, so the
                        # first NaN stays. (Measured about 3x faster than math.isnan.)
                        if not value <= best and best == best:  # noqa: PLR0124
                            best = value
                            best_index = h * width + w

                y[n, c, oh, ow] = best
                indices[n, c, oh, ow] = best_index
    return y, indices


@one_parallel_kernel_at_a_time
@njit(cache=True, parallel=True)
def max_pool2d_backward(grad_output, indices, input_shape):
    """Send each output's gradient to the position that won its window; same signature as the reference."""
    n_batch, channels, out_h, out_w = grad_output.shape
    height, width = input_shape[2], input_shape[3]
    dx = np.zeros((n_batch, channels, height * width), dtype=grad_output.dtype)

    # One task owns one plane dx[n, c]: overlapping windows can send gradient
    # to the same pixel, so splitting a plane between threads would race.
    for task in prange(n_batch * channels):
        n = task // channels
        c = task % channels
        for oh in range(out_h):
            for ow in range(out_w):
                dx[n, c, indices[n, c, oh, ow]] += grad_output[n, c, oh, ow]
    return dx.reshape(input_shape)


# ------------------------------------------------------------ backend choice

BACKENDS = {
    "numba": SimpleNamespace(forward=max_pool2d_forward, backward=max_pool2d_backward),
    "reference": SimpleNamespace(forward=reference_max_pool2d_forward, backward=reference_max_pool2d_backward),
}

# The backend that tinymbm.functional.max_pool2d runs. Tests and lessons set it
# to "reference" to run the loop versions through the same autograd op.
backend = "numba"


def select(name: str | None = None) -> SimpleNamespace:
    """Return the kernels of backend ``name`` ("numba" or "reference"; default: the module's ``backend``).

    The result has the attributes forward and backward.
    """
    chosen = backend if name is None else name
    if chosen not in BACKENDS:
        raise ValueError(f"unknown max-pool kernel backend {chosen!r}; expected one of {sorted(BACKENDS)}")
    return BACKENDS[chosen]
