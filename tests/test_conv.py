"""Convolution: the conv kernels, the F.conv2d op and the nn.Conv2d layer."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinymbm as tm
import tinymbm.functional as F
from tinymbm import nn
from tinymbm.autograd import gradcheck
from tinymbm.errors import DTypeError, ShapeError
from tinymbm.kernels import conv as K
from tinymbm.kernels import shares

FEW = settings(max_examples=25, deadline=None)
RTOL = {np.float64: 1e-12, np.float32: 1e-5}


def assert_close(actual, expected, rtol, label=""):
    """Check |actual - expected| <= rtol · max(1, max|expected|) elementwise.

    The tolerance scales with the largest magnitude of the array, because a
    sum of products can cancel to a value far smaller than its terms.
    """
    expected = np.asarray(expected)
    scale = max(float(np.max(np.abs(expected))), 1.0) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=label)


def random_problem(rng, batch, channels, filters, size, kernel, dtype):
    """Return random x, weight and bias for one convolution."""
    height, width = size
    x = rng.standard_normal((batch, channels, height, width)).astype(dtype)
    weight = rng.standard_normal((filters, channels, *kernel)).astype(dtype)
    bias = rng.standard_normal(filters).astype(dtype)
    return x, weight, bias


def run_both(x, weight, bias, stride, padding, dy_rng):
    """Run every kernel of both backends; return {name: (numba result, reference result)}."""
    y = K.conv2d_forward(x, weight, bias, stride, padding)
    dy = dy_rng.standard_normal(y.shape).astype(x.dtype)
    return {
        "forward": (y, K.reference_conv2d_forward(x, weight, bias, stride, padding)),
        "forward_no_bias": (
            K.conv2d_forward(x, weight, None, stride, padding),
            K.reference_conv2d_forward(x, weight, None, stride, padding),
        ),
        "backward_input": (
            K.conv2d_backward_input(dy, weight, x.shape, stride, padding),
            K.reference_conv2d_backward_input(dy, weight, x.shape, stride, padding),
        ),
        "backward_weight": (
            K.conv2d_backward_weight(dy, x, weight.shape, stride, padding),
            K.reference_conv2d_backward_weight(dy, x, weight.shape, stride, padding),
        ),
        "backward_bias": (K.conv2d_backward_bias(dy), K.reference_conv2d_backward_bias(dy)),
    }


# ------------------------------------------------------------------ kernels

# Kernel 1, 3 and 5 with stride 1, 2 and 3 and padding 0, 1 and 2 on a 7×9
# input: strides 2 and 3 leave rows and columns over that no window reaches.
GRID = [
    (batch, kernel, stride, padding)
    for (kernel, stride, padding), batch in zip(
        itertools.product((1, 3, 5), (1, 2, 3), (0, 1, 2)), itertools.cycle((1, 3))
    )
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("batch, kernel, stride, padding", GRID)
def test_kernels_match_reference(rng, dtype, batch, kernel, stride, padding):
    x, weight, bias = random_problem(rng, batch, 2, 3, (7, 9), (kernel, kernel), dtype)
    results = run_both(x, weight, bias, (stride, stride), (padding, padding), rng)
    for name, (fast, slow) in results.items():
        label = f"{name} dtype={dtype.__name__} batch={batch} kernel={kernel} stride={stride} padding={padding}"
        assert fast.dtype == dtype, label
        assert fast.shape == slow.shape, label
        assert_close(fast, slow, RTOL[dtype], label)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@FEW
@given(
    batch=st.integers(1, 4),
    channels=st.integers(1, 3),
    filters=st.integers(1, 4),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    extra=st.tuples(st.integers(0, 5), st.integers(0, 5)),
    seed=st.integers(0, 2**32 - 1),
)
def test_kernels_random_shapes(dtype, batch, channels, filters, kernel, stride, padding, extra, seed):
    # The input is at least as large as the kernel, and up to 5 larger.
    size = (kernel[0] + extra[0], kernel[1] + extra[1])
    rng = np.random.default_rng(seed)
    x, weight, bias = random_problem(rng, batch, channels, filters, size, kernel, dtype)
    results = run_both(x, weight, bias, stride, padding, rng)
    for name, (fast, slow) in results.items():
        label = (
            f"{name} dtype={dtype.__name__} x={x.shape} weight={weight.shape} "
            f"stride={stride} padding={padding} seed={seed}"
        )
        assert_close(fast, slow, RTOL[dtype], label)


def test_kernel_output_size_formula():
    cases = [((28, 3, 1, 1), 28), ((14, 3, 1, 1), 14), ((7, 3, 2, 0), 3), ((8, 3, 3, 0), 2), ((9, 3, 2, 1), 5), ((5, 5, 1, 0), 1)]
    for (size, kernel, stride, padding), expected in cases:
        assert K.conv_output_size(size, kernel, stride, padding) == expected, (size, kernel, stride, padding)


def test_kernels_split_batch_into_groups(rng):
    # One float64 sample of 9 × 150·150 im2col values takes 1.6 MB, more than
    # a group may take, so every product covers one sample and dw adds up
    # several products. The loop reference would take minutes here, so NumPy's sliding
    # windows give the expected values.
    x, weight, bias = random_problem(rng, 5, 1, 2, (150, 150), (3, 3), np.float64)
    dy = rng.standard_normal((5, 2, 150, 150))
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3), axis=(2, 3))

    expected_y = np.einsum("nchwij,fcij->nfhw", windows, weight) + bias[:, None, None]
    expected_dw = np.einsum("nfhw,nchwij->fcij", dy, windows)
    expected_dxp = np.zeros((5, 1, 152, 152))
    for i in range(3):
        for j in range(3):
            expected_dxp[:, :, i:i + 150, j:j + 150] += np.einsum("nfhw,fc->nchw", dy, weight[:, :, i, j])

    assert_close(K.conv2d_forward(x, weight, bias, (1, 1), (1, 1)), expected_y, 1e-12, "y")
    assert_close(K.conv2d_backward_input(dy, weight, x.shape, (1, 1), (1, 1)), expected_dxp[:, :, 1:-1, 1:-1], 1e-12, "dx")
    assert_close(K.conv2d_backward_weight(dy, x, weight.shape, (1, 1), (1, 1)), expected_dw, 1e-12, "dw")
    assert_close(K.conv2d_backward_bias(dy), dy.sum(axis=(0, 2, 3)), 1e-12, "db")


def test_group_size_balanced():
    cases = [
        # (batch, rows, plane, itemsize, expected samples per group)
        # 2 samples of conv2's 576 × 196 float32 columns fit in 1 MB.
        (64, 576, 196, 4, 2),
        (3, 576, 196, 4, 2),
        # 5 samples of 64 × 784 fit: 13 groups, spread as evenly as 5 per group allows.
        (64, 64, 784, 4, 5),
        (12, 64, 784, 4, 4),
        # One sample larger than the budget still makes a group.
        (5, 9, 22500, 8, 1),
        (0, 576, 196, 4, 1),
    ]
    for n_batch, rows, plane, itemsize, expected in cases:
        assert K._group_size(n_batch, rows, plane, itemsize) == expected, (n_batch, rows, plane, itemsize)


def test_im2col_product_is_forward(rng):
    x, weight, bias = random_problem(rng, 3, 2, 4, (7, 6), (3, 2), np.float64)
    stride, padding = (2, 1), (1, 1)
    cols = K.im2col(x, (3, 2), stride, padding)
    y2 = weight.reshape(4, -1) @ cols + bias[:, None]

    y = K.reference_conv2d_forward(x, weight, bias, stride, padding)
    n_batch, filters, out_h, out_w = y.shape
    assert cols.shape == (2 * 3 * 2, n_batch * out_h * out_w)
    assert_close(y2.reshape(filters, n_batch, out_h, out_w).transpose(1, 0, 2, 3), y, 1e-12)


@pytest.mark.parametrize(
    "batch, channels, filters, size, dtype",
    [
        (16, 8, 16, (14, 14), np.float32),
        # Large enough that the batch is split into groups whose sums are added.
        (5, 1, 2, (150, 150), np.float64),
    ],
)
def test_weight_grad_bit_identical(rng, batch, channels, filters, size, dtype):
    x, weight, _ = random_problem(rng, batch, channels, filters, size, (3, 3), dtype)
    dy = rng.standard_normal((batch, filters, *size)).astype(dtype)
    first = K.conv2d_backward_weight(dy, x, weight.shape, (1, 1), (1, 1))
    for run in range(3):
        again = K.conv2d_backward_weight(dy, x, weight.shape, (1, 1), (1, 1))
        assert np.array_equal(first, again), f"run {run} differs"


def test_bias_grad_bit_identical(rng):
    dy = rng.standard_normal((16, 16, 14, 14)).astype(np.float32)
    first = K.conv2d_backward_bias(dy)
    for run in range(3):
        assert np.array_equal(first, K.conv2d_backward_bias(dy)), f"run {run} differs"


# ------------------------------------------------------------- shares of the batch


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_kernels_agree_for_any_share_count(monkeypatch, rng, threads):
    # Three shares on a 2-core machine still run, just not all at once.
    monkeypatch.setattr(shares, "share_count", lambda n_batch: max(1, min(threads, n_batch)))
    x, weight, bias = random_problem(rng, 7, 3, 5, (9, 8), (3, 3), np.float64)
    dy = rng.standard_normal((7, 5, 5, 4))
    stride, padding = (2, 2), (1, 1)

    fast = {
        "y": K.conv2d_forward(x, weight, bias, stride, padding),
        "dx": K.conv2d_backward_input(dy, weight, x.shape, stride, padding),
        "dw": K.conv2d_backward_weight(dy, x, weight.shape, stride, padding),
        "db": K.conv2d_backward_bias(dy),
    }
    slow = {
        "y": K.reference_conv2d_forward(x, weight, bias, stride, padding),
        "dx": K.reference_conv2d_backward_input(dy, weight, x.shape, stride, padding),
        "dw": K.reference_conv2d_backward_weight(dy, x, weight.shape, stride, padding),
        "db": K.reference_conv2d_backward_bias(dy),
    }
    for name, value in fast.items():
        assert_close(value, slow[name], 1e-12, f"{name} with {threads} shares")


def test_weight_grad_bit_identical_in_shares(monkeypatch, rng):
    monkeypatch.setattr(shares, "share_count", lambda n_batch: min(2, n_batch))
    x, weight, _ = random_problem(rng, 16, 8, 16, (14, 14), (3, 3), np.float32)
    dy = rng.standard_normal((16, 16, 14, 14)).astype(np.float32)
    first = K.conv2d_backward_weight(dy, x, weight.shape, (1, 1), (1, 1))
    first_bias = K.conv2d_backward_bias(dy)
    for run in range(3):
        assert np.array_equal(first, K.conv2d_backward_weight(dy, x, weight.shape, (1, 1), (1, 1))), f"run {run}"
        assert np.array_equal(first_bias, K.conv2d_backward_bias(dy)), f"run {run}"


def test_select_unknown_backend():
    with pytest.raises(ValueError, match="unknown conv kernel backend 'cuda'"):
        K.select("cuda")


# ------------------------------------------------------------------- F.conv2d

GRADCHECK_CASES = [
    # (x shape, weight shape, stride, padding)
    ((2, 3, 6, 5), (4, 3, 3, 3), 1, 0),
    ((2, 3, 6, 5), (4, 3, 3, 2), (2, 1), 1),
    ((1, 2, 7, 7), (3, 2, 5, 5), 3, 2),
    ((3, 1, 5, 4), (2, 1, 1, 1), 2, (0, 1)),
]


@pytest.mark.parametrize("x_shape, w_shape, stride, padding", GRADCHECK_CASES)
def test_conv2d_gradcheck(rng, x_shape, w_shape, stride, padding):
    x = tm.tensor(rng.standard_normal(x_shape), requires_grad=True, dtype="float64")
    weight = tm.tensor(rng.standard_normal(w_shape), requires_grad=True, dtype="float64")
    bias = tm.tensor(rng.standard_normal(w_shape[0]), requires_grad=True, dtype="float64")

    def conv(x, weight, bias):
        return F.conv2d(x, weight, bias, stride=stride, padding=padding)

    assert gradcheck(conv, [x, weight, bias])


def test_conv2d_reference_backend_agrees(rng, monkeypatch):
    x = tm.tensor(rng.standard_normal((2, 2, 6, 7)), requires_grad=True, dtype="float64")
    weight = tm.tensor(rng.standard_normal((3, 2, 3, 3)), requires_grad=True, dtype="float64")
    bias = tm.tensor(rng.standard_normal(3), requires_grad=True, dtype="float64")
    dy = rng.standard_normal((2, 3, 3, 4))

    results = {}
    for backend in ("numba", "reference"):
        monkeypatch.setattr(K, "backend", backend)
        for t in (x, weight, bias):
            t.grad = None
        y = F.conv2d(x, weight, bias, stride=2, padding=1)
        y.backward(tm.tensor(dy))
        results[backend] = (y.data, x.grad, weight.grad, bias.grad)

    for name, fast, slow in zip(("y", "dx", "dweight", "dbias"), results["numba"], results["reference"]):
        assert_close(fast, slow, 1e-12, name)


def test_conv2d_float32_stays_float32(rng):
    x = tm.tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32), requires_grad=True)
    weight = tm.tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), requires_grad=True)
    bias = tm.tensor(rng.standard_normal(4).astype(np.float32), requires_grad=True)

    y = F.conv2d(x, weight, bias, padding=1)
    y.sum().backward()

    assert y.dtype == np.float32
    assert x.grad.dtype == np.float32
    assert weight.grad.dtype == np.float32
    assert bias.grad.dtype == np.float32


def test_conv2d_mixed_dtypes_give_float64(rng):
    x = tm.tensor(rng.standard_normal((1, 2, 5, 5)).astype(np.float32))
    weight = tm.tensor(rng.standard_normal((3, 2, 3, 3)))
    assert F.conv2d(x, weight).dtype == np.float64


def test_conv2d_output_shape(rng):
    cases = [
        # (x shape, weight shape, stride, padding, expected output shape)
        ((64, 1, 28, 28), (64, 1, 3, 3), 1, 1, (64, 64, 28, 28)),
        ((2, 3, 7, 9), (5, 3, 3, 3), 2, 0, (2, 5, 3, 4)),
        ((2, 3, 7, 9), (5, 3, 3, 1), (3, 2), (1, 0), (2, 5, 3, 5)),
        ((1, 1, 4, 4), (1, 1, 5, 5), 1, 1, (1, 1, 2, 2)),
    ]
    for x_shape, w_shape, stride, padding, expected in cases:
        x = tm.tensor(rng.standard_normal(x_shape).astype(np.float32))
        weight = tm.tensor(rng.standard_normal(w_shape).astype(np.float32))
        y = F.conv2d(x, weight, stride=stride, padding=padding)
        assert y.shape == expected, (x_shape, w_shape, stride, padding)


def test_conv2d_without_grad_records_nothing(rng):
    x = tm.tensor(rng.standard_normal((1, 1, 4, 4)))
    weight = tm.tensor(rng.standard_normal((2, 1, 3, 3)))
    y = F.conv2d(x, weight)
    assert y.grad_fn is None


def _conv_args(x_shape=(2, 3, 8, 8), w_shape=(4, 3, 3, 3), dtype=np.float32, bias_shape=(4,)):
    x = tm.tensor(np.ones(x_shape, dtype=dtype))
    weight = tm.tensor(np.ones(w_shape, dtype=dtype))
    bias = None if bias_shape is None else tm.tensor(np.ones(bias_shape, dtype=dtype))
    return x, weight, bias


BAD_CONV = [
    # (case, arguments, keyword arguments, exception, message pattern)
    (
        "channels",
        _conv_args((2, 3, 8, 8), (64, 1, 3, 3), bias_shape=(64,)),
        {},
        ShapeError,
        (
            r"conv2d: input has 3 channels but weight expects 1 \(input shape \(2, 3, 8, 8\), "
            r"weight shape \(64, 1, 3, 3\)\)"
        ),
    ),
    ("input 3-D", _conv_args((3, 8, 8)), {}, ShapeError, r"expected a 4-D input .* got a 3-D input of shape \(3, 8, 8\)"),
    ("weight 3-D", _conv_args(w_shape=(4, 3, 3)), {}, ShapeError, r"weight must be 4-D .* got shape \(4, 3, 3\)"),
    ("bias shape", _conv_args(bias_shape=(5,)), {}, ShapeError, r"bias has shape \(5,\), expected \(4,\)"),
    (
        "kernel too large",
        _conv_args((1, 3, 4, 4), (4, 3, 7, 7)),
        {"padding": 1},
        ShapeError,
        r"kernel size \(7, 7\) is larger than the padded input \(6, 6\)",
    ),
    ("stride 0", _conv_args(), {"stride": 0}, ValueError, r"conv2d: stride must be positive, got 0"),
    ("stride negative", _conv_args(), {"stride": (1, -2)}, ValueError, r"stride must be positive, got \(1, -2\)"),
    ("padding negative", _conv_args(), {"padding": -1}, ValueError, r"padding must be non-negative, got -1"),
    ("stride float", _conv_args(), {"stride": 1.5}, TypeError, r"stride must be an int or a pair of ints, got 1.5"),
    ("padding triple", _conv_args(), {"padding": (1, 1, 1)}, TypeError, r"padding must be an int or a pair"),
    ("int input", _conv_args(dtype=np.int64), {}, DTypeError, r"conv2d: input must be a floating tensor .* int64"),
]


@pytest.mark.parametrize("case, args, kwargs, error, pattern", BAD_CONV, ids=[c[0] for c in BAD_CONV])
def test_conv2d_rejects(case, args, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        F.conv2d(*args, **kwargs)


def test_conv2d_rejects_before_kernel(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a kernel ran before the input check")

    monkeypatch.setattr(K, "select", lambda name=None: fail())
    x, weight, bias = _conv_args((2, 3, 8, 8), (4, 1, 3, 3), bias_shape=(4,))
    with pytest.raises(ShapeError):
        F.conv2d(x, weight, bias)


# ------------------------------------------------------------------ nn.Conv2d


def test_layer_parameter_names_and_shapes():
    layer = nn.Conv2d(3, 8, (3, 5))
    shapes = {name: p.shape for name, p in layer.named_parameters()}
    assert shapes == {"weight": (8, 3, 3, 5), "bias": (8,)}


def test_layer_without_bias():
    layer = nn.Conv2d(3, 8, 3, bias=False)
    assert [name for name, _ in layer.named_parameters()] == ["weight"]
    assert layer.bias is None


def test_layer_init_bounds():
    tm.manual_seed(0)
    layer = nn.Conv2d(16, 32, 3)
    bound = 1 / math.sqrt(16 * 3 * 3)
    for name, p in layer.named_parameters():
        assert np.abs(p.data).max() <= bound, name
        # A uniform draw of hundreds of values comes close to both ends.
        assert np.abs(p.data).max() > 0.9 * bound, name
        assert p.dtype == np.float32, name


def test_layer_forward_shape():
    layer = nn.Conv2d(1, 4, 3, stride=2, padding=1)
    assert layer(tm.randn(2, 1, 9, 8)).shape == (2, 4, 5, 4)


def test_layer_repr():
    cases = [
        (nn.Conv2d(1, 64, 3, padding=1), "Conv2d(1, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))"),
        (nn.Conv2d(3, 4, (3, 5), stride=2, bias=False), "Conv2d(3, 4, kernel_size=(3, 5), stride=(2, 2), bias=False)"),
    ]
    for layer, expected in cases:
        assert repr(layer) == expected


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"in_channels": 0}, r"Conv2d: in_channels must be a positive int, got 0"),
        ({"out_channels": 2.5}, r"Conv2d: out_channels must be a positive int, got 2.5"),
        ({"kernel_size": 0}, r"Conv2d: kernel_size must be positive, got 0"),
        ({"stride": 0}, r"Conv2d: stride must be positive, got 0"),
        ({"padding": -1}, r"Conv2d: padding must be non-negative, got -1"),
    ],
)
def test_layer_rejects(kwargs, pattern):
    arguments = {"in_channels": 1, "out_channels": 2, "kernel_size": 3, **kwargs}
    with pytest.raises(ValueError, match=pattern):
        nn.Conv2d(**arguments)


# ------------------------------------------------------------------ PyTorch


@pytest.mark.parametrize("stride, padding", [(1, 1), ((2, 1), (0, 2))])
def test_conv2d_matches_torch(rng, stride, padding):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 7, 6))
    weight = rng.standard_normal((4, 3, 3, 3))
    bias = rng.standard_normal(4)

    xs = [tm.tensor(a, requires_grad=True, dtype="float64") for a in (x, weight, bias)]
    y = F.conv2d(*xs, stride=stride, padding=padding)
    dy = rng.standard_normal(y.shape)
    y.backward(tm.tensor(dy))

    ts = [torch.tensor(a, requires_grad=True) for a in (x, weight, bias)]
    yt = torch.nn.functional.conv2d(*ts, stride=stride, padding=padding)
    yt.backward(torch.tensor(dy))

    assert_close(y.data, yt.detach().numpy(), 1e-12, "y")
    for name, mine, theirs in zip(("dx", "dweight", "dbias"), xs, ts):
        assert_close(mine.grad, theirs.grad.numpy(), 1e-12, name)
