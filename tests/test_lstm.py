"""LSTM kernels, the LSTMCell and LSTMLayer ops, and the nn.LSTMCell / nn.LSTM modules."""

import os
import pathlib
import subprocess
import sys
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinymbm as tm
import tinymbm.functional as F
from tinymbm import nn
from tinymbm.autograd import gradcheck
from tinymbm.errors import DTypeError, ShapeError
from tinymbm.kernels import lstm as K

FEW = settings(max_examples=25, deadline=None)
RTOL = {np.float64: 1e-12, np.float32: 1e-5}


def assert_close(actual, expected, rtol, label=""):
    """Check |actual - expected| <= rtol · max|expected| elementwise.

    The tolerance is relative to the largest magnitude of the array, because
    c' = f·c + i·g can cancel to a tiny value whose own relative error is
    meaningless at the precision of its terms.
    """
    expected = np.asarray(expected)
    scale = max(float(np.max(np.abs(expected))), 1.0) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=label)


def random_cell_inputs(rng, batch, hidden, dtype, scale=3.0):
    gates = (rng.standard_normal((batch, 4 * hidden)) * scale).astype(dtype)
    c = rng.standard_normal((batch, hidden)).astype(dtype)
    grad_h = rng.standard_normal((batch, hidden)).astype(dtype)
    grad_c = rng.standard_normal((batch, hidden)).astype(dtype)
    return gates, c, grad_h, grad_c


def float64_leaf(rng, *shape):
    return tm.tensor(rng.standard_normal(shape), requires_grad=True, dtype="float64")


# ------------------------------------------------------------------ kernels


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@FEW
@given(batch=st.integers(1, 6), hidden=st.integers(1, 9), scale=st.sampled_from([0.1, 3.0, 30.0]),
       seed=st.integers(0, 2**32 - 1))
def test_kernel_forward_matches_reference(dtype, batch, hidden, scale, seed):
    gates, c, _, _ = random_cell_inputs(np.random.default_rng(seed), batch, hidden, dtype, scale)
    fast = K.lstm_cell_forward(gates, c)
    slow = K.reference_lstm_cell_forward(gates, c)
    for name, a, b in zip(("h_next", "c_next", "activations", "tanh_c_next"), fast, slow):
        label = f"{name} dtype={dtype.__name__} batch={batch} hidden={hidden} scale={scale} seed={seed}"
        assert a.dtype == dtype, label
        assert_close(a, b, RTOL[dtype], label)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@FEW
@given(batch=st.integers(1, 6), hidden=st.integers(1, 9), scale=st.sampled_from([0.1, 3.0, 30.0]),
       seed=st.integers(0, 2**32 - 1))
def test_kernel_backward_matches_reference(dtype, batch, hidden, scale, seed):
    gates, c, grad_h, grad_c = random_cell_inputs(np.random.default_rng(seed), batch, hidden, dtype, scale)
    _, _, activations, tanh_c_next = K.reference_lstm_cell_forward(gates, c)
    fast = K.lstm_cell_backward(grad_h, grad_c, c, activations, tanh_c_next)
    slow = K.reference_lstm_cell_backward(grad_h, grad_c, c, activations, tanh_c_next)
    for name, a, b in zip(("grad_gates", "grad_c"), fast, slow):
        label = f"{name} dtype={dtype.__name__} batch={batch} hidden={hidden} scale={scale} seed={seed}"
        assert a.dtype == dtype, label
        assert_close(a, b, RTOL[dtype], label)


SPECIAL_VALUES = [0.0, -0.0, 1e-30, -1e-30, 1e-9, -1e-9, 0.3, -0.3, 9.0, -9.0, 19.0, -19.0, 40.0, -40.0,
                  100.0, -100.0, 710.0, -710.0, 800.0, -800.0, np.inf, -np.inf]

# (name, helper, float64 reference, dtype, relative tolerance, smallest subnormal of the dtype)
NONLINEARITIES = [
    ("sigmoid_f64", K._sigmoid_f64, K.reference_sigmoid, np.float64, 1e-15, 5e-324),
    ("tanh_f64", K._tanh_f64, np.tanh, np.float64, 1e-15, 5e-324),
    ("sigmoid_f32", K._sigmoid_f32, K.reference_sigmoid, np.float32, 2.5e-7, 1.5e-45),
    ("tanh_f32", K._tanh_f32, np.tanh, np.float32, 2.5e-7, 1.5e-45),
]


@pytest.mark.parametrize("name, helper, reference, dtype, rtol, tiny", NONLINEARITIES,
                         ids=[case[0] for case in NONLINEARITIES])
def test_kernel_nonlinearity_special_values(name, helper, reference, dtype, rtol, tiny):
    for z in SPECIAL_VALUES:
        expected = dtype(reference(np.array([z], dtype=np.float64))[0])
        actual = helper(dtype(z))
        assert actual == pytest.approx(expected, rel=rtol, abs=tiny), f"{name}({z})"
        assert np.signbit(actual) == np.signbit(expected), f"sign of {name}({z})"


@pytest.mark.parametrize("name, helper, reference, dtype, rtol, tiny", NONLINEARITIES,
                         ids=[case[0] for case in NONLINEARITIES])
def test_kernel_nonlinearity_grid(name, helper, reference, dtype, rtol, tiny):
    z = np.linspace(-30.0, 30.0, 20_001).astype(dtype)
    actual = np.array([helper(v) for v in z])
    expected = reference(z.astype(np.float64))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=tiny, err_msg=name)


@pytest.mark.parametrize("name, helper, reference, dtype, rtol, tiny", NONLINEARITIES,
                         ids=[case[0] for case in NONLINEARITIES])
def test_kernel_nonlinearity_nan(name, helper, reference, dtype, rtol, tiny):
    assert np.isnan(helper(dtype(np.nan))), name


# (name, helper, NumPy function, dtype, lowest x, relative tolerance); the grids
# stop where the result leaves the normal range of the dtype.
EXP_HELPERS = [
    ("exp_f64", K._exp_nonpositive_f64, np.exp, np.float64, -708.0, 4e-16),
    ("expm1_f64", K._expm1_nonpositive_f64, np.expm1, np.float64, -60.0, 4e-16),
    ("exp_f32", K._exp_nonpositive_f32, np.exp, np.float32, -87.0, 2.5e-7),
    ("expm1_f32", K._expm1_nonpositive_f32, np.expm1, np.float32, -30.0, 2.5e-7),
]


@pytest.mark.parametrize("name, helper, function, dtype, lowest, rtol", EXP_HELPERS,
                         ids=[case[0] for case in EXP_HELPERS])
def test_kernel_exp_accuracy_grid(name, helper, function, dtype, lowest, rtol):
    x = np.concatenate([np.linspace(lowest, 0.0, 2_001), -np.logspace(-30, 0, 301)]).astype(dtype)
    actual = np.array([helper(v) for v in x])
    np.testing.assert_allclose(actual, function(x.astype(np.float64)), rtol=rtol, atol=0, err_msg=name)


@pytest.mark.parametrize("dtype, helper, tiny", [(np.float64, K._exp_nonpositive_f64, 5e-324),
                                                 (np.float32, K._exp_nonpositive_f32, 1.5e-45)],
                         ids=["f64", "f32"])
def test_kernel_exp_subnormal_range(dtype, helper, tiny):
    x = np.array([-709.0, -720.0, -740.0, -745.0, -746.0, -1e4] if dtype == np.float64
                 else [-88.0, -90.0, -100.0, -103.0, -104.0, -1e4], dtype=dtype)
    actual = np.array([helper(v) for v in x])
    expected = np.exp(x.astype(np.float64)).astype(dtype)
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=tiny)


def test_kernels_run_without_jit():
    # NUMBA_DISABLE_JIT=1 runs the Numba kernels as plain Python, for a debugger.
    script = (
        "import numpy as np\n"
        "from tinymbm.kernels import lstm as K\n"
        "rng = np.random.default_rng(0)\n"
        "for dtype in (np.float64, np.float32):\n"
        "    gates = (3 * rng.standard_normal((2, 12))).astype(dtype)\n"
        "    c = rng.standard_normal((2, 3)).astype(dtype)\n"
        "    for a, b in zip(K.lstm_cell_forward(gates, c), K.reference_lstm_cell_forward(gates, c)):\n"
        "        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)\n"
        "print('ok')\n"
    )
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    root = pathlib.Path(__file__).resolve().parents[1]
    completed = subprocess.run([sys.executable, "-c", script], env=env, cwd=root,
                               capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "ok"


def test_kernel_saturated_gates_finite():
    gates = np.array([[1e4, -1e4, 1e4, -1e4], [-1e4, 1e4, -1e4, 1e4]])
    c = np.array([[1e3], [-1e3]])
    for result in K.lstm_cell_forward(gates, c):
        assert np.all(np.isfinite(result)), result


def test_reference_saturated_gates_no_warning():
    gates = np.array([[1e4, -1e4, 1e4, -1e4], [-1e4, 1e4, -1e4, 1e4]], dtype=np.float32)
    c = np.array([[1e3], [-1e3]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        K.reference_lstm_cell_forward(gates, c)


def test_kernel_select_unknown_backend():
    with pytest.raises(ValueError, match="unknown LSTM kernel backend 'cuda'"):
        K.select("cuda")


# ------------------------------------------------------------ lstm_cell op


@pytest.mark.parametrize("output_index", [0, 1], ids=["h_next", "c_next"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_cell_gradcheck(rng, output_index, bias):
    batch, input_size, hidden = 3, 4, 5
    x = float64_leaf(rng, batch, input_size)
    h, c = float64_leaf(rng, batch, hidden), float64_leaf(rng, batch, hidden)
    weights = [float64_leaf(rng, 4 * hidden, input_size), float64_leaf(rng, 4 * hidden, hidden)]
    biases = [float64_leaf(rng, 4 * hidden), float64_leaf(rng, 4 * hidden)] if bias else []

    def cell(x, h, c, *params):
        return F.lstm_cell(x, (h, c), *params)[output_index]

    assert gradcheck(cell, (x, h, c, *weights, *biases))


def test_cell_gradcheck_unbatched(rng):
    input_size, hidden = 3, 4
    x, h, c = float64_leaf(rng, input_size), float64_leaf(rng, hidden), float64_leaf(rng, hidden)
    weights = [float64_leaf(rng, 4 * hidden, input_size), float64_leaf(rng, 4 * hidden, hidden),
               float64_leaf(rng, 4 * hidden), float64_leaf(rng, 4 * hidden)]

    def cell(x, h, c, *params):
        h_next, c_next = F.lstm_cell(x, (h, c), *params)
        return tm.cat([h_next, c_next])

    assert gradcheck(cell, (x, h, c, *weights))


def test_cell_unbatched_matches_batch_of_one(rng):
    cell = nn.LSTMCell(3, 4).double()
    x = rng.standard_normal(3)
    h_single, c_single = cell(tm.tensor(x))
    h_batch, c_batch = cell(tm.tensor(x[None, :]))
    assert h_single.shape == (4,)
    np.testing.assert_array_equal(h_single.numpy(), h_batch.numpy()[0])
    np.testing.assert_array_equal(c_single.numpy(), c_batch.numpy()[0])


def test_cell_matches_equations(rng):
    cell = nn.LSTMCell(3, 2).double()
    x, h, c = rng.standard_normal((4, 3)), rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    h_next, c_next = cell(tm.tensor(x), (tm.tensor(h), tm.tensor(c)))

    def sigmoid(z):
        return 1 / (1 + np.exp(-z))

    p = {name: value.data for name, value in cell.named_parameters()}
    gates = x @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"]
    i, f = sigmoid(gates[:, 0:2]), sigmoid(gates[:, 2:4])
    g, o = np.tanh(gates[:, 4:6]), sigmoid(gates[:, 6:8])
    expected_c = f * c + i * g
    np.testing.assert_allclose(c_next.numpy(), expected_c, rtol=1e-13)
    np.testing.assert_allclose(h_next.numpy(), o * np.tanh(expected_c), rtol=1e-13)


def test_cell_missing_state_is_zeros(rng):
    cell = nn.LSTMCell(3, 4)
    x = tm.tensor(rng.standard_normal((2, 3)).astype(np.float32))
    zeros = tm.zeros(2, 4)
    h_default, c_default = cell(x)
    h_zero, c_zero = cell(x, (zeros, zeros))
    np.testing.assert_array_equal(h_default.numpy(), h_zero.numpy())
    np.testing.assert_array_equal(c_default.numpy(), c_zero.numpy())


def test_cell_float32_stays_float32(rng):
    cell = nn.LSTMCell(3, 4)
    x = tm.tensor(rng.standard_normal((2, 3)).astype(np.float32), requires_grad=True)
    h_next, c_next = cell(x)
    (h_next.sum() + c_next.sum()).backward()
    assert h_next.dtype == np.float32
    assert c_next.dtype == np.float32
    assert x.grad.dtype == np.float32
    assert cell.weight_hh.grad.dtype == np.float32


def test_cell_mixed_dtypes_promote(rng):
    cell = nn.LSTMCell(3, 4)
    x = tm.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    h_next, _ = cell(x)
    h_next.sum().backward()
    assert h_next.dtype == np.float64
    assert x.grad.dtype == np.float64
    assert cell.weight_ih.grad.dtype == np.float32


# ------------------------------------------------------------------- nn.LSTM


def lstm_with(module, names, tensors):
    """Replace the parameters of ``module`` by ``tensors``, the copies that gradcheck perturbs."""
    module._parameters.update(zip(names, tensors))


@pytest.mark.parametrize("batch_first", [False, True], ids=["time_first", "batch_first"])
def test_lstm_gradcheck_two_layers(rng, batch_first):
    steps, batch, input_size, hidden = 3, 2, 3, 4
    lstm = nn.LSTM(input_size, hidden, num_layers=2, batch_first=batch_first)
    names = [name for name, _ in lstm.named_parameters()]
    params = [float64_leaf(rng, *p.shape) for p in lstm.parameters()]
    x = float64_leaf(rng, *((batch, steps, input_size) if batch_first else (steps, batch, input_size)))
    h0, c0 = float64_leaf(rng, 2, batch, hidden), float64_leaf(rng, 2, batch, hidden)

    def run(x, h0, c0, *tensors):
        lstm_with(lstm, names, tensors)
        output, (h_n, c_n) = lstm(x, (h0, c0))
        return tm.cat([output.flatten(), h_n.flatten(), c_n.flatten()])

    assert gradcheck(run, (x, h0, c0, *params))


def test_lstm_gradcheck_no_bias(rng):
    lstm = nn.LSTM(2, 3, num_layers=2, bias=False)
    names = [name for name, _ in lstm.named_parameters()]
    params = [float64_leaf(rng, *p.shape) for p in lstm.parameters()]
    x = float64_leaf(rng, 4, 2, 2)

    def run(x, *tensors):
        lstm_with(lstm, names, tensors)
        return lstm(x)[0]

    assert gradcheck(run, (x, *params))


@pytest.mark.parametrize("batch_first", [False, True], ids=["time_first", "batch_first"])
def test_lstm_unbatched_matches_batch_of_one(rng, batch_first):
    lstm = nn.LSTM(3, 4, num_layers=2, batch_first=batch_first).double()
    x = rng.standard_normal((5, 3))
    h0, c0 = rng.standard_normal((2, 4)), rng.standard_normal((2, 4))

    output, (h_n, c_n) = lstm(tm.tensor(x), (tm.tensor(h0), tm.tensor(c0)))
    batched_x = x[None] if batch_first else x[:, None]
    batched, (batched_h, batched_c) = lstm(tm.tensor(batched_x), (tm.tensor(h0[:, None]), tm.tensor(c0[:, None])))

    assert output.shape == (5, 4)
    assert h_n.shape == (2, 4)
    assert c_n.shape == (2, 4)
    expected_output = batched.numpy()[0] if batch_first else batched.numpy()[:, 0]
    np.testing.assert_array_equal(output.numpy(), expected_output)
    np.testing.assert_array_equal(h_n.numpy(), batched_h.numpy()[:, 0])
    np.testing.assert_array_equal(c_n.numpy(), batched_c.numpy()[:, 0])


def test_lstm_unbatched_missing_state_is_zeros(rng):
    lstm = nn.LSTM(3, 4).double()
    x = tm.tensor(rng.standard_normal((2, 3)))
    output, (h_n, _) = lstm(x)
    zero_output, (zero_h, _) = lstm(x, (tm.zeros(1, 4).double(), tm.zeros(1, 4).double()))
    np.testing.assert_array_equal(output.numpy(), zero_output.numpy())
    np.testing.assert_array_equal(h_n.numpy(), zero_h.numpy())


def test_lstm_unbatched_gradcheck(rng):
    lstm = nn.LSTM(2, 3, num_layers=2)
    names = [name for name, _ in lstm.named_parameters()]
    params = [float64_leaf(rng, *p.shape) for p in lstm.parameters()]
    x, h0, c0 = float64_leaf(rng, 4, 2), float64_leaf(rng, 2, 3), float64_leaf(rng, 2, 3)

    def run(x, h0, c0, *tensors):
        lstm_with(lstm, names, tensors)
        output, (h_n, c_n) = lstm(x, (h0, c0))
        return tm.cat([output.flatten(), h_n.flatten(), c_n.flatten()])

    assert gradcheck(run, (x, h0, c0, *params))


def test_lstm_length_one_matches_cell(rng):
    lstm = nn.LSTM(3, 4).double()
    cell = nn.LSTMCell(3, 4).double()
    cell.load_state_dict({name[:-3]: value for name, value in lstm.state_dict().items()})
    x = rng.standard_normal((1, 2, 3))
    h0, c0 = rng.standard_normal((1, 2, 4)), rng.standard_normal((1, 2, 4))
    output, (h_n, c_n) = lstm(tm.tensor(x), (tm.tensor(h0), tm.tensor(c0)))
    h_cell, c_cell = cell(tm.tensor(x[0]), (tm.tensor(h0[0]), tm.tensor(c0[0])))
    assert output.shape == (1, 2, 4)
    np.testing.assert_allclose(output.numpy()[0], h_cell.numpy(), rtol=1e-14)
    np.testing.assert_allclose(h_n.numpy()[0], h_cell.numpy(), rtol=1e-14)
    np.testing.assert_allclose(c_n.numpy()[0], c_cell.numpy(), rtol=1e-14)


def test_lstm_length_one_gradcheck(rng):
    lstm = nn.LSTM(2, 3, num_layers=2)
    names = [name for name, _ in lstm.named_parameters()]
    params = [float64_leaf(rng, *p.shape) for p in lstm.parameters()]
    x = float64_leaf(rng, 1, 2, 2)

    def run(x, *tensors):
        lstm_with(lstm, names, tensors)
        output, (_, c_n) = lstm(x)
        return tm.cat([output.flatten(), c_n.flatten()])

    assert gradcheck(run, (x, *params))


def unrolled_cells(x, h, c, weights):
    """The same layer as lstm_layer, as T separate lstm_cell ops in the graph."""
    outputs = []
    for t in range(x.shape[0]):
        h, c = F.lstm_cell(x[t], (h, c), *weights)
        outputs.append(h)
    return tm.stack(outputs), h, c


def test_lstm_long_sequence_matches_unrolled_cells(rng):
    steps, batch, input_size, hidden = 1000, 2, 2, 3
    weights = [float64_leaf(rng, 4 * hidden, input_size), float64_leaf(rng, 4 * hidden, hidden),
               float64_leaf(rng, 4 * hidden), float64_leaf(rng, 4 * hidden)]
    x = float64_leaf(rng, steps, batch, input_size)
    h0, c0 = float64_leaf(rng, batch, hidden), float64_leaf(rng, batch, hidden)
    upstream = rng.standard_normal((steps, batch, hidden))

    output, (_, c_n) = F.lstm_layer(x, (h0, c0), *weights)
    ((output * tm.tensor(upstream)).sum() + c_n.sum()).backward()
    layer_grads = [t.grad.copy() for t in (x, h0, c0, *weights)]
    for t in (x, h0, c0, *weights):
        t.grad = None

    output_cells, _, c_cells = unrolled_cells(x, h0, c0, weights)
    ((output_cells * tm.tensor(upstream)).sum() + c_cells.sum()).backward()

    np.testing.assert_allclose(output.numpy(), output_cells.numpy(), rtol=1e-12, atol=1e-12)
    for name, grad, t in zip(("x", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"),
                             layer_grads, (x, h0, c0, *weights)):
        assert np.all(np.isfinite(grad)), name
        np.testing.assert_allclose(grad, t.grad, rtol=1e-10, atol=1e-10, err_msg=name)


def test_lstm_long_sequence_saturated_no_overflow(rng):
    lstm = nn.LSTM(2, 3, num_layers=2)
    x = tm.tensor((rng.standard_normal((1000, 2, 2)) * 1e3).astype(np.float32), requires_grad=True)
    output, (_, c_n) = lstm(x)
    (output.sum() + c_n.sum()).backward()
    assert np.all(np.isfinite(output.numpy()))
    assert np.all(np.isfinite(c_n.numpy()))
    assert np.all(np.isfinite(x.grad))
    for name, p in lstm.named_parameters():
        assert np.all(np.isfinite(p.grad)), name


def test_lstm_batch_first_is_transpose(rng):
    time_first = nn.LSTM(3, 4, num_layers=2).double()
    batch_first = nn.LSTM(3, 4, num_layers=2, batch_first=True).double()
    batch_first.load_state_dict(time_first.state_dict())
    x = rng.standard_normal((5, 2, 3))
    h0, c0 = rng.standard_normal((2, 2, 4)), rng.standard_normal((2, 2, 4))

    out_t, (h_t, c_t) = time_first(tm.tensor(x), (tm.tensor(h0), tm.tensor(c0)))
    out_b, (h_b, c_b) = batch_first(tm.tensor(x.transpose(1, 0, 2)), (tm.tensor(h0), tm.tensor(c0)))

    assert out_b.shape == (2, 5, 4)
    assert h_b.shape == (2, 2, 4)
    np.testing.assert_array_equal(out_b.numpy(), out_t.numpy().transpose(1, 0, 2))
    np.testing.assert_array_equal(h_b.numpy(), h_t.numpy())
    np.testing.assert_array_equal(c_b.numpy(), c_t.numpy())


def test_lstm_batch_first_gradients_match(rng):
    time_first = nn.LSTM(3, 4, num_layers=2).double()
    batch_first = nn.LSTM(3, 4, num_layers=2, batch_first=True).double()
    batch_first.load_state_dict(time_first.state_dict())
    x = rng.standard_normal((5, 2, 3))
    x_t = tm.tensor(x, requires_grad=True)
    x_b = tm.tensor(x.transpose(1, 0, 2), requires_grad=True)

    time_first(x_t)[0].sum().backward()
    batch_first(x_b)[0].sum().backward()

    np.testing.assert_allclose(x_b.grad, x_t.grad.transpose(1, 0, 2), rtol=1e-13)
    for (name, p_t), p_b in zip(time_first.named_parameters(), batch_first.parameters()):
        np.testing.assert_allclose(p_b.grad, p_t.grad, rtol=1e-13, err_msg=name)


def test_lstm_missing_state_is_zeros(rng):
    lstm = nn.LSTM(3, 4, num_layers=2)
    x = tm.tensor(rng.standard_normal((5, 2, 3)).astype(np.float32))
    zeros = tm.zeros(2, 2, 4)
    out_default, (h_default, _) = lstm(x)
    out_zero, (h_zero, _) = lstm(x, (zeros, zeros))
    np.testing.assert_array_equal(out_default.numpy(), out_zero.numpy())
    np.testing.assert_array_equal(h_default.numpy(), h_zero.numpy())


def test_lstm_reference_backend_matches_numba(rng, monkeypatch):
    lstm = nn.LSTM(3, 4, num_layers=2).double()
    x = rng.standard_normal((6, 2, 3))

    def run():
        x_tensor = tm.tensor(x, requires_grad=True)
        output, (_, c_n) = lstm(x_tensor)
        (output.sum() + c_n.sum()).backward()
        grads = [x_tensor.grad] + [p.grad.copy() for p in lstm.parameters()]
        lstm.zero_grad()
        return output.numpy(), grads

    out_numba, grads_numba = run()
    monkeypatch.setattr(K, "backend", "reference")
    out_reference, grads_reference = run()

    assert_close(out_numba, out_reference, 1e-12, "output")
    for index, (a, b) in enumerate(zip(grads_numba, grads_reference)):
        assert_close(a, b, 1e-12, f"gradient {index}")


def test_lstm_output_is_last_layer_states(rng):
    lstm = nn.LSTM(3, 4, num_layers=2).double()
    output, (h_n, _) = lstm(tm.tensor(rng.standard_normal((5, 2, 3))))
    np.testing.assert_array_equal(output.numpy()[-1], h_n.numpy()[1])


def test_lstm_output_cannot_corrupt_backward(rng):
    x = tm.tensor(rng.standard_normal((4, 2, 3)), requires_grad=True)
    lstm = nn.LSTM(3, 4).double()
    output, _ = lstm(x)
    output_grad = rng.standard_normal(output.shape)
    output.backward(output_grad, retain_graph=True)
    expected = x.grad.copy()
    x.grad = None
    output.data[...] = 0.0
    output.backward(output_grad)
    np.testing.assert_array_equal(x.grad, expected)


# ------------------------------------------------------------ parameters


def test_cell_parameter_names_and_shapes():
    cell = nn.LSTMCell(10, 20)
    shapes = {name: p.shape for name, p in cell.named_parameters()}
    assert shapes == {"weight_ih": (80, 10), "weight_hh": (80, 20), "bias_ih": (80,), "bias_hh": (80,)}


def test_cell_without_bias_has_no_bias():
    cell = nn.LSTMCell(10, 20, bias=False)
    assert [name for name, _ in cell.named_parameters()] == ["weight_ih", "weight_hh"]
    assert cell.bias_ih is None


def test_lstm_parameter_names_and_shapes():
    lstm = nn.LSTM(10, 20, num_layers=2)
    shapes = {name: p.shape for name, p in lstm.named_parameters()}
    assert list(shapes) == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                            "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1"]
    assert shapes["weight_ih_l0"] == (80, 10)
    assert shapes["weight_ih_l1"] == (80, 20)
    assert shapes["weight_hh_l1"] == (80, 20)
    assert shapes["bias_hh_l1"] == (80,)


def test_lstm_without_bias_has_weights_only():
    lstm = nn.LSTM(10, 20, num_layers=2, bias=False)
    assert [name for name, _ in lstm.named_parameters()] == [
        "weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1"]


@pytest.mark.parametrize("module", [nn.LSTMCell(7, 16), nn.LSTM(7, 16, num_layers=3)], ids=["cell", "lstm"])
def test_init_bounds(module):
    bound = 1 / np.sqrt(16)
    for name, p in module.named_parameters():
        assert p.dtype == np.float32, name
        assert np.all(np.abs(p.data) <= bound), name
        # A uniform sample of 64+ values reaches past 60% of the bound on both sides.
        assert p.data.max() > 0.6 * bound, name
        assert p.data.min() < -0.6 * bound, name


def test_init_follows_manual_seed():
    tm.manual_seed(3)
    first = nn.LSTM(4, 5).weight_hh_l0.numpy().copy()
    tm.manual_seed(3)
    second = nn.LSTM(4, 5).weight_hh_l0.numpy()
    np.testing.assert_array_equal(first, second)


def test_repr():
    assert repr(nn.LSTM(28, 128, num_layers=2, batch_first=True)) == \
        "LSTM(28, 128, num_layers=2, batch_first=True)"
    assert repr(nn.LSTMCell(3, 4, bias=False)) == "LSTMCell(3, 4, bias=False)"


# ----------------------------------------------------------------- bad input


def zeros(*shape):
    return tm.zeros(*shape)


def int_zeros(*shape):
    return tm.tensor(np.zeros(shape, dtype=np.int64))


# (case, call, exception, message pattern)
BAD_INPUTS = [
    ("lstm 4-D input",
     lambda: nn.LSTM(3, 4)(zeros(5, 2, 1, 3)),
     ShapeError,
     (r"LSTM: expected a 3-D input \(seq_len, batch, input_size\) or a 2-D input \(seq_len, input_size\) "
     r"for a single sequence, got a 4-D input of shape \(5, 2, 1, 3\)")),
    ("lstm 1-D input batch_first",
     lambda: nn.LSTM(3, 4, batch_first=True)(zeros(3)),
     ShapeError,
     r"LSTM: expected a 3-D input \(batch, seq_len, input_size\) or a 2-D input"),
    ("lstm 2-D input size",
     lambda: nn.LSTM(3, 4)(zeros(5, 2)),
     ShapeError,
     r"LSTM: input has 2 features in its last dimension \(input shape \(5, 2\)\) but input_size is 3"),
    ("lstm 2-D input with 3-D states",
     lambda: nn.LSTM(3, 4, num_layers=2)(zeros(5, 3), (zeros(2, 1, 4), zeros(2, 1, 4))),
     ShapeError,
     (r"LSTM: for a 2-D input \(seq_len, input_size\) of shape \(5, 3\), h0 must be 2-D with shape "
     r"\(2, 4\) = \(num_layers, hidden_size\), got \(2, 1, 4\)")),
    ("lstm 2-D input hx not a pair",
     lambda: nn.LSTM(3, 4)(zeros(5, 3), zeros(1, 4)),
     TypeError,
     r"LSTM: hx must be a pair \(h0, c0\) of tensors or None, got Tensor"),
    ("lstm input size",
     lambda: nn.LSTM(3, 4)(zeros(5, 2, 6)),
     ShapeError,
     r"LSTM: input has 6 features in its last dimension \(input shape \(5, 2, 6\)\) but input_size is 3"),
    ("lstm h0 layers",
     lambda: nn.LSTM(3, 4, num_layers=2)(zeros(5, 2, 3), (zeros(1, 2, 4), zeros(2, 2, 4))),
     ShapeError,
     r"LSTM: h0 has shape \(1, 2, 4\), expected \(2, 2, 4\) = \(num_layers, batch, hidden_size\)"),
    ("lstm c0 batch",
     lambda: nn.LSTM(3, 4)(zeros(5, 2, 3), (zeros(1, 2, 4), zeros(1, 3, 4))),
     ShapeError,
     r"LSTM: c0 has shape \(1, 3, 4\), expected \(1, 2, 4\)"),
    ("lstm h0 batch_first",
     lambda: nn.LSTM(3, 4, batch_first=True)(zeros(2, 5, 3), (zeros(1, 5, 4), zeros(1, 5, 4))),
     ShapeError,
     r"LSTM: h0 has shape \(1, 5, 4\), expected \(1, 2, 4\)"),
    ("lstm integer input",
     lambda: nn.LSTM(3, 4)(int_zeros(5, 2, 3)),
     DTypeError,
     r"LSTM: input must be a floating tensor \(float32 or float64\), got dtype int64"),
    ("lstm integer h0",
     lambda: nn.LSTM(3, 4)(zeros(5, 2, 3), (int_zeros(1, 2, 4), zeros(1, 2, 4))),
     DTypeError,
     r"LSTM: h0 must be a floating tensor \(float32 or float64\), got dtype int64"),
    ("lstm hx not a pair",
     lambda: nn.LSTM(3, 4)(zeros(5, 2, 3), zeros(1, 2, 4)),
     TypeError,
     r"LSTM: hx must be a pair \(h0, c0\) of tensors or None, got Tensor"),
    ("cell 3-D input",
     lambda: nn.LSTMCell(3, 4)(zeros(5, 2, 3)),
     ShapeError,
     (r"lstm_cell: expected a 2-D input \(batch, input_size\) or a 1-D input \(input_size,\), "
      r"got a 3-D input of shape \(5, 2, 3\)")),
    ("cell input size",
     lambda: nn.LSTMCell(3, 4)(zeros(2, 5)),
     ShapeError,
     (r"lstm_cell: input has 5 features in its last dimension \(input shape \(2, 5\)\) "
      r"but weight_ih expects input_size=3 \(weight_ih shape \(16, 3\)\)")),
    ("cell h shape",
     lambda: nn.LSTMCell(3, 4)(zeros(2, 3), (zeros(2, 5), zeros(2, 4))),
     ShapeError,
     r"lstm_cell: h has shape \(2, 5\), expected \(2, 4\) = \(batch, hidden_size\)"),
    ("cell c shape unbatched",
     lambda: nn.LSTMCell(3, 4)(zeros(3), (zeros(4), zeros(1, 4))),
     ShapeError,
     r"lstm_cell: c has shape \(1, 4\), expected \(4,\) = \(hidden_size,\) for a 1-D input"),
    ("cell integer input",
     lambda: nn.LSTMCell(3, 4)(int_zeros(2, 3)),
     DTypeError,
     r"lstm_cell: input must be a floating tensor \(float32 or float64\), got dtype int64"),
    ("cell hx not a pair",
     lambda: nn.LSTMCell(3, 4)(zeros(2, 3), [zeros(2, 4)]),
     TypeError,
     r"lstm_cell: hx must be a pair \(h, c\) of tensors or None, got list"),
    ("cell weight_hh shape",
     lambda: F.lstm_cell(zeros(2, 3), None, zeros(16, 3), zeros(16, 5)),
     ShapeError,
     r"lstm_cell: weight_hh has shape \(16, 5\), expected \(16, 4\)"),
    ("cell weight_ih rows",
     lambda: F.lstm_cell(zeros(2, 3), None, zeros(15, 3), zeros(16, 4)),
     ShapeError,
     r"lstm_cell: weight_ih must have shape \(4\*hidden_size, input_size\), got shape \(15, 3\)"),
    ("cell bias shape",
     lambda: F.lstm_cell(zeros(2, 3), None, zeros(16, 3), zeros(16, 4), zeros(4)),
     ShapeError,
     r"lstm_cell: bias_ih has shape \(4,\), expected \(16,\)"),
    ("layer empty sequence",
     lambda: F.lstm_layer(zeros(0, 2, 3), None, zeros(16, 3), zeros(16, 4)),
     ShapeError,
     r"lstm_layer: the input sequence is empty \(input shape \(0, 2, 3\)\)"),
    ("layer 2-D input",
     lambda: F.lstm_layer(zeros(2, 3), None, zeros(16, 3), zeros(16, 4)),
     ShapeError,
     r"lstm_layer: expected a 3-D input \(seq_len, batch, input_size\), got a 2-D input"),
]


@pytest.fixture
def kernels_must_not_run(monkeypatch):
    """Replace the LSTM kernels with ones that fail, so a check that comes too late shows up."""
    def fail(*args):
        raise AssertionError("an LSTM kernel ran before the input check")

    monkeypatch.setattr(K, "select", lambda name=None: SimpleNamespace(forward=fail, backward=fail))


@pytest.mark.parametrize("case, call, error, message", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_raises(kernels_must_not_run, case, call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("kwargs, message", [
    ({"input_size": 0, "hidden_size": 4}, "input_size must be a positive int, got 0"),
    ({"input_size": 3, "hidden_size": 2.5}, "hidden_size must be a positive int, got 2.5"),
    ({"input_size": 3, "hidden_size": 4, "num_layers": 0}, "num_layers must be a positive int, got 0"),
])
def test_lstm_bad_constructor(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nn.LSTM(**kwargs)


def test_cell_bad_constructor():
    with pytest.raises(ValueError, match="LSTMCell: hidden_size must be a positive int, got -1"):
        nn.LSTMCell(3, -1)


# ---------------------------------------------------------------- PyTorch


def torch_or_skip():
    return pytest.importorskip("torch", reason="PyTorch is optional; parity tests need it installed")


def state_dict_from(torch_module):
    return {name: value.detach().numpy() for name, value in torch_module.state_dict().items()}


@pytest.mark.parametrize("batch_first", [False, True], ids=["time_first", "batch_first"])
def test_torch_lstm_parity(rng, batch_first):
    torch = torch_or_skip()
    torch.manual_seed(0)
    reference = torch.nn.LSTM(3, 5, num_layers=2, batch_first=batch_first).double()
    lstm = nn.LSTM(3, 5, num_layers=2, batch_first=batch_first).double()
    lstm.load_state_dict(state_dict_from(reference))
    x = rng.standard_normal((2, 4, 3) if batch_first else (4, 2, 3))
    h0, c0 = rng.standard_normal((2, 2, 5)), rng.standard_normal((2, 2, 5))
    upstream = rng.standard_normal((2, 4, 5) if batch_first else (4, 2, 5))

    x_torch = torch.tensor(x, requires_grad=True)
    out_torch, (h_torch, c_torch) = reference(x_torch, (torch.tensor(h0), torch.tensor(c0)))
    ((out_torch * torch.tensor(upstream)).sum() + c_torch.sum()).backward()
    x_ours = tm.tensor(x, requires_grad=True)
    out_ours, (h_ours, c_ours) = lstm(x_ours, (tm.tensor(h0), tm.tensor(c0)))
    ((out_ours * tm.tensor(upstream)).sum() + c_ours.sum()).backward()

    np.testing.assert_allclose(out_ours.numpy(), out_torch.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h_ours.numpy(), h_torch.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c_ours.numpy(), c_torch.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(x_ours.grad, x_torch.grad.numpy(), rtol=1e-10, atol=1e-12)
    ours = dict(lstm.named_parameters())
    for name, p in reference.named_parameters():
        np.testing.assert_allclose(ours[name].grad, p.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def test_torch_cell_parity(rng):
    torch = torch_or_skip()
    torch.manual_seed(1)
    reference = torch.nn.LSTMCell(3, 5).double()
    cell = nn.LSTMCell(3, 5).double()
    cell.load_state_dict(state_dict_from(reference))
    x, h, c = rng.standard_normal((2, 3)), rng.standard_normal((2, 5)), rng.standard_normal((2, 5))

    x_torch = torch.tensor(x, requires_grad=True)
    h_torch, c_torch = reference(x_torch, (torch.tensor(h), torch.tensor(c)))
    (h_torch.sum() + 2 * c_torch.sum()).backward()
    x_ours = tm.tensor(x, requires_grad=True)
    h_ours, c_ours = cell(x_ours, (tm.tensor(h), tm.tensor(c)))
    (h_ours.sum() + 2 * c_ours.sum()).backward()

    np.testing.assert_allclose(h_ours.numpy(), h_torch.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c_ours.numpy(), c_torch.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(x_ours.grad, x_torch.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, p in reference.named_parameters():
        np.testing.assert_allclose(
            getattr(cell, name).grad, p.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name
        )


def test_torch_state_dict_float32(rng):
    torch = torch_or_skip()
    torch.manual_seed(2)
    reference = torch.nn.LSTM(28, 32, num_layers=2, batch_first=True)
    lstm = nn.LSTM(28, 32, num_layers=2, batch_first=True)
    lstm.load_state_dict(state_dict_from(reference))
    x = rng.standard_normal((4, 28, 28)).astype(np.float32)

    with torch.no_grad():
        out_torch, (h_torch, c_torch) = reference(torch.tensor(x))
    out_ours, (h_ours, c_ours) = lstm(tm.tensor(x))

    assert out_ours.dtype == np.float32
    np.testing.assert_allclose(out_ours.numpy(), out_torch.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_ours.numpy(), h_torch.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c_ours.numpy(), c_torch.numpy(), rtol=1e-5, atol=1e-6)
