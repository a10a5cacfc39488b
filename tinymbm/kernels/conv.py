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
The gathers and scatters run in Numba and the products in BLAS. The comment
above the Numba section explains how the batch is split into one share per
thread and each share into groups.

Arguments common to all kernels: ``stride`` and ``padding`` are pairs of ints
(sh, sw) and (ph, pw); arrays are float32 or float64, all of one dtype, and the
result has that dtype. Callers check shapes and dtypes first
(``tinymbm.functional.conv2d`` does), because the kernels do not.
"""

import functools
import operator
from types import SimpleNamespace

import numpy as np
from numba import njit

from tinymbm.kernels.shares import group_ranges, run_shares


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
    # BEGIN EXERCISE conv_forward: implement the module docstring's forward sum, one loop per index, skipping the padding
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
    # END EXERCISE conv_forward


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
        input_shape: (N, C, H, W) of x. OH alone does not fix H when the
            stride does not divide H + 2·ph - KH.
        stride: (sh, sw).
        padding: (ph, pw).

    Returns:
        dx of shape (N, C, H, W).
    """
    # BEGIN EXERCISE conv_backward: implement dx by adding w[f, c, i, j] · dy[n, f, oh, ow] to the x position each term read
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
    # END EXERCISE conv_backward


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
    # BEGIN EXERCISE conv_backward: implement dw with one loop per index of the sum above
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
    # END EXERCISE conv_backward


def reference_conv2d_backward_bias(grad_output: np.ndarray) -> np.ndarray:
    """Compute db[f] = Σ_n Σ_oh Σ_ow dy[n, f, oh, ow] for dy of shape (N, F, OH, OW)."""
    # BEGIN EXERCISE conv_backward: implement db as the sum above, in the dtype of grad_output
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
    # END EXERCISE conv_backward


# -------------------------------------------------------------------- numba
#
# The Numba versions split the batch into shares, one per thread, and run the
# shares at the same time with BLAS held to one thread. So every thread
# multiplies the matrices it gathered itself. tinymbm.kernels.shares explains
# why, and when a kernel runs in one share instead. Each thread works through
# its share in groups of samples. It copies every sample into a zero-bordered
# buffer xp of shape (C, H + 2·ph, W + 2·pw) and gathers its receptive fields
# into cols (im2col). Then one BLAS product takes the whole group. Padding
# first means the gather loops need no bounds checks.
#
# A group's largest matrix (cols, or the product's F-row output) takes at most
# _GROUP_BYTES unless one sample alone is larger. So it can stay in a per-core
# cache of 1 MB or more between being written and being read again.
# Measured on the 2-core build machine (1 MB of L2 per core), budgets from
# 0.5 to 4 MB gave the same speed within noise.

_GROUP_BYTES = 1024 * 1024


@njit(cache=True, nogil=True)
def _group_size(n_batch: int, rows: int, plane: int, itemsize: int) -> int:
    """Return how many samples go into one product: as many as fit rows × plane values in _GROUP_BYTES, at least 1."""
    per_sample = max(rows * plane * itemsize, 1)
    largest = max(1, min(n_batch, _GROUP_BYTES // per_sample))
    if n_batch <= largest:
        return largest

    # Spread the samples evenly over the groups that are needed anyway, so the
    # last product is not a narrow leftover (32 samples: 4 groups of 8, not 3 of 10 and 1 of 2).
    n_groups = (n_batch + largest - 1) // largest
    return (n_batch + n_groups - 1) // n_groups


@njit(cache=True, nogil=True)
def _pad_sample(x, n, padding, xp):
    """Copy x[n] (C, H, W) into the interior of xp (C, H + 2·ph, W + 2·pw); the border of xp stays 0."""
    _, channels, height, width = x.shape
    ph, pw = padding
    for c in range(channels):
        for h in range(height):
            for w in range(width):
                xp[c, h + ph, w + pw] = x[n, c, h, w]


@njit(cache=True, nogil=True)
def _im2col_sample(xp, kernel_size, stride, out_h, out_w, cols, col0):
    """Fill cols[(c·KH + i)·KW + j, col0 + oh·OW + ow] = xp[c, oh·sh + i, ow·sw + j] for one padded sample."""
    channels = xp.shape[0]
    kernel_h, kernel_w = kernel_size
    sh, sw = stride
    for c in range(channels):
        for i in range(kernel_h):
            for j in range(kernel_w):
                row = (c * kernel_h + i) * kernel_w + j
                for oh in range(out_h):
                    start = col0 + oh * out_w
                    h = oh * sh + i
                    # The same copy, written out for stride 1: with consecutive
                    # loads it ran about 25% faster on the build machine.
                    if sw == 1:
                        for ow in range(out_w):
                            cols[row, start + ow] = xp[c, h, ow + j]
                    else:
                        for ow in range(out_w):
                            cols[row, start + ow] = xp[c, h, ow * sw + j]


@njit(cache=True, nogil=True)
def _col2im_sample(dcols, col0, kernel_size, stride, out_h, out_w, dxp):
    """Add dcols[(c·KH + i)·KW + j, col0 + oh·OW + ow] to dxp[c, oh·sh + i, ow·sw + j]: the reverse of im2col."""
    channels = dxp.shape[0]
    kernel_h, kernel_w = kernel_size
    sh, sw = stride
    for c in range(channels):
        for i in range(kernel_h):
            for j in range(kernel_w):
                row = (c * kernel_h + i) * kernel_w + j
                for oh in range(out_h):
                    start = col0 + oh * out_w
                    h = oh * sh + i
                    if sw == 1:
                        for ow in range(out_w):
                            dxp[c, h, ow + j] += dcols[row, start + ow]
                    else:
                        for ow in range(out_w):
                            dxp[c, h, ow * sw + j] += dcols[row, start + ow]


@njit(cache=True, nogil=True)
def _im2col_group(x, n0, n1, kernel_size, stride, padding, out_h, out_w, xp):
    """Return cols (C·KH·KW, (n1 - n0)·OH·OW) for samples n0 .. n1-1, using xp as the padding buffer."""
    channels = x.shape[1]
    plane = out_h * out_w
    cols = np.empty((channels * kernel_size[0] * kernel_size[1], (n1 - n0) * plane), dtype=x.dtype)
    for n in range(n0, n1):
        _pad_sample(x, n, padding, xp)
        _im2col_sample(xp, kernel_size, stride, out_h, out_w, cols, (n - n0) * plane)
    return cols


@njit(cache=True, nogil=True)
def _dy_group(grad_output, n0, n1):
    """Return dy2 (F, (n1 - n0)·OH·OW) with dy2[f, (n - n0)·OH·OW + oh·OW + ow] = grad_output[n, f, oh, ow]."""
    _, filters, out_h, out_w = grad_output.shape
    plane = out_h * out_w
    dy2 = np.empty((filters, (n1 - n0) * plane), dtype=grad_output.dtype)
    for n in range(n0, n1):
        for f in range(filters):
            for oh in range(out_h):
                for ow in range(out_w):
                    dy2[f, (n - n0) * plane + oh * out_w + ow] = grad_output[n, f, oh, ow]
    return dy2


@njit(cache=True)
def im2col(x, kernel_size, stride, padding):
    """Return cols (C·KH·KW, N·OH·OW) of the whole batch, the matrix the module docstring defines.

    The kernels below build it one group of samples at a time; this function
    builds all of it at once, for lessons and tests.
    """
    n_batch, channels, height, width = x.shape
    out_h = conv_output_size(height, kernel_size[0], stride[0], padding[0])
    out_w = conv_output_size(width, kernel_size[1], stride[1], padding[1])
    xp = np.zeros((channels, height + 2 * padding[0], width + 2 * padding[1]), dtype=x.dtype)
    return _im2col_group(x, 0, n_batch, kernel_size, stride, padding, out_h, out_w, xp)


@njit(cache=True, nogil=True)
def _store_group(y2, bias, n0, n1, y):
    """Write y[n, f, p] = y2[f, (n - n0)·OH·OW + p] + b[f] for samples n0 .. n1-1."""
    filters = y.shape[1]
    plane = y.shape[2]
    for n in range(n0, n1):
        for f in range(filters):
            for p in range(plane):
                y[n, f, p] = y2[f, (n - n0) * plane + p] + bias[f]


@njit(cache=True, nogil=True)
def _col2im_group(dcols, n0, n1, kernel_size, stride, padding, out_h, out_w, dxp, dx):
    """Scatter dcols of samples n0 .. n1-1 back into dx, dropping what lands on the padding."""
    _, channels, height, width = dx.shape
    ph, pw = padding
    plane = out_h * out_w
    for n in range(n0, n1):
        dxp[:] = 0
        _col2im_sample(dcols, (n - n0) * plane, kernel_size, stride, out_h, out_w, dxp)
        # Gradient that lands on the zero border belongs to no input pixel.
        for c in range(channels):
            for h in range(height):
                for w in range(width):
                    dx[n, c, h, w] = dxp[c, h + ph, w + pw]


@njit(cache=True, nogil=True)
def _bias_share(grad_output, n0, n1):
    """Return Σ_n Σ_oh Σ_ow dy[n, f, oh, ow] over samples n0 .. n1-1, per f, in float64 and in a fixed order."""
    _, filters, out_h, out_w = grad_output.shape
    total = np.zeros(filters, dtype=np.float64)
    for n in range(n0, n1):
        for f in range(filters):
            for oh in range(out_h):
                for ow in range(out_w):
                    total[f] += grad_output[n, f, oh, ow]
    return total


# The kernels below are plain Python: they split the work into shares and
# groups, the gathers and scatters are compiled, and each matrix product runs
# in NumPy's BLAS. Calling BLAS from inside Numba would load SciPy's separate
# OpenBLAS, whose idle threads then spin against NumPy's for the same cores.


def conv2d_forward(x, weight, bias, stride, padding):
    """Compute y = conv2d(x, w) + b as y2 = w2 @ cols, group by group; same signature as the reference."""
    n_batch, channels, height, width = x.shape
    filters, _, kernel_h, kernel_w = weight.shape
    kernel_size = (kernel_h, kernel_w)
    out_h = conv_output_size(height, kernel_h, stride[0], padding[0])
    out_w = conv_output_size(width, kernel_w, stride[1], padding[1])
    plane = out_h * out_w
    rows = channels * kernel_h * kernel_w
    w2 = np.ascontiguousarray(weight).reshape(filters, rows)
    b = np.zeros(filters, dtype=x.dtype) if bias is None else bias
    y = np.empty((n_batch, filters, plane), dtype=x.dtype)

    def share(n0: int, n1: int) -> None:
        xp = np.zeros((channels, height + 2 * padding[0], width + 2 * padding[1]), dtype=x.dtype)
        group = _group_size(n1 - n0, max(rows, filters), plane, x.itemsize)
        for g0, g1 in group_ranges(n0, n1, group):
            cols = _im2col_group(x, g0, g1, kernel_size, stride, padding, out_h, out_w, xp)

            y2 = w2 @ cols

            _store_group(y2, b, g0, g1, y)

    run_shares(share, n_batch)
    return y.reshape((n_batch, filters, out_h, out_w))


def conv2d_backward_input(grad_output, weight, input_shape, stride, padding):
    """Compute dx = col2im(w2.T @ dy2), group by group; same signature as the reference."""
    n_batch, channels, height, width = input_shape
    filters, _, kernel_h, kernel_w = weight.shape
    kernel_size = (kernel_h, kernel_w)
    _, _, out_h, out_w = grad_output.shape
    plane = out_h * out_w
    rows = channels * kernel_h * kernel_w
    w2 = np.ascontiguousarray(weight).reshape(filters, rows)
    dx = np.empty(tuple(input_shape), dtype=grad_output.dtype)

    def share(n0: int, n1: int) -> None:
        dxp = np.empty((channels, height + 2 * padding[0], width + 2 * padding[1]), dtype=grad_output.dtype)
        group = _group_size(n1 - n0, max(rows, filters), plane, grad_output.itemsize)
        for g0, g1 in group_ranges(n0, n1, group):
            dy2 = _dy_group(grad_output, g0, g1)

            dcols = w2.T @ dy2

            _col2im_group(dcols, g0, g1, kernel_size, stride, padding, out_h, out_w, dxp, dx)

    run_shares(share, n_batch)
    return dx


def conv2d_backward_weight(grad_output, x, weight_shape, stride, padding):
    """Compute dw2 = Σ over groups of dy2 @ cols.T; same signature as the reference.

    Each share adds its groups in order and the shares' sums are added in
    order, so repeated calls on the same arrays that split the batch the same
    way give bit-identical results. The split follows
    tinymbm.kernels.shares.share_count, except that a call runs in one share
    while another thread controls BLAS's thread count.
    """
    n_batch, channels, height, width = x.shape
    filters, _, kernel_h, kernel_w = weight_shape
    kernel_size = (kernel_h, kernel_w)
    _, _, out_h, out_w = grad_output.shape
    plane = out_h * out_w
    rows = channels * kernel_h * kernel_w

    def share(n0: int, n1: int) -> np.ndarray:
        xp = np.zeros((channels, height + 2 * padding[0], width + 2 * padding[1]), dtype=x.dtype)
        dw2 = np.zeros((filters, rows), dtype=grad_output.dtype)
        group = _group_size(n1 - n0, max(rows, filters), plane, x.itemsize)
        for g0, g1 in group_ranges(n0, n1, group):
            cols = _im2col_group(x, g0, g1, kernel_size, stride, padding, out_h, out_w, xp)
            dy2 = _dy_group(grad_output, g0, g1)

            dw2 += dy2 @ cols.T
        return dw2

    dw2 = functools.reduce(operator.add, run_shares(share, n_batch))
    return dw2.reshape((filters, channels, kernel_h, kernel_w))


def conv2d_backward_bias(grad_output):
    """Compute db[f] = Σ_n Σ_oh Σ_ow dy[n, f, oh, ow]; same signature as the reference.

    Each share sums in float64 and in a fixed order, the shares' sums are
    added in order, and the total rounds to the dtype of dy.
    """
    partial_sums = run_shares(lambda n0, n1: _bias_share(grad_output, n0, n1), grad_output.shape[0])
    return functools.reduce(operator.add, partial_sums).astype(grad_output.dtype)


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
