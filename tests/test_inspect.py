"""Graph explanation, drawing, gradient-flow recording and backward_steps on random graphs."""

import numpy as np
import pytest

import tinymbm as tm
import tinymbm.functional as F
from tinymbm import nn, viz
from tinymbm.errors import ShapeError
from tinymbm.inspect import GradientFlowRecorder, explain, gradient_table, lstm_trace


def random_graph(seed):
    """A random expression over three leaves, with shared subexpressions."""
    rng = np.random.default_rng(seed)
    leaves = [tm.tensor(rng.standard_normal((3, 4)), requires_grad=True) for _ in range(3)]
    pool = list(leaves)
    ops = [
        lambda a, b: a + b,
        lambda a, b: a * b,
        lambda a, b: a - b.tanh(),
        lambda a, b: (a.sigmoid() * b).exp(),
        lambda a, b: F.softmax(a, 1) * b,
    ]
    for _ in range(int(rng.integers(3, 9))):
        op = ops[int(rng.integers(len(ops)))]
        a = pool[int(rng.integers(len(pool)))]
        b = pool[int(rng.integers(len(pool)))]
        pool.append(op(a, b))
    return leaves, pool[-1].sum()


@pytest.mark.parametrize("seed", range(8))
def test_backward_steps_match_backward_on_random_graphs(seed):
    leaves_a, out_a = random_graph(seed)
    out_a.backward()
    leaves_b, out_b = random_graph(seed)
    steps = list(tm.autograd.backward_steps(out_b))
    assert steps, "no steps recorded"
    for a, b in zip(leaves_a, leaves_b):
        if a.grad is None:
            assert b.grad is None
        else:
            assert np.array_equal(a.grad, b.grad)


def test_backward_step_record_contents(rng):
    x = tm.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    w = tm.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    step = next(tm.autograd.backward_steps((x @ w).sum()))
    assert step.step == 0
    assert step.op == "Sum"
    assert step.output_shapes == [()]
    assert step.grad_inputs[0].shape == (2, 4)
    assert step.grad_input_norms[0] == pytest.approx(np.sqrt(8))
    assert "Sum" in str(step)


def test_explain_lists_every_op():
    x = tm.tensor([1.0, 2.0], requires_grad=True)
    w = tm.tensor([3.0, 4.0])
    text = explain(((x * w).exp() + x).sum(), names={"x": x, "w": w})
    for op in ("Sum", "Add", "Exp", "Mul"):
        assert op in text
    assert "x (2,) float32 requires_grad" in text
    assert "w (2,) float32 constant" in text
    assert text.splitlines()[0].startswith("Sum () float32")


def test_explain_marks_shared_nodes():
    x = tm.tensor([1.0, 2.0], requires_grad=True)
    shared = x * 2
    text = explain((shared + shared.exp()).sum())
    assert "(shared, see above)" in text


def test_draw_graph_writes_png(tmp_path, rng):
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    loss = F.cross_entropy(model(tm.tensor(rng.standard_normal((5, 4)).astype(np.float32))), [0, 1, 0, 1, 1])
    steps = list(tm.autograd.backward_steps(loss))
    path = tmp_path / "graph.png"
    viz.draw_graph(loss, path, steps=steps, names=dict(model.named_parameters()))
    assert path.exists()
    assert path.stat().st_size > 1000


def test_gradient_flow_recorder_shapes(rng):
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    recorder = GradientFlowRecorder(model)
    for _ in range(3):
        model.zero_grad()
        model(tm.tensor(rng.standard_normal((5, 4)).astype(np.float32))).sum().backward()
        recorder.record()
    mean, maximum = recorder.as_arrays()
    assert recorder.names == ["0.weight", "2.weight"]
    assert mean.shape == (3, 2)
    assert np.all(maximum >= mean)
    assert "0.weight" in gradient_table(model)


# ------------------------------------------------------------ module hooks


class Block(nn.Module):
    """A module holding a nested Sequential, so hooks sit at two levels."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.inner(x))


def hook_recorder(model, order):
    """Register a backward hook on every module of ``model`` that appends its name."""
    for name, module in model.named_modules():
        label = name or "model"
        module.register_full_backward_hook(
            lambda m, gi, go, label=label: order.append((label, tuple(go[0].shape)))
        )


HOOK_ORDERS = [
    # (input requires grad, order in which the hooks fire)
    # A module's hook fires when the gradient of its input is complete, so the
    # modules inside an outer module come first, and layers run from the output back.
    (True, ["head", "inner.1", "inner.0", "inner", "model"]),
    # With no input requiring grad, a module's hook fires as soon as the
    # gradient of its output arrives (as in PyTorch), so outer modules come first.
    (False, ["model", "head", "inner", "inner.1", "inner.0"]),
]


@pytest.mark.parametrize("input_requires_grad, expected", HOOK_ORDERS)
def test_hooks_order_nested_modules(rng, input_requires_grad, expected):
    model = Block()
    order = []
    hook_recorder(model, order)
    x = tm.tensor(rng.standard_normal((5, 4)).astype(np.float32), requires_grad=input_requires_grad)
    model(x).sum().backward()
    assert [name for name, _ in order] == expected, f"input_requires_grad={input_requires_grad}"
    assert dict(order)["inner"] == (5, 3)
    assert dict(order)["model"] == (5, 2)


def test_hooks_grad_output_per_layer(rng):
    model = Block()
    seen = {}
    for name in ("head", "inner.0"):
        module = dict(model.named_modules())[name]
        module.register_full_backward_hook(
            lambda m, gi, go, name=name: seen.update({name: (go[0].numpy().copy(), gi[0].numpy().copy())})
        )
    x = tm.tensor(rng.standard_normal((5, 4)), requires_grad=True)
    model.double()
    hidden = model.inner(x)
    hidden.retain_grad()
    model.head(hidden).sum().backward()
    assert np.allclose(seen["head"][0], 1.0)
    assert np.allclose(seen["head"][1], hidden.grad)
    assert np.allclose(seen["inner.0"][1], x.grad)


def test_hooks_tuple_output_lstm(rng):
    lstm = nn.LSTM(3, 4, batch_first=True)
    seen = []
    lstm.register_full_backward_hook(lambda m, gi, go: seen.append((tuple(go[0].shape), go[1])))
    x = tm.tensor(rng.standard_normal((2, 5, 3)).astype(np.float32), requires_grad=True)
    output, (h_n, _c_n) = lstm(x)
    output.sum().backward()
    # The nested (h_n, c_n) is one top-level element that is not a tensor: None.
    assert seen == [((2, 5, 4), None)]
    assert h_n.shape == (1, 2, 4)
    assert x.grad is not None


class Scale(nn.Module):
    def forward(self, factor, x):
        return x * factor


def test_hooks_grad_input_per_argument(rng):
    module = Scale()
    seen = []
    module.register_full_backward_hook(lambda m, gi, go: seen.append(gi))
    factor = tm.tensor(rng.standard_normal(3))
    x = tm.tensor(rng.standard_normal(3), requires_grad=True)
    module(factor, x).sum().backward()
    assert len(seen[0]) == 2
    assert seen[0][0] is None
    assert np.allclose(seen[0][1].numpy(), factor.numpy())


def test_hooks_replace_grad_input(rng):
    module = Scale()
    module.register_full_backward_hook(lambda m, gi, go: (None, gi[1] * 0.0))
    x = tm.tensor(rng.standard_normal(3), requires_grad=True)
    module(tm.tensor(rng.standard_normal(3)), x).sum().backward()
    assert np.array_equal(x.grad, np.zeros(3))


def test_hooks_wrong_grad_input_count(rng):
    module = Scale()
    module.register_full_backward_hook(lambda m, gi, go: (gi[1],))
    x = tm.tensor(rng.standard_normal(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="returned 1 gradients, expected 2"):
        module(tm.tensor(rng.standard_normal(3)), x).sum().backward()


def test_hooks_removed_handle(rng):
    model = Block()
    order = []
    handle = model.head.register_full_backward_hook(lambda m, gi, go: order.append("head"))
    model(tm.tensor(rng.standard_normal((2, 4)).astype(np.float32))).sum().backward()
    handle.remove()
    model(tm.tensor(rng.standard_normal((2, 4)).astype(np.float32))).sum().backward()
    assert order == ["head"]


# ------------------------------------------------------------- anomaly mode


def test_anomaly_forward_names_first_nan_op():
    x = tm.tensor([-1.0, 2.0], requires_grad=True)
    with tm.autograd.detect_anomaly(), np.errstate(invalid="ignore"), pytest.raises(RuntimeError) as error:
        # Log makes the NaN; Exp and Sum would only pass it on.
        x.log().exp().sum()
    message = str(error.value)
    assert "Function 'Log' returned nan values in its output 0" in message
    assert "test_inspect.py" in message


def test_anomaly_backward_names_first_nan_op():
    x = tm.tensor([0.0, 4.0], requires_grad=True)
    with tm.autograd.detect_anomaly(), np.errstate(divide="ignore", invalid="ignore"):
        # Forward is finite (sqrt(0) * 0 = 0), but sqrt's derivative at 0 is
        # infinite and 0 * inf is NaN: the Sqrt node is the first to produce it.
        loss = ((x.sqrt() * 0.0).exp() * 3.0).sum()
        with pytest.raises(RuntimeError) as error:
            loss.backward()
    message = str(error.value)
    assert "Function 'SqrtBackward' returned nan values in its gradient for input 0" in message
    assert "test_inspect.py" in message


def test_anomaly_off_lets_nan_through():
    x = tm.tensor([-1.0], requires_grad=True)
    with np.errstate(invalid="ignore"):
        assert np.isnan(x.log().item())


def test_anomaly_site_in_folder_named_tinymbm():
    # A user's checkout may itself be named tinymbm; its files are still user code.
    # Compiling under a made-up file name gives a frame from such a checkout.
    x = tm.tensor([-1.0], requires_grad=True)
    code = compile("x.log()", "/home/learner/tinymbm/lessons/user_code.py", "exec")
    with tm.autograd.detect_anomaly(), np.errstate(invalid="ignore"), pytest.raises(RuntimeError) as error:
        exec(code, {"x": x})  # noqa: S102 (a fixed one-line string, compiled above)
    assert "user_code.py:1" in str(error.value)


# ---------------------------------------------------------- backward_steps


class Blocked(tm.autograd.Function):
    """Identity forward whose backward sends no gradient."""

    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, grad_output):
        return None


def test_backward_steps_numbers_consecutive():
    x = tm.tensor([1.0, 2.0], requires_grad=True)
    loss = (Blocked.apply(x.exp()) + x).sum()
    steps = list(tm.autograd.backward_steps(loss))
    assert [s.step for s in steps] == list(range(len(steps)))
    assert "Exp" not in [s.op for s in steps]
    assert np.array_equal(x.grad, [1.0, 1.0])


def test_draw_graph_inputs_below_consumers():
    x = tm.tensor([1.0, 2.0], requires_grad=True)
    shared = x * 2.0
    loss = (shared + shared.exp()).sum()
    figure = viz.draw_graph(loss, names={"x": x})
    heights = {text.get_text().split("\n")[0]: text.get_position()[1] for text in figure.axes[0].texts}
    assert heights["Mul"] < heights["Exp"]
    assert heights["x"] < heights["Mul"]


# ---------------------------------------------------------- gradient flow


def test_gradient_flow_skips_lstm_biases():
    model = nn.LSTM(3, 4, num_layers=2)
    assert GradientFlowRecorder(model).names == ["weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1"]
    assert len(GradientFlowRecorder(model, include_bias=True).names) == 8


# -------------------------------------------------------------- lstm_trace


TRACE_CASES = [
    # (module, batch, steps)
    ("lstm", None, 1),
    ("lstm", None, 6),
    ("lstm", 3, 1),
    ("lstm", 3, 4),
    ("cell", None, 1),
    ("cell", 2, 5),
]


@pytest.mark.parametrize("kind, batch, steps", TRACE_CASES)
def test_lstm_trace_shapes(rng, kind, batch, steps):
    module = nn.LSTM(3, 4) if kind == "lstm" else nn.LSTMCell(3, 4)
    shape = (steps, 3) if batch is None else (batch, steps, 3)
    trace = lstm_trace(module, rng.standard_normal(shape))
    case = f"kind={kind} batch={batch} steps={steps}"
    for name in ("input", "forget", "cell", "output"):
        assert trace["gates"][name].shape == (steps, 4), case
    assert trace["hidden"].shape == (steps, 4), case
    assert trace["grad_norms"].shape == (steps,), case
    assert np.all(trace["grad_norms"] > 0), case


@pytest.mark.parametrize("batch", [1, 3])
def test_lstm_trace_length_one_norm(rng, batch):
    # With L = sum(h_T), dL/dh_T is all ones: its norm is sqrt(N * H).
    trace = lstm_trace(nn.LSTM(3, 4), rng.standard_normal((batch, 1, 3)))
    assert trace["grad_norms"][0] == pytest.approx(np.sqrt(batch * 4), rel=1e-6)


def test_lstm_trace_matches_lstm_forward(rng):
    lstm = nn.LSTM(3, 4, batch_first=True).double()
    x = rng.standard_normal((2, 5, 3))
    output, _ = lstm(tm.tensor(x))
    trace = lstm_trace(lstm, x)
    assert np.allclose(trace["hidden"], output.numpy()[0])


def test_lstm_trace_gates_in_range(rng):
    trace = lstm_trace(nn.LSTM(3, 4), rng.standard_normal((7, 3)))
    for name in ("input", "forget", "output"):
        assert np.all((trace["gates"][name] > 0) & (trace["gates"][name] < 1)), name
    assert np.all(np.abs(trace["gates"]["cell"]) < 1)


def test_lstm_trace_grad_norm_against_finite_difference(rng):
    # dL/dh_t checked numerically: perturb h_t through the input of step t + 1.
    cell = nn.LSTMCell(2, 3).double()
    x = rng.standard_normal((1, 4, 2))
    trace = lstm_trace(cell, x)

    def loss_from(t, h_t):
        h, c = tm.tensor(h_t), tm.tensor(c_states[t])
        for step in range(t + 1, x.shape[1]):
            h, c = cell(tm.tensor(x[:, step]), (h, c))
        return float(h.sum().item())

    h, c = tm.zeros(1, 3, dtype=np.float64), tm.zeros(1, 3, dtype=np.float64)
    h_states, c_states = [], []
    for step in range(x.shape[1]):
        h, c = cell(tm.tensor(x[:, step]), (h, c))
        h_states.append(h.numpy().copy())
        c_states.append(c.numpy().copy())
    eps = 1e-6
    t = 1
    numerical = np.zeros(3)
    for unit in range(3):
        shift = np.zeros((1, 3))
        shift[0, unit] = eps
        numerical[unit] = (loss_from(t, h_states[t] + shift) - loss_from(t, h_states[t] - shift)) / (2 * eps)
    assert trace["grad_norms"][t] == pytest.approx(np.linalg.norm(numerical), rel=1e-5)


def test_lstm_trace_keeps_weight_grads(rng):
    lstm = nn.LSTM(3, 4)
    lstm(tm.tensor(rng.standard_normal((2, 1, 3)).astype(np.float32)))[0].sum().backward()
    before = {name: param.grad.copy() for name, param in lstm.named_parameters()}
    lstm_trace(lstm, rng.standard_normal((5, 3)))
    for name, param in lstm.named_parameters():
        assert np.array_equal(param.grad, before[name]), name


def test_lstm_trace_frozen_and_no_grad(rng):
    lstm = nn.LSTM(3, 4).requires_grad_(False)
    with tm.no_grad():
        trace = lstm_trace(lstm, rng.standard_normal((5, 3)))
    assert np.all(trace["grad_norms"] > 0)
    assert all(param.grad is None for param in lstm.parameters())


@pytest.mark.parametrize("shape", [(5,), (5, 2), (2, 5, 2), (2, 0, 3), (1, 2, 5, 3)])
def test_lstm_trace_bad_input(rng, shape):
    with pytest.raises(ShapeError, match="lstm_trace"):
        lstm_trace(nn.LSTM(3, 4), np.zeros(shape))


def test_lstm_trace_rejects_other_module():
    with pytest.raises(TypeError, match="expected an nn.LSTM or nn.LSTMCell"):
        lstm_trace(nn.Linear(3, 4), np.zeros((2, 3)))
