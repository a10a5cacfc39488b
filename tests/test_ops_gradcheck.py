"""Every core op passes a float64 gradient check, over random shapes and broadcasting."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinymbm as tm
import tinymbm.functional as F
from tinymbm.autograd import gradcheck

FEW = settings(max_examples=25, deadline=None)

shapes = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)


@st.composite
def broadcast_pair(draw):
    """Two shapes that broadcast: the second drops leading axes and sets some sizes to 1."""
    full = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple))
    rank = draw(st.integers(0, len(full)))
    tail = full[len(full) - rank:]
    other = tuple(1 if draw(st.booleans()) else size for size in tail)
    if draw(st.booleans()):
        return full, other
    return other, full


def leaf(seed, shape, positive=False):
    values = np.random.default_rng(seed).standard_normal(shape)
    if positive:
        values = np.abs(values) + 0.5
    return tm.tensor(values, requires_grad=True)


BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a ** b,
}


@pytest.mark.parametrize("name", sorted(BINARY))
@FEW
@given(pair=broadcast_pair(), seed=st.integers(0, 2**32 - 1))
def test_binary_op_gradcheck(name, pair, seed):
    a = leaf(seed, pair[0], positive=True)
    b = leaf(seed + 1, pair[1], positive=True)
    assert gradcheck(BINARY[name], (a, b)), f"{name} shapes {pair} seed {seed}"


UNARY = {
    "neg": (lambda x: -x, False),
    "exp": (lambda x: x.exp(), False),
    "log": (lambda x: x.log(), True),
    "sqrt": (lambda x: x.sqrt(), True),
    "tanh": (lambda x: x.tanh(), False),
    "sigmoid": (lambda x: x.sigmoid(), False),
    "relu": (lambda x: x.relu(), False),
    "abs": (lambda x: abs(x), True),
    "scalar_pow": (lambda x: x ** 3, False),
    "reflected_div": (lambda x: 2.0 / x, True),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@FEW
@given(shape=shapes, seed=st.integers(0, 2**32 - 1))
def test_unary_op_gradcheck(name, shape, seed):
    function, positive = UNARY[name]
    x = leaf(seed, shape, positive=positive)
    if name == "relu":
        # Keep values away from the kink at 0, where the derivative jumps.
        x.data = np.where(np.abs(x.data) < 0.1, 0.5, x.data)
    assert gradcheck(function, (x,)), f"{name} shape {shape} seed {seed}"


@FEW
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), seed=st.integers(0, 2**32 - 1),
       keepdim=st.booleans(), data=st.data())
def test_reductions_gradcheck(shape, seed, keepdim, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = leaf(seed, shape)
    assert gradcheck(lambda t: t.sum(dim=dim, keepdim=keepdim), (x,))
    assert gradcheck(lambda t: t.mean(dim=dim, keepdim=keepdim), (x,))
    assert gradcheck(lambda t: t.max(dim=dim, keepdim=keepdim)[0], (x,))
    assert gradcheck(lambda t: t.sum(), (x,))
    assert gradcheck(lambda t: t.max(), (x,))


@FEW
@given(n=st.integers(1, 4), k=st.integers(1, 4), m=st.integers(1, 4), batch=st.sampled_from([(), (2,), (3, 1)]),
       seed=st.integers(0, 2**32 - 1))
def test_matmul_gradcheck(n, k, m, batch, seed):
    a = leaf(seed, batch + (n, k))
    b = leaf(seed + 1, (k, m))
    assert gradcheck(lambda x, y: x @ y, (a, b))


@pytest.mark.parametrize("shapes", [((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)), ((4, 2, 3), (3,))])
def test_matmul_vector_cases_gradcheck(rng, shapes):
    a = tm.tensor(rng.standard_normal(shapes[0]), requires_grad=True)
    b = tm.tensor(rng.standard_normal(shapes[1]), requires_grad=True)
    assert gradcheck(lambda x, y: x @ y, (a, b))


def test_shape_ops_gradcheck(rng):
    x = tm.tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    assert gradcheck(lambda t: t.reshape(4, 6), (x,))
    assert gradcheck(lambda t: t.transpose(0, 2), (x,))
    assert gradcheck(lambda t: t.permute(2, 0, 1), (x,))
    assert gradcheck(lambda t: t.flatten(1), (x,))
    assert gradcheck(lambda t: t.T, (x,))
    assert gradcheck(lambda t: t.unsqueeze(1).squeeze(1), (x,))


@pytest.mark.parametrize(
    "index",
    [
        (slice(None), 1),
        (0, slice(1, None), slice(None, None, 2)),
        (Ellipsis, -1),
        (np.array([1, 0, 1]),),
        (slice(None), np.array([2, 2, 0])),
    ],
)
def test_indexing_gradcheck(rng, index):
    x = tm.tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    assert gradcheck(lambda t: t[index], (x,))


def test_stack_and_cat_gradcheck(rng):
    a = tm.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    b = tm.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    assert gradcheck(lambda x, y: tm.stack([x, y], dim=1), (a, b))
    assert gradcheck(lambda x, y: tm.cat([x, y], dim=1), (a, b))


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_gradcheck(rng, dim):
    x = tm.tensor(rng.standard_normal((3, 5)), requires_grad=True)
    assert gradcheck(lambda t: F.softmax(t, dim), (x,))
    assert gradcheck(lambda t: F.log_softmax(t, dim), (x,))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_gradcheck(rng, reduction):
    logits = tm.tensor(rng.standard_normal((5, 4)), requires_grad=True)
    target = rng.integers(0, 4, size=5)
    assert gradcheck(lambda t: F.cross_entropy(t, target, reduction=reduction), (logits,))
    assert gradcheck(lambda t: F.nll_loss(F.log_softmax(t, 1), target, reduction=reduction), (logits,))


def test_linear_gradcheck(rng):
    x = tm.tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    w = tm.tensor(rng.standard_normal((5, 4)), requires_grad=True)
    b = tm.tensor(rng.standard_normal(5), requires_grad=True)
    assert gradcheck(F.linear, (x, w, b))
    assert gradcheck(lambda t, u: F.linear(t, u), (x, w))


def test_linear_matches_formula(rng):
    x = rng.standard_normal((3, 4))
    w = rng.standard_normal((5, 4))
    b = rng.standard_normal(5)
    assert np.allclose(F.linear(tm.tensor(x), tm.tensor(w), tm.tensor(b)).numpy(), x @ w.T + b)


def test_cross_entropy_stable_for_huge_logits():
    for scale in (1e4, 1e6, 1e30):
        logits = tm.tensor([[scale, -scale, 0.0], [-scale, scale, scale]], requires_grad=True)
        loss = F.cross_entropy(logits, [0, 1])
        loss.backward()
        assert np.isfinite(loss.item()), scale
        assert np.all(np.isfinite(logits.grad)), scale
        assert abs(loss.item() - np.log(2) / 2) < 1e-5, scale


def test_cross_entropy_matches_definition(rng):
    logits = rng.standard_normal((6, 3))
    target = rng.integers(0, 3, 6)
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected = -np.log(probabilities[np.arange(6), target])
    assert np.allclose(F.cross_entropy(tm.tensor(logits), target, reduction="none").numpy(), expected)
    assert np.isclose(F.cross_entropy(tm.tensor(logits), target).item(), expected.mean())
