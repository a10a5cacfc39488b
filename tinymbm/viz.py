"""Plots a learner would rather look at than read: histories, images, filters, confusion.

Every function returns a matplotlib ``Figure``; ``tinymbm.lesson.save_figure``
writes it as PNG. The Agg backend is used when there is no display.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

if not os.environ.get("DISPLAY") and "MPLBACKEND" not in os.environ:
    os.environ["MPLBACKEND"] = "Agg"

import matplotlib  # noqa: E402

if not os.environ.get("DISPLAY"):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def _array(value: Any) -> np.ndarray:
    return np.asarray(value.data if hasattr(value, "data") and not isinstance(value, np.ndarray) else value)


def plot_history(histories: Mapping[str, Mapping[str, Sequence[float]]], title: str = "") -> Figure:
    """Loss and accuracy per epoch for one or more runs.

    ``histories`` maps a run's label to a dict with any of the keys
    ``train_loss``, ``val_loss``, ``train_acc``, ``val_acc`` (lists, one value per epoch).
    """
    figure, (loss_axes, acc_axes) = plt.subplots(1, 2, figsize=(10, 3.8))
    for label, history in histories.items():
        for key, style in (("train_loss", "-"), ("val_loss", "--")):
            if history.get(key):
                epochs = np.arange(1, len(history[key]) + 1)
                loss_axes.plot(epochs, history[key], style, marker="o", label=f"{label} {key.split('_')[0]}")
        for key, style in (("train_acc", "-"), ("val_acc", "--")):
            if history.get(key):
                epochs = np.arange(1, len(history[key]) + 1)
                acc_axes.plot(epochs, history[key], style, marker="o", label=f"{label} {key.split('_')[0]}")
    loss_axes.set(xlabel="epoch", ylabel="loss", title="loss")
    acc_axes.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for axes in (loss_axes, acc_axes):
        axes.grid(alpha=0.3)
        if axes.lines:
            axes.legend(fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_curve(values: Sequence[float], xlabel: str = "step", ylabel: str = "loss", title: str = "") -> Figure:
    """One curve, e.g. the loss of every training step."""
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.plot(np.asarray(values))
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def plot_images(images: Any, labels: Sequence[Any] | None = None, columns: int = 8, title: str = "") -> Figure:
    """A grid of grey-scale images, (N, H, W) or (N, 1, H, W), with optional captions."""
    images = _array(images)
    if images.ndim == 4:
        images = images[:, 0]
    rows = int(np.ceil(len(images) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.2, rows * 1.35), squeeze=False)
    for index, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if index < len(images):
            ax.imshow(images[index], cmap="gray")
            if labels is not None:
                ax.set_title(str(labels[index]), fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_filters(weight: Any, max_filters: int = 64, title: str = "convolution filters") -> Figure:
    """The first input channel of each kernel of a conv weight (out, in, kH, kW)."""
    weight = _array(weight)[:max_filters, 0]
    columns = 8
    rows = int(np.ceil(len(weight) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.0, rows * 1.0), squeeze=False)
    limit = np.abs(weight).max() or 1.0
    for index, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if index < len(weight):
            ax.imshow(weight[index], cmap="coolwarm", vmin=-limit, vmax=limit)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_feature_maps(maps: Any, max_maps: int = 32, title: str = "feature maps") -> Figure:
    """Channels of one sample's feature maps, (C, H, W) or (1, C, H, W)."""
    maps = _array(maps)
    if maps.ndim == 4:
        maps = maps[0]
    maps = maps[:max_maps]
    columns = 8
    rows = int(np.ceil(len(maps) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.1, rows * 1.1), squeeze=False)
    for index, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if index < len(maps):
            ax.imshow(maps[index], cmap="viridis")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def confusion_matrix(targets: Any, predictions: Any, num_classes: int) -> np.ndarray:
    """Counts M[i, j] of examples of class i predicted as class j."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (_array(targets).astype(np.int64), _array(predictions).astype(np.int64)), 1)
    return matrix


def plot_confusion(matrix: np.ndarray, classes: Sequence[Any] | None = None, title: str = "confusion matrix") -> Figure:
    """A confusion matrix with its counts written in the cells."""
    matrix = np.asarray(matrix)
    classes = list(range(len(matrix))) if classes is None else list(classes)
    figure, axes = plt.subplots(figsize=(5.5, 5))
    axes.imshow(matrix, cmap="Blues")
    axes.set(xticks=range(len(classes)), yticks=range(len(classes)), xticklabels=classes, yticklabels=classes,
             xlabel="predicted", ylabel="true", title=title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(len(matrix)):
        for j in range(len(matrix)):
            axes.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                      color="white" if matrix[i, j] > threshold else "black")
    figure.tight_layout()
    return figure


def plot_bars(values: Mapping[str, float], ylabel: str = "accuracy", title: str = "") -> Figure:
    """One bar per named value, with the value written on top."""
    figure, axes = plt.subplots(figsize=(6, 3.8))
    names = list(values)
    bars = axes.bar(names, [values[n] for n in names], color=["#4c72b0", "#dd8452", "#55a868", "#c44e52"][: len(names)])
    for bar, name in zip(bars, names):
        axes.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{values[name]:.3f}", ha="center", va="bottom")
    axes.set(ylabel=ylabel, title=title)
    figure.tight_layout()
    return figure


def plot_heatmap(values: Any, xlabel: str, ylabel: str, title: str = "", cmap: str = "viridis") -> Figure:
    """A 2-D array as a heat map with a colour bar (e.g. gate activations over time × units)."""
    figure, axes = plt.subplots(figsize=(7, 3.8))
    image = axes.imshow(_array(values), aspect="auto", cmap=cmap)
    figure.colorbar(image, ax=axes)
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    figure.tight_layout()
    return figure
