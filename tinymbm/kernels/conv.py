"""Convolution kernels: conv2d forward and its three gradients, in NCHW layout.

Notation: N batch, C input channels, F output channels (filters), H×W input
size, KH×KW kernel size, OH×OW output size, (sh, sw) stride, (ph, pw) zero
padding added on each side. x is the input, w the weight, b the bias, y the
output, and dy = ∂L/∂y the gradient that arrives from above. Reading x at a row
or column outside [0, H) × [0, W) gives 0, which is the zero padding.

Forward, a cross-correlation as in PyTorch::

    y[n, f, oh, ow] = b[f] + Σ_c Σ_i Σ_j w[f, c, i, j] · x[n, c, oh·sh + i - ph, ow·sw + j - pw]
    OH = (H + 2·ph - KH) // sh + 1
    OW = (W + 2·pw - KW) // sw + 1

Backward::

    db[f]          = Σ_n Σ_oh Σ_ow dy[n, f, oh, ow]
    dw[f, c, i, j] = Σ_n Σ_oh Σ_ow dy[n, f, oh, ow] · x[n, c, oh·sh + i - ph, ow·sw + j - pw]
    dx[n, c, h, w_] = Σ_f Σ_i Σ_j dy[n, f, oh, ow] · w[f, c, i, j]
                      over the (oh, ow) with oh·sh + i - ph = h and ow·sw + j - pw = w_

Each kernel comes twice behind one signature: ``reference_*`` runs the sums
above as nested loops, and the Numba version rewrites them as matrix products
(im2col). Every receptive field becomes one column of a matrix ``cols`` of
shape (C·KH·KW, N·OH·OW)::

    cols[(c·KH + i)·KW + j, (n·OH + oh)·OW + ow] = x[n, c, oh·sh + i - ph, ow·sw + j - pw]

With w2 = w.reshape(F, C·KH·KW) and dy2[f, (n·OH + oh)·OW + ow] = dy[n, f, oh, ow]::

    y2 = w2 @ cols        dw2 = dy2 @ cols.T        dcols = w2.T @ dy2

and col2im adds each entry of dcols back to the input pixel it was read from.
The gathers and scatters run in Numba, in parallel over pieces of the output
that no two threads share; the products run in BLAS.

Arguments common to all kernels: ``stride`` and ``padding`` are pairs of ints
(sh, sw) and (ph, pw); arrays are float32 or float64, all of one dtype, and the
result has that dtype. Callers check shapes and dtypes first
(``tinymbm.functional.conv2d`` does), because the kernels do not.
"""

from types import SimpleNamespace

import numpy as np
from numba import njit, prange


@njit(cache=True)
def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Return the output length (size + 2·padding - kernel) // stride + 1."""
    return (size + 2 * padding - kernel) // stride + 1


# ---------------------------------------------------------------- reference


def reference_conv2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> np.ndarray:
    """Compute y = conv2d(x, w) + b with one loop per index of the formula.

    Args:
        x: (N, C, H, W) input.
        weight: (F, C, KH, KW) filters.
        bias: (F,) bias, or None for no bias.
        stride: (sh, sw).
        padding: (ph, pw) zeros added on each side.

    Returns:
        y of shape (N, F, OH, OW).
    """
    n_batch, channels, height, width = x.shape
    filters, _, kernel_h, kernel_w = weight.shape
    sh, sw = stride
    ph, pw = padding
    out_h = conv_output_size(height, kernel_h, sh, ph)
    out_w = conv_output_size(width, kernel_w, sw, pw)
    y = np.zeros((n_batch, filters, out_h, out_w), dtype=x.dtype)

    for n in range(n_batch):
        for f in range(filters):
            for oh in range(out_h):
                for ow in range(out_w):
                    total = 0.0 if bias is None else bias[f]
                    for c in range(channels):
                        for i in range(kernel_h):
                            for j in range(kernel_w):
                                h = oh * sh + i - ph
                                w_ = ow * sw + j - pw
                                # Outside the image is zero padding, which adds nothing.
                                if 0 <= h < height and 0 <= w_ < width:
                                    total += weight[f, c, i, j] * x[n, c, h, w_]
                    y[n, f, oh, ow] = total
    return y


def reference_conv2d_backward_input(
    grad_output: np.ndarray,
    weight: np.ndarray,
    input_shape: tuple[int, int, int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> np.ndarray:
    """Compute dx by sending every term w · x of the forward sum its share of dy.

    Args:
        grad_output: (N, F, OH, OW) gradient dy.
        weight: (F, C, KH, KW) filters.
        input_shape: (N, C, H, W) of x; it is needed because OH does not fix H
            when the stride does not divide H + 2·ph - KH.
        stride: (sh, sw).
        padding: (ph, pw).

    Returns:
        dx of shape (N, C, H, W).
    """
    n_batch, filters, out_h, out_w = grad_output.shape
    _, channels, kernel_h, kernel_w = weight.shape
    height, width = input_shape[2], input_shape[3]
    sh, sw = stride
    ph, pw = padding
    dx = np.zeros(input_shape, dtype=grad_output.dtype)

    for n in range(n_batch):
        for f in range(filters):
            for oh in range(out_h):
                for ow in range(out_w):
                    for c in range(channels):
                        for i in range(kernel_h):
                            for j in range(kernel_w):
                                h = oh * sh + i - ph
                                w_ = ow * sw + j - pw
                                if 0 <= h < height and 0 <= w_ < width:
                                    dx[n, c, h, w_] += weight[f, c, i, j] * grad_output[n, f, oh, ow]
    return dx


def reference_conv2d_backward_weight(
    grad_output: np.ndarray,
    x: np.ndarray,
    weight_shape: tuple[int, int, int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> np.ndarray:
    """Compute dw[f, c, i, j] = Σ_n Σ_oh Σ_ow dy[n, f, oh, ow] · x[n, c, oh·sh + i - ph, ow·sw + j - pw].

    Args:
        grad_output: (N, F, OH, OW) gradient dy.
        x: (N, C, H, W) input of the forward pass.
        weight_shape: (F, C, KH, KW).
        stride: (sh, sw).
        padding: (ph, pw).

    Returns:
        dw of shape (F, C, KH, KW).
    """
    n_batch, _, out_h, out_w = grad_output.shape
    _, _, height, width = x.shape
    filters, channels, kernel_h, kernel_w = weight_shape
    sh, sw = stride
    ph, pw = padding
    dw = np.zeros(weight_shape, dtype=grad_output.dtype)

    for f in range(filters):
        for c in range(channels):
            for i in range(kernel_h):
                for j in range(kernel_w):
                    total = 0.0
                    for n in range(n_batch):
                        for oh in range(out_h):
                            for ow in range(out_w):
                                h = oh * sh + i - ph
                                w_ = ow * sw + j - pw
                                if 0 <= h < height and 0 <= w_ < width:
                                    total += grad_output[n, f, oh, ow] * x[n, c, h, w_]
                    dw[f, c, i, j] = total
    return dw


def reference_conv2d_backward_bias(grad_output: np.ndarray) -> np.ndarray:
    """Compute db[f] = Σ_n Σ_oh Σ_ow dy[n, f, oh, ow] for dy of shape (N, F, OH, OW)."""
    n_batch, filters, out_h, out_w = grad_output.shape
    db = np.zeros(filters, dtype=grad_output.dtype)

    for f in range(filters):
        total = 0.0
        for n in range(n_batch):
            for oh in range(out_h):
                for ow in range(out_w):
                    total += grad_output[n, f, oh, ow]
        db[f] = total
    return db


# -------------------------------------------------------------------- numba


@njit(cache=True)
def _valid_outputs(offset: int, stride: int, padding: int, size: int, out_size: int) -> tuple[int, int]:
    """Return the range [lo, hi) of output indices o whose input o·stride + offset - padding lies in [0, size)."""
    # -((a) // s) is ceil(-a / s) for integers, with Python's floor division.
    lo = max(0, -((offset - padding) // stride))
    hi = min(out_size, (size - 1 - offset + padding) // stride + 1)
    return lo, max(lo, hi)


@njit(cache=True, parallel=True)
def im2col(
    x: np.ndarray, kernel_size: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> np.ndarray:
    """Gather every receptive field of x (N, C, H, W) into a column of cols (C·KH·KW, N·OH·OW).

    cols[(c·KH + i)·KW + j, (n·OH + oh)·OW + ow] = x[n, c, oh·sh + i - ph, ow·sw + j - pw],
    and 0 where that position falls in the padding.
    """
    n_batch, channels, height, width = x.shape
    kernel_h, kernel_w = kernel_size
    sh, sw = stride
    ph, pw = padding
    out_h = conv_output_size(height, kernel_h, sh, ph)
    out_w = conv_output_size(width, kernel_w, sw, pw)
    plane = out_h * out_w
    rows = channels * kernel_h * kernel_w
    cols = np.empty((rows, n_batch * plane), dtype=x.dtype)

    # One task fills one row segment cols[row, n·OH·OW : (n+1)·OH·OW], so no two
    # threads write the same element.
    for task in prange(rows * n_batch):
        row = task // n_batch
        n = task % n_batch
        c = row // (kernel_h * kernel_w)
        i = (row // kernel_w) % kernel_h
        j = row % kernel_w
        ow_lo, ow_hi = _valid_outputs(j, sw, pw, width, out_w)

        for oh in range(out_h):
            h = oh * sh + i - ph
            start = n * plane + oh * out_w
            if h < 0 or h >= height:
                for ow in range(out_w):
                    cols[row, start + ow] = 0
                continue
            for ow in range(ow_lo):
                cols[row, start + ow] = 0
            for ow in range(ow_lo, ow_hi):
                cols[row, start + ow] = x[n, c, h, ow * sw + j - pw]
            for ow in range(ow_hi, out_w):
                cols[row, start + ow] = 0
    return cols


@njit(cache=True, parallel=True)
def col2im(
    dcols: np.ndarray,
    input_shape: tuple[int, int, int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> np.ndarray:
    """Add every entry of dcols (C·KH·KW, N·OH·OW) to the pixel of dx (N, C, H, W) that im2col read it from.

    Entries that im2col read from the padding are dropped.
    """
    n_batch, channels, height, width = input_shape
    kernel_h, kernel_w = kernel_size
    sh, sw = stride
    ph, pw = padding
    out_h = conv_output_size(height, kernel_h, sh, ph)
    out_w = conv_output_size(width, kernel_w, sw, pw)
    plane = out_h * out_w
    dx = np.zeros(input_shape, dtype=dcols.dtype)

    # One task owns one image plane dx[n, c]: overlapping receptive fields add
    # into the same pixels, so splitting a plane between threads would race.
    for task in prange(n_batch * channels):
        n = task // channels
        c = task % channels
        for i in range(kernel_h):
            for j in range(kernel_w):
                row = (c * kernel_h + i) * kernel_w + j
                ow_lo, ow_hi = _valid_outputs(j, sw, pw, width, out_w)
                for oh in range(out_h):
                    h = oh * sh + i - ph
                    if h < 0 or h >= height:
                        continue
                    start = n * plane + oh * out_w
                    for ow in range(ow_lo, ow_hi):
                        dx[n, c, h, ow * sw + j - pw] += dcols[row, start + ow]
    return dx


@njit(cache=True, parallel=True)
def _nchw_from_rows(y2: np.ndarray, bias: np.ndarray, n_batch: int, out_h: int, out_w: int) -> np.ndarray:
    """Return y (N, F, OH, OW) with y[n, f, oh, ow] = y2[f, (n·OH + oh)·OW + ow] + bias[f]."""
    filters = y2.shape[0]
    plane = out_h * out_w
    y = np.empty((n_batch, filters, out_h, out_w), dtype=y2.dtype)

    for task in prange(n_batch * filters):
        n = task // filters
        f = task % filters
        for oh in range(out_h):
            for ow in range(out_w):
                y[n, f, oh, ow] = y2[f, n * plane + oh * out_w + ow] + bias[f]
    return y


@njit(cache=True, parallel=True)
def _rows_from_nchw(grad_output: np.ndarray) -> np.ndarray:
    """Return dy2 (F, N·OH·OW) with dy2[f, (n·OH + oh)·OW + ow] = grad_output[n, f, oh, ow]."""
    n_batch, filters, out_h, out_w = grad_output.shape
    plane = out_h * out_w
    dy2 = np.empty((filters, n_batch * plane), dtype=grad_output.dtype)

    for task in prange(n_batch * filters):
        n = task // filters
        f = task % filters
        for oh in range(out_h):
            for ow in range(out_w):
                dy2[f, n * plane + oh * out_w + ow] = grad_output[n, f, oh, ow]
    return dy2


@njit(cache=True)
def conv2d_forward(x, weight, bias, stride, padding):
    """Compute y = conv2d(x, w) + b as y2 = w2 @ im2col(x); same signature as the reference."""
    n_batch, _, height, width = x.shape
    filters, channels, kernel_h, kernel_w = weight.shape
    out_h = conv_output_size(height, kernel_h, stride[0], padding[0])
    out_w = conv_output_size(width, kernel_w, stride[1], padding[1])

    cols = im2col(x, (kernel_h, kernel_w), stride, padding)
    w2 = np.ascontiguousarray(weight).reshape(filters, channels * kernel_h * kernel_w)
    y2 = np.dot(w2, cols)

    if bias is None:
        b = np.zeros(filters, dtype=x.dtype)
    else:
        b = bias
    return _nchw_from_rows(y2, b, n_batch, out_h, out_w)


@njit(cache=True)
def conv2d_backward_input(grad_output, weight, input_shape, stride, padding):
    """Compute dx = col2im(w2.T @ dy2); same signature as the reference."""
    filters, channels, kernel_h, kernel_w = weight.shape

    dy2 = _rows_from_nchw(grad_output)
    w2 = np.ascontiguousarray(weight).reshape(filters, channels * kernel_h * kernel_w)
    dcols = np.dot(w2.T, dy2)

    return col2im(dcols, input_shape, (kernel_h, kernel_w), stride, padding)


@njit(cache=True)
def conv2d_backward_weight(grad_output, x, weight_shape, stride, padding):
    """Compute dw2 = dy2 @ im2col(x).T; same signature as the reference.

    One BLAS product does the whole sum over n, oh and ow, so the result does
    not depend on how threads were scheduled: repeated calls give identical bits.
    """
    filters, channels, kernel_h, kernel_w = weight_shape

    cols = im2col(x, (kernel_h, kernel_w), stride, padding)
    dy2 = _rows_from_nchw(grad_output)
    dw2 = np.dot(dy2, cols.T)

    return dw2.reshape((filters, channels, kernel_h, kernel_w))


@njit(cache=True, parallel=True)
def conv2d_backward_bias(grad_output):
    """Compute db[f] = Σ_n Σ_oh Σ_ow dy[n, f, oh, ow]; same signature as the reference.

    Each filter's sum runs in one thread, in a fixed order, in float64.
    """
    n_batch, filters, out_h, out_w = grad_output.shape
    db = np.empty(filters, dtype=grad_output.dtype)

    for f in prange(filters):
        total = 0.0
        for n in range(n_batch):
            for oh in range(out_h):
                for ow in range(out_w):
                    total += grad_output[n, f, oh, ow]
        db[f] = total
    return db


# ------------------------------------------------------------ backend choice

BACKENDS = {
    "numba": SimpleNamespace(
        forward=conv2d_forward,
        backward_input=conv2d_backward_input,
        backward_weight=conv2d_backward_weight,
        backward_bias=conv2d_backward_bias,
    ),
    "reference": SimpleNamespace(
        forward=reference_conv2d_forward,
        backward_input=reference_conv2d_backward_input,
        backward_weight=reference_conv2d_backward_weight,
        backward_bias=reference_conv2d_backward_bias,
    ),
}

# The backend that tinymbm.functional.conv2d runs. Tests and lessons set it to
# "reference" to run the loop versions through the same autograd op.
backend = "numba"


def select(name: str | None = None) -> SimpleNamespace:
    """Return the kernels of backend ``name`` ("numba" or "reference"; default: the module's ``backend``).

    The result has the attributes forward, backward_input, backward_weight and backward_bias.
    """
    chosen = backend if name is None else name
    if chosen not in BACKENDS:
        raise ValueError(f"unknown conv kernel backend {chosen!r}; expected one of {sorted(BACKENDS)}")
    return BACKENDS[chosen]
