"""Graph explanation, drawing, gradient-flow recording and backward_steps on random graphs."""

import numpy as np
import pytest

import tinymbm as tm
import tinymbm.functional as F
from tinymbm import nn, viz
from tinymbm.inspect import GradientFlowRecorder, explain, gradient_table


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
