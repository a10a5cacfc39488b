"""Module registration, state dicts, modes, hooks and the simple layers."""

import math

import numpy as np
import pytest

import tinymbm as tm
import tinymbm.functional as F
from tinymbm import nn


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(4, 3)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(3, 2))

    def forward(self, x):
        return self.head(self.hidden(x))


def test_named_parameters_use_dotted_names():
    names = [name for name, _ in TwoLayer().named_parameters()]
    assert names == ["hidden.weight", "hidden.bias", "head.1.weight", "head.1.bias"]


def test_children_and_modules():
    model = TwoLayer()
    assert [type(m).__name__ for m in model.children()] == ["Linear", "Sequential"]
    assert [type(m).__name__ for m in model.modules()] == ["TwoLayer", "Linear", "Sequential", "ReLU", "Linear"]


def test_state_dict_round_trip(rng):
    source, target = TwoLayer(), TwoLayer()
    target.load_state_dict(source.state_dict())
    x = tm.tensor(rng.standard_normal((5, 4)).astype(np.float32))
    assert np.array_equal(source(x).numpy(), target(x).numpy())


def test_state_dict_is_a_copy():
    model = TwoLayer()
    state = model.state_dict()
    state["hidden.bias"][:] = 100
    assert not np.any(model.hidden.bias.numpy() == 100)


def test_load_state_dict_casts_to_parameter_dtype():
    model = TwoLayer()
    state = {k: v.astype(np.float64) for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    assert model.hidden.weight.dtype == np.float32


def test_load_state_dict_missing_key():
    state = TwoLayer().state_dict()
    del state["head.1.bias"]
    with pytest.raises(RuntimeError, match=r"missing keys: \['head.1.bias'\]"):
        TwoLayer().load_state_dict(state)


def test_load_state_dict_unexpected_key():
    state = TwoLayer().state_dict()
    state["extra.weight"] = np.zeros(2)
    with pytest.raises(RuntimeError, match=r"unexpected keys: \['extra.weight'\]"):
        TwoLayer().load_state_dict(state)


def test_load_state_dict_non_strict_reports_keys():
    state = TwoLayer().state_dict()
    del state["hidden.bias"]
    missing, unexpected = TwoLayer().load_state_dict(state, strict=False)
    assert missing == ["hidden.bias"]
    assert unexpected == []


def test_load_state_dict_shape_mismatch_names_key_and_shapes():
    state = TwoLayer().state_dict()
    state["hidden.weight"] = np.zeros((3, 5))
    with pytest.raises(RuntimeError, match=r"hidden.weight: checkpoint has shape \(3, 5\), model has \(3, 4\)"):
        TwoLayer().load_state_dict(state)


def test_train_eval_propagate():
    model = TwoLayer()
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_zero_grad_clears_all(rng):
    model = TwoLayer()
    model(tm.tensor(rng.standard_normal((2, 4)).astype(np.float32))).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_double_and_float():
    model = TwoLayer().double()
    assert all(p.dtype == np.float64 for p in model.parameters())
    model.float()
    assert all(p.dtype == np.float32 for p in model.parameters())


def test_repr_lists_children():
    text = repr(TwoLayer())
    assert "(hidden): Linear(in_features=4, out_features=3, bias=True)" in text
    assert "(1): Linear(in_features=3, out_features=2, bias=True)" in text


def test_linear_layout_and_init_bounds():
    tm.manual_seed(1)
    layer = nn.Linear(400, 30)
    bound = 1 / math.sqrt(400)
    assert layer.weight.shape == (30, 400)
    assert layer.bias.shape == (30,)
    assert np.abs(layer.weight.numpy()).max() <= bound
    assert np.abs(layer.weight.numpy()).max() > 0.9 * bound
    assert np.abs(layer.bias.numpy()).max() <= bound


def test_linear_without_bias():
    layer = nn.Linear(3, 2, bias=False)
    assert layer.bias is None
    assert [name for name, _ in layer.named_parameters()] == ["weight"]


def test_flatten_and_loss_layers(rng):
    x = tm.tensor(rng.standard_normal((2, 3, 4, 5)))
    assert nn.Flatten()(x).shape == (2, 60)
    logits = tm.tensor(rng.standard_normal((4, 3)))
    target = rng.integers(0, 3, 4)
    assert np.isclose(nn.CrossEntropyLoss()(logits, target).item(), F.cross_entropy(logits, target).item())
    assert nn.CrossEntropyLoss(reduction="none")(logits, target).shape == (4,)


def test_setting_attribute_before_init_explains():
    class Broken(nn.Module):
        def __init__(self):
            self.layer = nn.Linear(2, 2)

    with pytest.raises(AttributeError, match=r"call super\(\).__init__\(\) first"):
        Broken()


def test_forward_hook_fires_and_is_removed(rng):
    model = TwoLayer()
    calls = []
    handle = model.hidden.register_forward_hook(lambda module, inputs, output: calls.append(output.shape))
    x = tm.tensor(rng.standard_normal((2, 4)).astype(np.float32))
    model(x)
    handle.remove()
    model(x)
    assert calls == [(2, 3)]


def test_backward_hooks_fire_in_backward_order(rng):
    model = TwoLayer()
    order = []
    model.hidden.register_full_backward_hook(lambda m, gi, go: order.append(("hidden", go[0].shape)))
    handle = model.head.register_full_backward_hook(lambda m, gi, go: order.append(("head", go[0].shape, gi[0].shape)))
    x = tm.tensor(rng.standard_normal((2, 4)).astype(np.float32), requires_grad=True)
    model(x).sum().backward()
    assert order == [("head", (2, 2), (2, 3)), ("hidden", (2, 3))]
    handle.remove()
    order.clear()
    model(x).sum().backward()
    assert order == [("hidden", (2, 3))]


def test_backward_hook_grad_input_is_correct(rng):
    layer = nn.Linear(3, 2)
    seen = {}
    layer.register_full_backward_hook(lambda m, gi, go: seen.update(gi=gi[0].numpy().copy(), go=go[0].numpy().copy()))
    x = tm.tensor(rng.standard_normal((4, 3)).astype(np.float32), requires_grad=True)
    layer(x).sum().backward()
    assert np.allclose(seen["go"], 1.0)
    assert np.allclose(seen["gi"], x.grad)
