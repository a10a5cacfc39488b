"""The backward engine: order, accumulation, hooks, freeing, and its error messages."""

import numpy as np
import pytest

import tinymbm as tm
import tinymbm.functional as F
from tinymbm.autograd import GradcheckError, gradcheck


def leaf(rng, *shape):
    return tm.tensor(rng.standard_normal(shape), requires_grad=True)


def test_diamond_graph_exact(rng):
    x = leaf(rng, 3)
    shared = x * x  # used by two consumers
    out = (shared.exp() + shared * 3).sum()
    out.backward()
    xv = x.numpy()
    expected = np.exp(xv * xv) * 2 * xv + 6 * xv
    assert np.allclose(x.grad, expected, rtol=1e-12)


def test_long_chain_has_no_recursion_limit():
    x = tm.tensor(np.array(1.0), requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0
    y.backward()
    assert x.grad == 1.0


def test_two_backward_calls_accumulate(rng):
    x = leaf(rng, 4)
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    assert np.allclose(x.grad, 6.0)


def test_zero_grad_clears(rng):
    x = leaf(rng, 2)
    (x * 2).sum().backward()
    x.zero_grad()
    assert x.grad is None


def test_backward_twice_without_retain_graph_raises(rng):
    x = leaf(rng, 3)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_retain_graph_allows_second_backward(rng):
    x = leaf(rng, 3)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert np.allclose(x.grad, 4 * x.numpy())


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        tm.tensor([1.0, 2.0]).sum().backward()


def test_backward_non_scalar_without_gradient_raises(rng):
    x = leaf(rng, 2, 3)
    with pytest.raises(RuntimeError, match=r"only for scalar outputs.*\(2, 3\)"):
        (x * 2).backward()


def test_backward_with_gradient_argument(rng):
    x = leaf(rng, 2, 3)
    upstream = rng.standard_normal((2, 3))
    (x * 2).backward(upstream)
    assert np.allclose(x.grad, 2 * upstream)


def test_backward_gradient_of_wrong_shape_raises(rng):
    x = leaf(rng, 2, 3)
    with pytest.raises(RuntimeError, match=r"gradient has shape \(3,\)"):
        (x * 2).backward(np.ones(3))


def test_retain_grad_keeps_non_leaf_gradient(rng):
    x = leaf(rng, 3)
    y = x * 2
    y.retain_grad()
    (y * y).sum().backward()
    assert np.allclose(y.grad, 2 * y.numpy())


def test_hook_sees_and_replaces_gradient(rng):
    x = leaf(rng, 3)
    y = x * 2
    seen = []
    y.register_hook(lambda grad: seen.append(grad.numpy().copy()))
    handle = x.register_hook(lambda grad: grad * 10)
    y.sum().backward()
    assert np.allclose(seen[0], 1.0)
    assert np.allclose(x.grad, 20.0)
    handle.remove()
    x.zero_grad()
    y = x * 2
    y.sum().backward()
    assert np.allclose(x.grad, 2.0)


def test_leaf_backward_accumulates_seed(rng):
    x = leaf(rng, 1)
    x.backward()
    assert x.grad.tolist() == [1.0]


def test_repeated_index_accumulates(rng):
    x = leaf(rng, 4)
    x[np.array([0, 0, 2, 0])].sum().backward()
    assert x.grad.tolist() == [3.0, 0.0, 1.0, 0.0]


def test_max_dim_gradient_goes_to_first_maximum():
    x = tm.tensor([[3.0, 1.0, 3.0]], requires_grad=True)
    values, _ = x.max(dim=1)
    values.sum().backward()
    assert x.grad.tolist() == [[1.0, 0.0, 0.0]]


def test_full_max_splits_gradient_among_ties():
    x = tm.tensor([3.0, 1.0, 3.0], requires_grad=True)
    x.max().backward()
    assert x.grad.tolist() == [0.5, 0.0, 0.5]


def test_relu_gradient_at_zero_is_zero():
    x = tm.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    F.relu(x).sum().backward()
    assert x.grad.tolist() == [0.0, 0.0, 1.0]


def test_gradcheck_reports_input_index_and_values(rng):
    class WrongSquare(tm.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 3 * x  # should be 2x

    x = leaf(rng, 2, 2)
    with pytest.raises(GradcheckError, match=r"input 0 \(shape \(2, 2\)\) element \(0, 0\): analytic gradient .* numerical"):
        gradcheck(lambda t: WrongSquare.apply(t), (x,))


def test_gradcheck_passes_for_correct_op(rng):
    assert gradcheck(lambda a, b: a * b + a.exp(), (leaf(rng, 3, 2), leaf(rng, 2)))


def test_gradcheck_samples_large_inputs(rng):
    x = leaf(rng, 100, 50)
    assert gradcheck(lambda t: (t * t).sum(), (x,), max_elements=20)


def test_gradcheck_requires_an_input_with_grad():
    with pytest.raises(ValueError, match="no input requires grad"):
        gradcheck(lambda t: t * 2, (tm.tensor([1.0]),))


def test_detect_anomaly_names_op_in_forward():
    x = tm.tensor([-1.0, 1.0], requires_grad=True)
    expected = r"Function 'Log' returned nan values in its output 0 \(op created at .*test_autograd.py"
    with tm.autograd.detect_anomaly(), pytest.raises(RuntimeError, match=expected):
        x.log()


def test_detect_anomaly_names_op_in_backward():
    x = tm.tensor([0.0, 1.0], requires_grad=True)
    with tm.autograd.detect_anomaly():
        y = x.sqrt().sum()
        with pytest.raises(RuntimeError, match="Function 'SqrtBackward' returned inf values in its gradient for input 0"):
            y.backward()


def test_backward_steps_equal_backward(rng):
    data_x = rng.standard_normal((3, 4))
    data_w = rng.standard_normal((4, 2))

    def build():
        x = tm.tensor(data_x, requires_grad=True)
        w = tm.tensor(data_w, requires_grad=True)
        return x, w, F.log_softmax((x @ w).tanh(), dim=1).sum()

    x1, w1, out1 = build()
    out1.backward()
    x2, w2, out2 = build()
    steps = list(tm.autograd.backward_steps(out2))
    assert np.array_equal(x1.grad, x2.grad)
    assert np.array_equal(w1.grad, w2.grad)
    assert [s.op for s in steps] == ["Sum", "LogSoftmax", "Tanh", "MatMul"]
    assert "MatMul" in str(steps[-1])
