"""Tests of tinymbm.train: fit, evaluate, checkpoints and resuming."""

import math

import numpy as np
import pytest

import tinymbm.functional as F
from tinymbm import nn
from tinymbm import random as tm_random
from tinymbm.data import DataLoader, TensorDataset
from tinymbm.optim import SGD, Adam
from tinymbm.serialization import SerializationError, load, save
from tinymbm.tensor import Tensor
from tinymbm.train import evaluate, fit, restore_checkpoint


class ShuffledBatches:
    """A minimal loader: (x, y) Tensor batches, reshuffled each epoch by the engine's RNG."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool = True):
        self.x = x
        self.y = y
        self.batch_size = batch_size
        self.shuffle = shuffle

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self):
        order = np.arange(len(self.x))
        if self.shuffle:
            order = tm_random.generator().permutation(len(self.x))
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            yield Tensor(self.x[index]), Tensor(self.y[index])


class PairedBatches(ShuffledBatches):
    """Batches (x1, x2, y) for a two-input model."""

    def __iter__(self):
        for x, y in super().__iter__():
            yield x, Tensor(x.data[:, ::-1].copy()), y


class SumOfTwo(nn.Module):
    """A two-input model whose class scores are the sum of two linear layers."""

    def __init__(self):
        super().__init__()
        self.first = nn.Linear(4, 3)
        self.second = nn.Linear(4, 3)

    def forward(self, x1, x2):
        return self.first(x1) + self.second(x2)


def make_data(seed: int = 0, n: int = 48):
    """Return (x, y) with 4 features and 3 classes. The class is the argmax of x[:, :3]."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = x[:, :3].argmax(axis=1).astype(np.int64)
    return x, y


def make_model(seed: int) -> nn.Module:
    tm_random.manual_seed(seed)
    return nn.Linear(4, 3)


def params_of(model) -> dict:
    return {name: value.copy() for name, value in model.state_dict().items()}


# ---------------------------------------------------------------- fit


def test_fit_history_lengths():
    x, y = make_data()
    model = make_model(0)

    history = fit(model, SGD(model.parameters(), lr=0.1), ShuffledBatches(x, y, 16), epochs=3,
                  val_loader=ShuffledBatches(x, y, 16, shuffle=False), progress=False)

    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert len(history[key]) == 3, key


def test_fit_without_validation():
    x, y = make_data()
    model = make_model(0)

    history = fit(model, SGD(model.parameters(), lr=0.1), ShuffledBatches(x, y, 16), epochs=2,
                  progress=False)

    assert history["val_loss"] == []


def test_fit_lowers_loss():
    x, y = make_data()
    model = make_model(0)

    history = fit(model, Adam(model.parameters(), lr=0.05), ShuffledBatches(x, y, 8), epochs=8,
                  progress=False)

    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    assert history["train_acc"][-1] > 0.8


def test_fit_two_inputs():
    x, y = make_data()
    tm_random.manual_seed(0)
    model = SumOfTwo()

    history = fit(model, Adam(model.parameters(), lr=0.05), PairedBatches(x, y, 8), epochs=2,
                  val_loader=PairedBatches(x, y, 8, shuffle=False), progress=False)

    assert len(history["val_acc"]) == 2


def test_fit_non_classification_accuracy_nan():
    x, _ = make_data()
    targets = x[:, :3].copy()
    model = make_model(0)

    history = fit(model, SGD(model.parameters(), lr=0.01), ShuffledBatches(x, targets, 16),
                  epochs=1, loss_fn=lambda out, t: ((out - t) ** 2).mean(), progress=False)

    assert math.isnan(history["train_acc"][0])


def test_fit_progress_bar_shows_loss(capsys):
    x, y = make_data()
    model = make_model(0)

    fit(model, SGD(model.parameters(), lr=0.1), ShuffledBatches(x, y, 16), epochs=1)

    assert "loss=" in capsys.readouterr().err


def test_fit_nan_loss_stops_before_step():
    x, y = make_data()
    x[5, 0] = np.nan
    model = make_model(0)
    before = params_of(model)

    with pytest.raises(FloatingPointError, match="batch 0"):
        fit(model, SGD(model.parameters(), lr=0.1), ShuffledBatches(x, y, 48, shuffle=False),
            epochs=1, progress=False)

    for name, value in before.items():
        np.testing.assert_array_equal(model.state_dict()[name], value, err_msg=name)


# ---------------------------------------------------------------- checkpoints and resume


def test_fit_writes_checkpoint(tmp_path):
    x, y = make_data()
    model = make_model(0)
    path = tmp_path / "run.npz"

    fit(model, SGD(model.parameters(), lr=0.1), ShuffledBatches(x, y, 16), epochs=2,
        checkpoint=path, progress=False)
    checkpoint = load(path)

    assert checkpoint["epoch"] == 2
    assert sorted(checkpoint["model"]) == ["bias", "weight"]
    assert checkpoint["optimizer_type"] == "SGD"


@pytest.mark.parametrize("make_optimizer", [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-3),
    lambda ps: Adam(ps, lr=0.05),
], ids=["SGD", "Adam"])
def test_resume_matches_uninterrupted(tmp_path, make_optimizer):
    x, y = make_data()
    loader = ShuffledBatches(x, y, 8)

    # Uninterrupted: three epochs in one call.
    model = make_model(0)
    expected_history = fit(model, make_optimizer(model.parameters()), loader, epochs=3,
                           progress=False)
    expected = params_of(model)

    # Interrupted after two epochs, then resumed in a fresh model and optimizer whose
    # initial weights and RNG state differ, which the checkpoint must overwrite.
    path = tmp_path / "run.npz"
    model = make_model(0)
    fit(model, make_optimizer(model.parameters()), loader, epochs=2, checkpoint=path,
        progress=False)
    resumed_model = make_model(99)
    resumed_history = fit(resumed_model, make_optimizer(resumed_model.parameters()), loader,
                          epochs=3, checkpoint=path, resume=True, progress=False)

    for name, value in expected.items():
        np.testing.assert_array_equal(resumed_model.state_dict()[name], value, err_msg=name)
    assert resumed_history["train_loss"] == expected_history["train_loss"]


def test_resume_restores_shuffle_order(tmp_path):
    x, y = make_data()
    loader = ShuffledBatches(x, y, 8)
    path = tmp_path / "run.npz"
    model = make_model(0)
    fit(model, SGD(model.parameters(), lr=0.1), loader, epochs=1, checkpoint=path,
        progress=False)
    expected_order = tm_random.generator().permutation(len(x))

    tm_random.manual_seed(12345)
    restore_checkpoint(path, make_model(1), SGD(make_model(1).parameters(), lr=0.1))

    np.testing.assert_array_equal(tm_random.generator().permutation(len(x)), expected_order)


def test_resume_missing_checkpoint_starts_fresh(tmp_path, capsys):
    x, y = make_data()
    model = make_model(0)

    history = fit(model, SGD(model.parameters(), lr=0.1), ShuffledBatches(x, y, 16), epochs=1,
                  checkpoint=tmp_path / "absent.npz", resume=True, progress=False)

    assert len(history["train_loss"]) == 1
    assert "starting at epoch 1" in capsys.readouterr().out


def test_resume_finished_run_no_training(tmp_path):
    x, y = make_data()
    path = tmp_path / "run.npz"
    model = make_model(0)
    fit(model, SGD(model.parameters(), lr=0.1), ShuffledBatches(x, y, 16), epochs=2,
        checkpoint=path, progress=False)
    expected = params_of(model)

    resumed = make_model(1)
    history = fit(resumed, SGD(resumed.parameters(), lr=0.1), ShuffledBatches(x, y, 16),
                  epochs=2, checkpoint=path, resume=True, progress=False)

    assert len(history["train_loss"]) == 2
    np.testing.assert_array_equal(resumed.state_dict()["weight"], expected["weight"])


def write_checkpoint(path):
    x, y = make_data()
    model = make_model(0)
    fit(model, SGD(model.parameters(), lr=0.1), ShuffledBatches(x, y, 16), epochs=1,
        checkpoint=path, progress=False)


OTHER_MODEL_CASES = [
    # (name, model factory, fragments the error must name)
    ("wider", lambda: nn.Linear(4, 5), ["weight: checkpoint (3, 4), model (5, 4)", "bias"]),
    ("no-bias", lambda: nn.Linear(4, 3, bias=False), ["unexpected keys", "bias"]),
    ("two-layers", SumOfTwo, ["missing keys", "first.weight", "unexpected keys"]),
]


@pytest.mark.parametrize("name, make_other, fragments", OTHER_MODEL_CASES,
                         ids=[case[0] for case in OTHER_MODEL_CASES])
def test_resume_other_model(tmp_path, name, make_other, fragments):
    path = tmp_path / "run.npz"
    write_checkpoint(path)
    other = make_other()
    before = params_of(other)

    with pytest.raises(ValueError) as error:
        restore_checkpoint(path, other, SGD(other.parameters(), lr=0.1))

    for fragment in fragments:
        assert fragment in str(error.value), f"{name}: {fragment!r} not in {error.value}"
    for key, value in before.items():
        np.testing.assert_array_equal(other.state_dict()[key], value, err_msg=f"{name}: {key}")


def test_resume_other_optimizer(tmp_path):
    path = tmp_path / "run.npz"
    write_checkpoint(path)
    model = make_model(0)

    with pytest.raises(ValueError, match="SGD optimizer, but the given optimizer is Adam"):
        restore_checkpoint(path, model, Adam(model.parameters()))


def test_resume_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.npz"
    save(make_model(0).state_dict(), path)

    with pytest.raises(ValueError, match="not a training checkpoint"):
        restore_checkpoint(path, make_model(0))


def test_resume_corrupt_checkpoint(tmp_path):
    path = tmp_path / "run.npz"
    path.write_bytes(b"PK\x03\x04 truncated")
    model = make_model(0)

    with pytest.raises(SerializationError, match="run.npz"):
        fit(model, SGD(model.parameters(), lr=0.1), ShuffledBatches(*make_data(), 16),
            epochs=1, checkpoint=path, resume=True, progress=False)


def test_restore_without_optimizer_loads_model(tmp_path):
    path = tmp_path / "run.npz"
    write_checkpoint(path)
    model = make_model(7)

    checkpoint = restore_checkpoint(path, model)

    np.testing.assert_array_equal(model.state_dict()["weight"], checkpoint["model"]["weight"])


# ---------------------------------------------------------------- evaluate


def test_evaluate_matches_manual():
    x, y = make_data()
    model = make_model(0)
    logits = x @ model.weight.data.T + model.bias.data
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    expected_loss = -log_probs[np.arange(len(y)), y].mean()
    expected_accuracy = (logits.argmax(axis=1) == y).mean()

    # Batches of 20, 20 and 8 check that the mean is weighted by batch size.
    loss, accuracy = evaluate(model, ShuffledBatches(x, y, 20, shuffle=False))

    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert accuracy == pytest.approx(expected_accuracy)


def test_evaluate_restores_training_mode():
    x, y = make_data()
    model = make_model(0)
    model.train()

    evaluate(model, ShuffledBatches(x, y, 16, shuffle=False))

    assert model.training is True


def test_evaluate_records_no_graph():
    x, y = make_data()
    model = make_model(0)

    evaluate(model, ShuffledBatches(x, y, 16, shuffle=False))

    assert model.weight.grad is None


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("epochs", [0, -1, 1.5, True, "3"])
def test_fit_bad_epochs(epochs):
    model = make_model(0)

    with pytest.raises(ValueError, match="epochs"):
        fit(model, SGD(model.parameters(), lr=0.1), ShuffledBatches(*make_data(), 16),
            epochs=epochs, progress=False)


def test_fit_resume_needs_checkpoint():
    model = make_model(0)

    with pytest.raises(ValueError, match="checkpoint"):
        fit(model, SGD(model.parameters(), lr=0.1), ShuffledBatches(*make_data(), 16),
            epochs=1, resume=True, progress=False)


def test_fit_empty_loader():
    model = make_model(0)

    with pytest.raises(ValueError, match="no batch"):
        fit(model, SGD(model.parameters(), lr=0.1), [], epochs=1, progress=False)


def test_fit_bad_batch():
    model = make_model(0)
    x, _ = make_data()

    with pytest.raises(ValueError, match="at least two elements"):
        fit(model, SGD(model.parameters(), lr=0.1), [Tensor(x)], epochs=1, progress=False)


def test_evaluate_empty_loader():
    with pytest.raises(ValueError, match="no batch"):
        evaluate(make_model(0), [])


def test_cross_entropy_default_loss():
    x, y = make_data()
    model = make_model(0)

    loss, _ = evaluate(model, [(Tensor(x), Tensor(y))])

    assert loss == pytest.approx(F.cross_entropy(model(Tensor(x)), Tensor(y)).item())


@pytest.mark.parametrize("seed", [None, 3], ids=["engine-rng", "loader-seed"])
def test_resume_with_data_loader(tmp_path, seed):
    x, y = make_data()

    def make_loader():
        dataset = TensorDataset(Tensor(x), Tensor(y))
        return DataLoader(dataset, batch_size=8, shuffle=True, seed=seed)

    model = make_model(0)
    fit(model, Adam(model.parameters(), lr=0.05), make_loader(), epochs=3, progress=False)
    expected = params_of(model)

    path = tmp_path / "run.npz"
    model = make_model(0)
    fit(model, Adam(model.parameters(), lr=0.05), make_loader(), epochs=2, checkpoint=path,
        progress=False)
    resumed = make_model(99)
    fit(resumed, Adam(resumed.parameters(), lr=0.05), make_loader(), epochs=3, checkpoint=path,
        resume=True, progress=False)

    for name, value in expected.items():
        np.testing.assert_array_equal(resumed.state_dict()[name], value, err_msg=name)
