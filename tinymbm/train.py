"""A training loop with progress bars, histories, checkpoints and resuming.

``fit`` runs the loop a lesson would otherwise write by hand::

    for epoch in range(epochs):
        for *inputs, targets in train_loader:
            optimizer.zero_grad()
            loss = loss_fn(model(*inputs), targets)
            loss.backward()
            optimizer.step()

and adds what a real run needs: a tqdm progress bar with the running loss, loss and
accuracy histories for the training and validation sets, and a checkpoint written
after every epoch from which ``fit(..., resume=True)`` continues.

A batch is a tuple or list whose last element is the targets and whose other elements
are the model's inputs, so ``(images, labels)`` calls ``model(images)`` and
``(images, sequences, labels)`` calls ``model(images, sequences)``.

A checkpoint also stores the state of the engine's random generator
(``tinymbm.random``) and, for a loader that owns a ``numpy.random.Generator`` (a
``DataLoader`` built with a ``seed``), that generator's state. Shuffling after a
resume therefore draws the same batches as a run that was never interrupted.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from tqdm import tqdm

import tinymbm.functional as F
from tinymbm import random as tm_random
from tinymbm import serialization
from tinymbm.autograd import no_grad
from tinymbm.tensor import Tensor

__all__ = ["evaluate", "fit", "restore_checkpoint", "save_checkpoint"]

# Keys of a checkpoint written by ``save_checkpoint``.
CHECKPOINT_KEYS = ("model", "optimizer", "optimizer_type", "epoch", "history", "rng")

HISTORY_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc")


# ---------------------------------------------------------------- batches


def _split_batch(batch: Any) -> tuple[list[Tensor], Any]:
    """Split a batch into the model's inputs (all elements but the last) and targets."""
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise ValueError(
            "a batch must be a tuple (inputs..., targets) of at least two elements, got "
            f"{type(batch).__name__}"
            + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
        )

    inputs = [item if isinstance(item, Tensor) else Tensor(item) for item in batch[:-1]]
    return inputs, batch[-1]


def _as_array(value: Any) -> np.ndarray:
    return value.data if isinstance(value, Tensor) else np.asarray(value)


def _count_correct(output: Tensor, targets: Any) -> int | None:
    """Return how many rows of ``output`` (N, C) have their maximum at the target class.

    Returns None when the batch is not a classification batch (output not 2-D, or
    targets not a 1-D integer array of length N), so no accuracy is recorded.
    """
    scores = output.data
    labels = _as_array(targets)
    if scores.ndim != 2 or labels.ndim != 1 or labels.dtype.kind not in "iu":
        return None
    if labels.shape[0] != scores.shape[0]:
        return None
    return int((scores.argmax(axis=1) == labels).sum())


def _batch_size(targets: Any) -> int:
    labels = _as_array(targets)
    return int(labels.shape[0]) if labels.ndim > 0 else 1


# ---------------------------------------------------------------- evaluation


def evaluate(
    model: Any, loader: Iterable, loss_fn: Callable = F.cross_entropy
) -> tuple[float, float]:
    """Return the mean loss and the accuracy of ``model`` over every batch of ``loader``.

    The model runs in eval mode and without recording a graph. Its previous mode is
    restored afterwards. The loss is the mean over samples, Σ_batches loss_b · N_b / Σ N_b,
    which assumes that ``loss_fn`` returns the mean over its batch (the default
    ``reduction="mean"``). The accuracy is the fraction of samples whose highest
    score is the target class, or NaN if the batches are not classification batches.

    Raises:
        ValueError: ``loader`` yields no batch.
    """
    was_training = getattr(model, "training", True)
    model.eval()

    loss_sum = 0.0
    correct = 0
    samples = 0
    classification = True
    try:
        with no_grad():
            for batch in loader:
                inputs, targets = _split_batch(batch)
                output = model(*inputs)
                loss = loss_fn(output, targets)

                size = _batch_size(targets)
                loss_sum += float(loss.item()) * size
                samples += size

                batch_correct = _count_correct(output, targets)
                if batch_correct is None:
                    classification = False
                else:
                    correct += batch_correct
    finally:
        model.train(was_training)

    if samples == 0:
        raise ValueError("evaluate: the loader yielded no batch")

    accuracy = correct / samples if classification else math.nan
    return loss_sum / samples, accuracy


# ---------------------------------------------------------------- checkpoints


def _loader_generator(loader: Any) -> np.random.Generator | None:
    """Return the loader's own shuffling generator, or None if it uses the engine's."""
    # tinymbm.data.DataLoader(seed=...) keeps its generator in ``_rng``. Other loaders
    # may expose one as ``generator``, the attribute name PyTorch uses.
    for name in ("generator", "_rng"):
        generator = getattr(loader, name, None)
        if isinstance(generator, np.random.Generator):
            return generator
    return None


def save_checkpoint(path: str | os.PathLike, model: Any, optimizer: Any, epoch: int,
                    history: dict[str, list[float]], train_loader: Any = None) -> None:
    """Write a training checkpoint to ``path`` with ``tinymbm.save``.

    The checkpoint is a dict with the keys ``"model"`` and ``"optimizer"`` (the state
    dicts), ``"optimizer_type"`` (the optimizer's class name), ``"epoch"`` (completed
    epochs), ``"history"`` and ``"rng"`` (the engine's generator state). A loader with
    its own generator (see ``_loader_generator``) adds ``"loader_rng"``, its state.
    """
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "optimizer_type": type(optimizer).__name__,
        "epoch": int(epoch),
        "history": {key: list(values) for key, values in history.items()},
        "rng": tm_random.get_state(),
    }
    loader_generator = _loader_generator(train_loader)
    if loader_generator is not None:
        checkpoint["loader_rng"] = loader_generator.bit_generator.state

    serialization.save(checkpoint, path)


def _check_model_state(model: Any, saved: dict[str, np.ndarray], path: str) -> None:
    """Raise ValueError listing missing keys, unexpected keys and shape differences."""
    current = model.state_dict()

    missing = [key for key in current if key not in saved]
    unexpected = [key for key in saved if key not in current]
    mismatched = [
        f"{key}: checkpoint {tuple(np.shape(saved[key]))}, model {tuple(current[key].shape)}"
        for key in current
        if key in saved and tuple(np.shape(saved[key])) != tuple(current[key].shape)
    ]
    if not (missing or unexpected or mismatched):
        return

    lines = [f"the checkpoint {path!r} was saved from a different model:"]
    if missing:
        lines.append("  missing keys (in the model, not in the checkpoint): " + ", ".join(missing))
    if unexpected:
        lines.append(
            "  unexpected keys (in the checkpoint, not in the model): " + ", ".join(unexpected)
        )
    if mismatched:
        lines.append("  shapes that differ: " + "; ".join(mismatched))
    raise ValueError("\n".join(lines))


def restore_checkpoint(path: str | os.PathLike, model: Any, optimizer: Any = None,
                       train_loader: Any = None) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` into a model and optimizer.

    Loads the model's parameters and, when given, the optimizer's state. With an
    optimizer, the engine's random generator and the loader's generator are restored
    too, because a resumed run needs them to shuffle as the interrupted run would
    have. Returns the whole checkpoint dict (``"epoch"``, ``"history"``, ...).

    Raises:
        FileNotFoundError: no file at ``path``.
        SerializationError: the file is damaged.
        ValueError: the file is not a training checkpoint, or it was saved from a
            model with other parameter names or shapes, or from another optimizer
            class. Nothing is loaded in that case.
    """
    path = os.fspath(path)
    checkpoint = serialization.load(path)

    if not isinstance(checkpoint, dict) or not all(key in checkpoint for key in CHECKPOINT_KEYS):
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(
            f"{path!r} is not a training checkpoint: expected the keys "
            f"{list(CHECKPOINT_KEYS)}, found {found}"
        )

    _check_model_state(model, checkpoint["model"], path)
    if optimizer is not None and checkpoint["optimizer_type"] != type(optimizer).__name__:
        raise ValueError(
            f"the checkpoint {path!r} contains the state of a "
            f"{checkpoint['optimizer_type']} optimizer, but the given optimizer is "
            f"{type(optimizer).__name__}"
        )

    # The optimizer is loaded first because its load_state_dict checks everything
    # before it changes anything. The model's keys and shapes were checked above.
    if optimizer is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
    model.load_state_dict(checkpoint["model"])
    if optimizer is None:
        return checkpoint

    tm_random.set_state(checkpoint["rng"])
    loader_generator = _loader_generator(train_loader)
    if loader_generator is not None and "loader_rng" in checkpoint:
        loader_generator.bit_generator.state = checkpoint["loader_rng"]
    return checkpoint


# ---------------------------------------------------------------- training


def _train_one_epoch(model: Any, optimizer: Any, loader: Iterable, loss_fn: Callable,
                     bar: tqdm) -> tuple[float, float]:
    """Run one pass over ``loader``, one step per batch, and return (mean loss, accuracy)."""
    model.train()

    loss_sum = 0.0
    correct = 0
    samples = 0
    classification = True
    for batch_index, batch in enumerate(loader):
        inputs, targets = _split_batch(batch)

        optimizer.zero_grad()
        output = model(*inputs)
        loss = loss_fn(output, targets)

        loss_value = float(loss.item())
        if not math.isfinite(loss_value):
            # A step with this loss's gradients would spread NaN or infinity through
            # the weights, so the run stops before the step.
            raise FloatingPointError(
                f"fit: the loss became {loss_value} at batch {batch_index}. Lower the "
                "learning rate or check the inputs for NaN or infinite values"
            )

        loss.backward()
        optimizer.step()

        size = _batch_size(targets)
        loss_sum += loss_value * size
        samples += size
        batch_correct = _count_correct(output, targets)
        if batch_correct is None:
            classification = False
        else:
            correct += batch_correct

        postfix = {"loss": f"{loss_sum / samples:.4f}"}
        if classification:
            postfix["acc"] = f"{correct / samples:.3f}"
        bar.set_postfix(postfix)
        bar.update(1)

    if samples == 0:
        raise ValueError("fit: the training loader yielded no batch")
    return loss_sum / samples, (correct / samples if classification else math.nan)


def fit(
    model: Any,
    optimizer: Any,
    train_loader: Iterable,
    epochs: int,
    loss_fn: Callable = F.cross_entropy,
    val_loader: Iterable | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, list[float]]:
    """Train ``model`` for ``epochs`` epochs and return the loss and accuracy histories.

    Args:
        model: a Module. A batch ``(x1, ..., xk, y)`` is fed as ``model(x1, ..., xk)``.
        optimizer: an optimizer over the model's parameters.
        train_loader: an iterable of batches, iterated once per epoch.
        epochs: total number of epochs, counting those done before a resume.
        loss_fn: ``loss_fn(output, targets)`` returning the batch's mean loss as a
            scalar Tensor. Defaults to ``F.cross_entropy``.
        val_loader: batches for :func:`evaluate` after each epoch, or None.
        checkpoint: file written after every epoch (see :func:`save_checkpoint`),
            or None to write none.
        resume: continue from ``checkpoint`` if that file exists. The model, the
            optimizer, the histories, and the random generators are restored,
            and training goes on at the next epoch. If the file does not exist,
            training starts at epoch 1 and prints a message about it.
        progress: show a tqdm progress bar per epoch.

    Returns:
        ``{"train_loss": [...], "train_acc": [...], "val_loss": [...], "val_acc": [...]}``,
        one entry per completed epoch. The validation lists stay empty without a
        ``val_loader``. An accuracy is NaN when the batches are not classification
        batches (2-D scores and 1-D integer class targets).

    Raises:
        ValueError: ``epochs`` is not a positive int, ``resume`` is set without a
            ``checkpoint``, a loader yields no batch, or the checkpoint does not fit
            the model or optimizer.
        FloatingPointError: the training loss becomes NaN or infinite.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"fit: epochs must be a positive int, got {epochs!r}")
    if resume and checkpoint is None:
        raise ValueError("fit: resume=True needs a checkpoint path to resume from")

    history: dict[str, list[float]] = {key: [] for key in HISTORY_KEYS}
    start_epoch = 0
    if resume and os.path.exists(checkpoint):
        saved = restore_checkpoint(checkpoint, model, optimizer, train_loader)
        start_epoch = saved["epoch"]
        history = {key: list(saved["history"].get(key, [])) for key in HISTORY_KEYS}
        tqdm.write(f"fit: resumed from {os.fspath(checkpoint)!r} after epoch {start_epoch}")
    elif resume:
        tqdm.write(f"fit: no checkpoint at {os.fspath(checkpoint)!r}, starting at epoch 1")

    for epoch in range(start_epoch, epochs):
        total = len(train_loader) if hasattr(train_loader, "__len__") else None
        with tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress,
                  unit="batch") as bar:
            train_loss, train_acc = _train_one_epoch(model, optimizer, train_loader, loss_fn, bar)
            history["train_loss"].append(train_loss)
            history["train_acc"].append(train_acc)

            if val_loader is not None:
                val_loss, val_acc = evaluate(model, val_loader, loss_fn)
                history["val_loss"].append(val_loss)
                history["val_acc"].append(val_acc)
                bar.set_postfix(loss=f"{train_loss:.4f}", val_loss=f"{val_loss:.4f}",
                                val_acc=f"{val_acc:.3f}")

        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, epoch + 1, history, train_loader)

    return history
