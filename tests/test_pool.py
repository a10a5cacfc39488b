"""Max-pooling: the pool kernels, the F.max_pool2d op and the nn.MaxPool2d layer."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinymbm as tm
import tinymbm.functional as F
from tinymbm import nn
from tinymbm.autograd import gradcheck
from tinymbm.errors import DTypeError, ShapeError
from tinymbm.kernels import pool as K

FEW = settings(max_examples=25, deadline=None)
RTOL = {np.float64: 1e-12, np.float32: 1e-5}
NAN = float("nan")


def run_both(x, kernel, stride, padding, dy_rng):
    """Run both backends; return {name: (numba result, reference result)}."""
    y, indices = K.max_pool2d_forward(x, kernel, stride, padding)
    y_ref, indices_ref = K.reference_max_pool2d_forward(x, kernel, stride, padding)
    dy = dy_rng.standard_normal(y.shape).astype(x.dtype)
    return {
        "y": (y, y_ref),
        "indices": (indices, indices_ref),
        "dx": (
            K.max_pool2d_backward(dy, indices, x.shape),
            K.reference_max_pool2d_backward(dy, indices_ref, x.shape),
        ),
    }


def pool_grad(x, kernel_size, stride=None, padding=0, dy=None):
    """Return (y, dx) of F.max_pool2d on the array x, with upstream gradient dy (ones by default)."""
    xt = tm.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
    y = F.max_pool2d(xt, kernel_size, stride, padding)
    y.backward(tm.tensor(np.ones(y.shape) if dy is None else np.asarray(dy, dtype=np.float64)))
    return y.data, xt.grad


# ------------------------------------------------------------------ kernels

# Windows 1, 2 and 3 with stride 1, 2 and 3 and every padding PyTorch allows
# (at most half the window), on a 7×9 input. Windows of 3 at stride 1 or 2
# overlap, and strides 2 and 3 leave rows or columns that no window reaches.
GRID = [
    (batch, kernel, stride, padding)
    for (kernel, stride, padding), batch in zip(
        [(k, s, p) for k, s, p in itertools.product((1, 2, 3), (1, 2, 3), (0, 1)) if 2 * p <= k],
        itertools.cycle((1, 3)),
    )
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("batch, kernel, stride, padding", GRID)
def test_kernels_match_reference(rng, dtype, batch, kernel, stride, padding):
    # Small integers make ties common, so the first-maximum rule is exercised.
    x = rng.integers(-3, 4, (batch, 2, 7, 9)).astype(dtype)
    results = run_both(x, (kernel, kernel), (stride, stride), (padding, padding), rng)
    for name, (fast, slow) in results.items():
        label = f"{name} dtype={dtype.__name__} batch={batch} kernel={kernel} stride={stride} padding={padding}"
        assert fast.dtype == slow.dtype, label
        assert fast.shape == slow.shape, label
        np.testing.assert_allclose(fast, slow, rtol=RTOL[dtype], atol=0, err_msg=label)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@FEW
@given(
    batch=st.integers(1, 3),
    channels=st.integers(1, 3),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    pad_fraction=st.tuples(st.booleans(), st.booleans()),
    extra=st.tuples(st.integers(0, 5), st.integers(0, 5)),
    nan_count=st.integers(0, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_kernels_random_shapes(dtype, batch, channels, kernel, stride, pad_fraction, extra, nan_count, seed):
    padding = tuple(k // 2 if use else 0 for k, use in zip(kernel, pad_fraction))
    size = (kernel[0] + extra[0], kernel[1] + extra[1])
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, (batch, channels, *size)).astype(dtype)
    x.flat[rng.integers(0, x.size, nan_count)] = NAN
    label = f"dtype={dtype.__name__} x={x.shape} kernel={kernel} stride={stride} padding={padding} seed={seed}"

    results = run_both(x, kernel, stride, padding, rng)
    for name, (fast, slow) in results.items():
        np.testing.assert_allclose(fast, slow, rtol=RTOL[dtype], atol=0, err_msg=f"{name} {label}")


def test_select_unknown_backend():
    with pytest.raises(ValueError, match="unknown max-pool kernel backend 'fast'"):
        K.select("fast")


# ------------------------------------------------------------ PyTorch's rules

BACKENDS = ["numba", "reference"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_tie_grad_to_first_max(monkeypatch, backend):
    monkeypatch.setattr(K, "backend", backend)
    y, dx = pool_grad(np.full((1, 1, 2, 2), 7.0), 2)
    assert y.ravel().tolist() == [7.0]
    assert dx[0, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_overlapping_windows_accumulate(monkeypatch, backend):
    monkeypatch.setattr(K, "backend", backend)
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 5.0
    # The four 2×2 windows at stride 1 all contain the centre, so it wins all four.
    _, dx = pool_grad(x, 2, stride=1, dy=[[[[1.0, 2.0], [3.0, 4.0]]]])
    expected = np.zeros((3, 3))
    expected[1, 1] = 10.0
    assert dx[0, 0].tolist() == expected.tolist()


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_wins_first(monkeypatch, backend):
    monkeypatch.setattr(K, "backend", backend)
    x = np.array([[[[1.0, NAN], [5.0, NAN]]]])
    y, dx = pool_grad(x, 2)
    _, indices = K.select(backend).forward(x, (2, 2), (2, 2), (0, 0))
    assert np.isnan(y).all()
    assert indices.ravel().tolist() == [1]
    assert dx[0, 0].tolist() == [[0.0, 1.0], [0.0, 0.0]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_after_max_wins(monkeypatch, backend):
    monkeypatch.setattr(K, "backend", backend)
    _, indices = K.select(backend).forward(np.array([[[[9.0, 1.0, NAN]]]]), (1, 3), (1, 3), (0, 0))
    assert indices.ravel().tolist() == [2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_padding_never_wins(monkeypatch, backend):
    monkeypatch.setattr(K, "backend", backend)
    x = -np.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    y, dx = pool_grad(x, 2, stride=2, padding=1)
    # The windows cover rows {-1, 0}, {1, 2}, {3, 4}: padding (row or column
    # -1 or 4) would give 0, but the largest real value of each window wins.
    expected = [[-1.0, -2.0, -4.0], [-5.0, -6.0, -8.0], [-13.0, -14.0, -16.0]]
    assert y[0, 0].tolist() == expected
    assert dx.sum() == 9.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_minus_inf_window(monkeypatch, backend):
    monkeypatch.setattr(K, "backend", backend)
    x = np.full((1, 1, 2, 2), -np.inf)
    y, indices = K.select(backend).forward(x, (2, 2), (1, 1), (1, 1))
    # A window of -inf values still picks a real position, the first one inside.
    assert np.isneginf(y).all()
    assert indices[0, 0].tolist() == [[0, 0, 1], [0, 0, 1], [2, 2, 3]]


# ---------------------------------------------------------------- F.max_pool2d

GRADCHECK_CASES = [
    # (x shape, kernel_size, stride, padding)
    ((2, 3, 6, 5), 2, None, 0),
    ((2, 2, 7, 7), 3, 1, 1),
    ((1, 2, 7, 8), (3, 2), (2, 3), (1, 1)),
]


@pytest.mark.parametrize("x_shape, kernel_size, stride, padding", GRADCHECK_CASES)
def test_max_pool2d_gradcheck(rng, x_shape, kernel_size, stride, padding):
    x = tm.tensor(rng.standard_normal(x_shape), requires_grad=True, dtype="float64")

    def pool(x):
        return F.max_pool2d(x, kernel_size, stride, padding)

    assert gradcheck(pool, [x])


def test_max_pool2d_float32_stays_float32(rng):
    x = tm.tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32), requires_grad=True)
    y = F.max_pool2d(x, 2)
    y.sum().backward()
    assert y.dtype == np.float32
    assert x.grad.dtype == np.float32


def test_max_pool2d_output_shape(rng):
    cases = [
        # (x shape, kernel_size, stride, padding, expected output shape)
        ((64, 64, 28, 28), 2, None, 0, (64, 64, 14, 14)),
        ((2, 3, 7, 9), 2, None, 0, (2, 3, 3, 4)),
        ((2, 3, 7, 9), 3, 2, 1, (2, 3, 4, 5)),
        ((1, 1, 5, 6), (2, 3), (1, 2), (1, 0), (1, 1, 6, 2)),
    ]
    for x_shape, kernel_size, stride, padding, expected in cases:
        x = tm.tensor(rng.standard_normal(x_shape).astype(np.float32))
        assert F.max_pool2d(x, kernel_size, stride, padding).shape == expected, (x_shape, kernel_size, stride)


def test_max_pool2d_reference_backend_agrees(rng, monkeypatch):
    x = tm.tensor(rng.standard_normal((2, 2, 7, 6)), requires_grad=True, dtype="float64")
    results = {}
    for backend in BACKENDS:
        monkeypatch.setattr(K, "backend", backend)
        x.grad = None
        y = F.max_pool2d(x, 3, 2, 1)
        y.sum().backward()
        results[backend] = (y.data, x.grad)
    assert np.array_equal(results["numba"][0], results["reference"][0])
    assert np.array_equal(results["numba"][1], results["reference"][1])


BAD_POOL = [
    # (case, input shape, dtype, kernel_size, stride, padding, exception, message pattern)
    ("input 3-D", (3, 8, 8), np.float32, 2, None, 0, ShapeError, r"expected a 4-D input .* shape \(3, 8, 8\)"),
    ("int input", (1, 1, 4, 4), np.int64, 2, None, 0, DTypeError, r"input must be a floating tensor .* int64"),
    ("kernel 0", (1, 1, 4, 4), np.float32, 0, None, 0, ValueError, r"kernel_size must be positive, got 0"),
    ("stride 0", (1, 1, 4, 4), np.float32, 2, 0, 0, ValueError, r"stride must be positive, got 0"),
    ("stride negative", (1, 1, 4, 4), np.float32, 2, (1, -1), 0, ValueError, r"stride must be positive"),
    ("padding negative", (1, 1, 4, 4), np.float32, 2, None, -1, ValueError, r"padding must be non-negative, got -1"),
    (
        "padding over half",
        (1, 1, 8, 8),
        np.float32,
        3,
        None,
        2,
        ValueError,
        r"padding \(2, 2\) must be at most half of kernel_size \(3, 3\)",
    ),
    (
        "window too large",
        (1, 1, 3, 3),
        np.float32,
        6,
        None,
        1,
        ShapeError,
        r"kernel_size \(6, 6\) is larger than the padded input \(5, 5\)",
    ),
    ("kernel float", (1, 1, 4, 4), np.float32, 2.0, None, 0, TypeError, r"kernel_size must be an int or a pair"),
]


@pytest.mark.parametrize(
    "case, shape, dtype, kernel_size, stride, padding, error, pattern", BAD_POOL, ids=[c[0] for c in BAD_POOL]
)
def test_max_pool2d_rejects(case, shape, dtype, kernel_size, stride, padding, error, pattern):
    x = tm.tensor(np.ones(shape, dtype=dtype))
    with pytest.raises(error, match=pattern):
        F.max_pool2d(x, kernel_size, stride, padding)


# --------------------------------------------------------------- nn.MaxPool2d


def test_layer_has_no_parameters():
    assert list(nn.MaxPool2d(2).parameters()) == []


def test_layer_stride_defaults_to_kernel():
    layer = nn.MaxPool2d(3)
    assert layer.stride == 3
    assert layer(tm.randn(1, 2, 9, 7)).shape == (1, 2, 3, 2)


def test_layer_repr():
    cases = [
        (nn.MaxPool2d(2), "MaxPool2d(kernel_size=2, stride=2, padding=0)"),
        (nn.MaxPool2d((3, 2), stride=1, padding=1), "MaxPool2d(kernel_size=(3, 2), stride=1, padding=1)"),
    ]
    for layer, expected in cases:
        assert repr(layer) == expected


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"kernel_size": 0}, r"MaxPool2d: kernel_size must be positive, got 0"),
        ({"kernel_size": 2, "stride": 0}, r"MaxPool2d: stride must be positive, got 0"),
        ({"kernel_size": 2, "padding": 2}, r"MaxPool2d: padding 2 must be at most half of kernel_size 2"),
    ],
)
def test_layer_rejects(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        nn.MaxPool2d(**kwargs)


# ------------------------------------------------------------------ PyTorch


@pytest.mark.parametrize("kernel_size, stride, padding", [(2, None, 0), (3, 1, 1), ((3, 2), (2, 1), (1, 0))])
def test_max_pool2d_matches_torch(rng, kernel_size, stride, padding):
    torch = pytest.importorskip("torch")
    # Small integers give ties, which both libraries must break the same way.
    x = rng.integers(-3, 4, (2, 3, 7, 6)).astype(np.float64)
    y, dx = pool_grad(x, kernel_size, stride, padding)

    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, kernel_size, stride, padding)
    yt.backward(torch.ones_like(yt))

    assert np.array_equal(y, yt.detach().numpy())
    assert np.array_equal(dx, xt.grad.numpy())
