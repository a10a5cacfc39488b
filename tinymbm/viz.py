"""Plots a learner would rather look at than read: histories, images, filters, confusion.

Every function returns a matplotlib ``Figure``; ``tinymbm.lesson.save_figure``
writes it as PNG. The Agg backend is used when there is no display.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

if not os.environ.get("DISPLAY") and "MPLBACKEND" not in os.environ:
    os.environ["MPLBACKEND"] = "Agg"

import matplotlib

if not os.environ.get("DISPLAY"):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure


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
    """Plot one curve, e.g. the loss of every training step."""
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.plot(np.asarray(values))
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def plot_images(images: Any, labels: Sequence[Any] | None = None, columns: int = 8, title: str = "") -> Figure:
    """Show a grid of grey-scale images, (N, H, W) or (N, 1, H, W), with optional captions."""
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
    """Show the first input channel of each kernel of a conv weight (out, in, kH, kW)."""
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
    """Plot a confusion matrix with its counts written in the cells."""
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
    """Draw one bar per named value, with the value written on top."""
    figure, axes = plt.subplots(figsize=(6, 3.8))
    names = list(values)
    bars = axes.bar(names, [values[n] for n in names], color=["#4c72b0", "#dd8452", "#55a868", "#c44e52"][: len(names)])
    for bar, name in zip(bars, names):
        axes.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{values[name]:.3f}", ha="center", va="bottom")
    axes.set(ylabel=ylabel, title=title)
    figure.tight_layout()
    return figure


def plot_heatmap(values: Any, xlabel: str, ylabel: str, title: str = "", cmap: str = "viridis") -> Figure:
    """Plot a 2-D array as a heat map with a colour bar (e.g. gate activations over time × units)."""
    figure, axes = plt.subplots(figsize=(7, 3.8))
    image = axes.imshow(_array(values), aspect="auto", cmap=cmap)
    figure.colorbar(image, ax=axes)
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    figure.tight_layout()
    return figure


def draw_graph(output: Any, path: Any = None, steps: Sequence[Any] | None = None,
               names: Mapping[str, Any] | None = None) -> Figure:
    """Draw the graph that produced ``output`` with matplotlib (no graphviz needed).

    Each op is a box with its name and output shape; each leaf shows its name
    (from ``names``, e.g. ``dict(model.named_parameters())``) and shape. After
    backward, a leaf shows the norm of its ``.grad``; an op shows the norm of
    the gradient that reached it when ``steps`` (the records of
    ``tm.autograd.backward_steps``) are passed. Saves a PNG when ``path`` is given.
    """
    labels = {id(tensor): label for label, tensor in (names or {}).items()}
    arriving = {}
    for step in steps or []:
        if step.node is not None:
            arriving[id(step.node)] = step.grad_output_norms

    # Collect every node and leaf once, and the edges input -> op.
    boxes: dict[int, dict] = {}
    edges: list[tuple[int, int]] = []
    root = output.grad_fn if output.grad_fn is not None else output
    queue = [root]
    while queue:
        item = queue.pop(0)
        key = id(item)
        if key in boxes:
            continue
        if hasattr(item, "function"):
            norms = arriving.get(key)
            text = f"{item.function.__name__}\n{tuple(item.output_shapes[0])}"
            if norms:
                text += f"\n|grad| {norms[0]:.3g}"
            boxes[key] = {"text": text, "depth": 0, "leaf": False}
            for tensor in item.inputs:
                if tensor is None:
                    continue
                child = tensor.grad_fn if tensor.grad_fn is not None else tensor
                edges.append((id(child), key))
                queue.append(child)
        else:
            text = f"{labels.get(key, 'leaf')}\n{tuple(item.shape)}"
            if item.grad is not None:
                text += f"\n|grad| {float(np.linalg.norm(item.grad)):.3g}"
            boxes[key] = {"text": text, "depth": 0, "leaf": True,
                          "requires_grad": item.requires_grad}

    # Depth = the longest path of ops from the output, so that every input sits
    # below all of its consumers even in a diamond. Consumers are settled first
    # (Kahn's order over the edges op -> input).
    consumers_left = {key: 0 for key in boxes}
    inputs_of: dict[int, list[int]] = {key: [] for key in boxes}
    for child, parent in edges:
        consumers_left[child] += 1
        inputs_of[parent].append(child)
    ready = [id(root)]
    while ready:
        key = ready.pop()
        for child in inputs_of[key]:
            boxes[child]["depth"] = max(boxes[child]["depth"], boxes[key]["depth"] + 1)
            consumers_left[child] -= 1
            if consumers_left[child] == 0:
                ready.append(child)

    levels: dict[int, list[int]] = {}
    for key, box in boxes.items():
        levels.setdefault(box["depth"], []).append(key)
    depth_count = max(levels) + 1 if levels else 1
    width = max(len(keys) for keys in levels.values()) if levels else 1
    figure, axes = plt.subplots(figsize=(max(6, 2.3 * width), max(3, 1.5 * depth_count)))
    positions = {}
    for depth, keys in levels.items():
        for order, key in enumerate(keys):
            positions[key] = ((order + 1) / (len(keys) + 1), 1 - (depth + 0.5) / depth_count)

    for child, parent in edges:
        (x0, y0), (x1, y1) = positions[child], positions[parent]
        axes.annotate("", xy=(x1, y1), xytext=(x0, y0),
                      arrowprops={"arrowstyle": "->", "color": "0.5", "shrinkA": 18, "shrinkB": 18})
    for key, box in boxes.items():
        x, y = positions[key]
        if not box["leaf"]:
            colour = "#fde9c9"
        elif box.get("requires_grad"):
            colour = "#d3e8d3"
        else:
            colour = "#e8e8e8"
        axes.text(x, y, box["text"], ha="center", va="center", fontsize=8,
                  bbox={"boxstyle": "round", "facecolor": colour, "edgecolor": "0.4"})
    axes.set_axis_off()
    axes.set_title("computation graph (arrows point from inputs to ops)")
    if path is not None:
        from tinymbm.lesson import save_figure

        save_figure(figure, os.path.dirname(str(path)) or ".", os.path.basename(str(path)))
    return figure


def plot_grad_flow(names: Sequence[str], mean: Any, maximum: Any, title: str = "gradient flow") -> Figure:
    """Mean and maximum |gradient| per layer, over training steps (arrays (steps, layers)).

    Layers whose curves fall by orders of magnitude towards the input are
    where gradients vanish; a log scale makes that visible.
    """
    mean = np.asarray(mean)
    maximum = np.asarray(maximum)
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    for index, name in enumerate(names):
        left.plot(mean[:, index] + 1e-30, label=name)
    left.set(yscale="log", xlabel="training step", ylabel="mean |grad|", title=f"{title}: mean per layer")
    left.legend(fontsize=7)
    right.bar(range(len(names)), maximum.max(axis=0), alpha=0.4, label="max |grad|")
    right.bar(range(len(names)), mean.mean(axis=0), alpha=0.8, label="mean |grad|")
    right.set_xticks(range(len(names)))
    right.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    right.set(yscale="log", ylabel="|grad|", title="averaged over steps")
    # Log-scale bars start at the lower y limit. Setting it one decade below the
    # smallest mean keeps the mean bars from looking like near-zero stubs.
    averaged = mean.mean(axis=0)
    if np.any(averaged > 0):
        right.set_ylim(bottom=averaged[averaged > 0].min() / 10)
    right.legend(fontsize=7)
    figure.tight_layout()
    return figure


def plot_grad_histograms(model: Any, bins: int = 60, title: str = "gradient histograms") -> Figure:
    """Plot one histogram of gradient values per parameter that has a gradient."""
    params = [(name, param.grad) for name, param in model.named_parameters() if param.grad is not None]
    columns = 3
    rows = max(1, int(np.ceil(len(params) / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(12, 2.6 * rows), squeeze=False)
    for ax, (name, grad) in zip(axes.ravel(), params):
        ax.hist(np.asarray(grad).ravel(), bins=bins, color="#4c72b0")
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(params):]:
        ax.axis("off")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_lstm_trace(trace: Mapping[str, Any], title: str = "LSTM over time") -> Figure:
    """Gate activations (time × units) and the norm of dL/dh_t per step, from ``inspect.lstm_trace``."""
    gates = trace["gates"]
    figure, axes = plt.subplots(1, 5, figsize=(18, 3.6))
    for ax, name in zip(axes, ("input", "forget", "cell", "output")):
        image = ax.imshow(np.asarray(gates[name]).T, aspect="auto", cmap="viridis",
                          vmin=-1 if name == "cell" else 0, vmax=1)
        ax.set(title=f"{name} gate", xlabel="time step t", ylabel="unit")
        figure.colorbar(image, ax=ax, fraction=0.046)
    axes[4].semilogy(np.asarray(trace["grad_norms"]) + 1e-30, marker="o", markersize=3)
    axes[4].set(title="|dL/dh_t|", xlabel="time step t")
    axes[4].grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_lines(x: Any, curves: Mapping[str, Sequence[float]], xlabel: str = "x", ylabel: str = "y",
               title: str = "", log_x: bool = False, log_y: bool = False) -> Figure:
    """Plot several named curves over the same x values, on linear or logarithmic axes.

    ``curves`` maps each curve's label to its y values (one per x value).
    """
    figure, axes = plt.subplots(figsize=(6.5, 4))
    x = _array(x)
    for label, values in curves.items():
        axes.plot(x, _array(values), label=label)
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if log_x:
        axes.set_xscale("log")
    if log_y:
        axes.set_yscale("log")
    axes.grid(alpha=0.3, which="both" if (log_x or log_y) else "major")
    axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def plot_image_row(images: Sequence[Any], titles: Sequence[str], title: str = "", cmap: str = "gray") -> Figure:
    """Plot 2-D arrays of any sizes side by side, each with its title and a colour bar.

    Useful to compare an image with what an op made of it (a pooled map, a gradient mask).
    """
    figure, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 3.2), squeeze=False)
    for ax, image, caption in zip(axes[0], images, titles):
        drawn_image = ax.imshow(_array(image), cmap=cmap)
        figure.colorbar(drawn_image, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(caption, fontsize=9)
        ax.axis("off")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_grad_norms_over_time(curves: Mapping[str, Any], title: str = "|dL/dh_t| over time") -> Figure:
    """Plot |dL/dh_t| against t = 1..T on a log scale, one curve per labelled sequence.

    ``curves`` maps a label (e.g. "T = 50") to the norms of one trace, shape (T,).
    The sequences may have different lengths T. Zeros (float32 underflow) are
    drawn at 1e-300 so that the log axis still shows them.
    """
    figure, axes = plt.subplots(figsize=(7, 4))
    for label, norms in curves.items():
        norms = _array(norms).astype(np.float64)
        axes.semilogy(np.arange(1, len(norms) + 1), np.maximum(norms, 1e-300), marker=".", markersize=3,
                      label=label)
    axes.set(xlabel="time step t", ylabel="|dL/dh_t|", title=title)
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def plot_captioned_images(images: Any, captions: Sequence[str], columns: int = 4, title: str = "") -> Figure:
    """Grey-scale images (N, H, W) or (N, 1, H, W), each above a multi-line text caption.

    Meant for paired data: an image with the tokens that came with it.
    """
    images = _array(images)
    if images.ndim == 4:
        images = images[:, 0]
    rows = int(np.ceil(len(images) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 2.4, rows * 3.2), squeeze=False)
    for index, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if index < len(images):
            ax.imshow(images[index], cmap="gray", vmin=0.0, vmax=1.0)
            ax.text(0.5, -0.04, captions[index], transform=ax.transAxes, ha="center", va="top",
                    fontsize=7, family="monospace")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_spectrograms(features: Sequence[Any], titles: Sequence[str], columns: int = 5, title: str = "",
                      ylabel: str = "mel band") -> Figure:
    """Plot (T, F) spectrograms side by side, time along x and frequency band up, on one colour scale.

    Each array is drawn transposed, so band 0 (the lowest frequency) is at the bottom.
    """
    arrays = [_array(value) for value in features]
    low = min(float(array.min()) for array in arrays)
    high = max(float(array.max()) for array in arrays)
    rows = int(np.ceil(len(arrays) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 2.3, rows * 2.3), squeeze=False,
                                layout="constrained")
    drawn_image = None
    for index, ax in enumerate(axes.ravel()):
        if index >= len(arrays):
            ax.axis("off")
            continue
        drawn_image = ax.imshow(arrays[index].T, origin="lower", aspect="auto", cmap="magma", vmin=low, vmax=high)
        ax.set_title(titles[index], fontsize=8)
        ax.set_xlabel("frame", fontsize=7)
        if index % columns == 0:
            ax.set_ylabel(ylabel, fontsize=7)
        ax.tick_params(labelsize=6)
    if drawn_image is not None:
        figure.colorbar(drawn_image, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01)
    if title:
        figure.suptitle(title)
    return figure


def plot_grouped_bars(groups: Mapping[str, Mapping[str, float]], ylabel: str = "accuracy",
                      title: str = "") -> Figure:
    """Plot bars grouped by category, one colour per series, with each value written on its bar.

    ``groups`` maps a series label (e.g. "ours") to {category: value}. A category
    that a series lacks gets no bar in that series.
    """
    series = list(groups)
    categories = list(dict.fromkeys(category for values in groups.values() for category in values))
    width = 0.8 / max(len(series), 1)
    figure, axes = plt.subplots(figsize=(1.8 + 1.6 * len(categories), 3.8))
    for number, label in enumerate(series):
        positions = [index + (number - (len(series) - 1) / 2) * width
                     for index, category in enumerate(categories) if category in groups[label]]
        values = [groups[label][category] for category in categories if category in groups[label]]
        bars = axes.bar(positions, values, width=width, label=label)
        for bar, value in zip(bars, values):
            axes.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{value:.3f}", ha="center",
                      va="bottom", fontsize=7)
    axes.set_xticks(range(len(categories)))
    axes.set_xticklabels(categories)
    axes.set(ylabel=ylabel, title=title)
    # Headroom above the tallest bar keeps the legend off the bars.
    highest = max((value for values in groups.values() for value in values.values()), default=1.0)
    axes.set_ylim(0.0, 1.25 * highest if highest > 0 else 1.0)
    axes.legend(fontsize=8, loc="upper left", ncol=len(series))
    figure.tight_layout()
    return figure
