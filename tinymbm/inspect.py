"""Look inside a backward pass: the graph as text, gradient tables, gradient flow, LSTM traces.

- :func:`explain` prints the recorded graph of a tensor as an indented tree.
- :func:`gradient_table` lists each parameter's gradient statistics after backward.
- :class:`GradientFlowRecorder` keeps, for every training step, the mean and
  maximum absolute gradient of each layer, to watch gradients flow, vanish or explode.
- :func:`lstm_trace` runs an ``nn.LSTM`` step by step and returns its gate
  activations and the norm of dL/dh_t for every time step t.

Step-by-step backward itself is ``tm.autograd.backward_steps``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tinymbm import functional as F
from tinymbm.autograd import Node, enable_grad
from tinymbm.errors import ShapeError
from tinymbm.tensor import Tensor


def _describe_leaf(tensor: Tensor, names: dict[int, str]) -> str:
    name = names.get(id(tensor), "leaf")
    flag = "requires_grad" if tensor.requires_grad else "constant"
    return f"{name} {tuple(tensor.shape)} {tensor.dtype} {flag}"


def explain(output: Tensor, names: dict[str, Tensor] | None = None) -> str:
    """Return the graph that produced ``output`` as an indented tree of ops.

    Each op line shows the op's name and its output's shape and dtype; each
    leaf line shows its shape, dtype and whether it requires grad. ``names``
    maps labels to leaf tensors (``dict(model.named_parameters())`` works), so
    leaves print by name. A node reached a second time is printed once more
    with "(shared, see above)" instead of its subtree.
    """
    labels = {id(tensor): label for label, tensor in (names or {}).items()}
    lines: list[str] = []
    if output.grad_fn is None:
        return _describe_leaf(output, labels)

    seen: set[int] = set()
    # Each stack entry: (node or tensor, prefix for its line, prefix for its children).
    stack: list[tuple[Any, str, str]] = [(output, "", "")]
    while stack:
        item, line_prefix, child_prefix = stack.pop()
        if isinstance(item, Tensor) and item.grad_fn is None:
            lines.append(line_prefix + _describe_leaf(item, labels))
            continue
        if item is None:
            lines.append(line_prefix + "constant")
            continue

        node: Node = item.grad_fn if isinstance(item, Tensor) else item
        index = item._output_index if isinstance(item, Tensor) else 0
        shape = tuple(node.output_shapes[index])
        dtype = node.output_dtypes[index]
        if id(node) in seen:
            lines.append(f"{line_prefix}{node.function.__name__} {shape} {dtype} (shared, see above)")
            continue
        seen.add(id(node))
        lines.append(f"{line_prefix}{node.function.__name__} {shape} {dtype}")

        children = [tensor for tensor in node.inputs if tensor is not None]
        entries = []
        for position, child in enumerate(children):
            last = position == len(children) - 1
            entries.append((child, child_prefix + ("└─ " if last else "├─ "), child_prefix + ("   " if last else "│  ")))
        stack.extend(reversed(entries))
    return "\n".join(lines)


def gradient_table(model: Any) -> str:
    """Return a table of every parameter's shape, value norm and gradient statistics."""
    rows = [f"{'parameter':<28} {'shape':<18} {'|w|':>10} {'|grad|':>10} {'mean|g|':>10} {'max|g|':>10}"]
    for name, param in model.named_parameters():
        weight_norm = float(np.linalg.norm(param.data))
        if param.grad is None:
            rows.append(f"{name:<28} {tuple(param.shape)!s:<18} {weight_norm:>10.4g} {'-':>10} {'-':>10} {'-':>10}")
            continue
        grad = np.abs(param.grad)
        rows.append(
            f"{name:<28} {tuple(param.shape)!s:<18} {weight_norm:>10.4g} "
            f"{float(np.linalg.norm(param.grad)):>10.4g} {float(grad.mean()):>10.4g} {float(grad.max()):>10.4g}"
        )
    return "\n".join(rows)


class GradientFlowRecorder:
    """Record, after each backward, the mean and maximum |gradient| of every weight.

    Call :meth:`record` once per training step, after ``loss.backward()``
    and before ``optimizer.zero_grad()``. Biases are skipped by default: the
    weights show the flow more clearly. A bias is a parameter whose own name
    (after the last dot) starts with "bias", so ``fc.bias`` and the LSTM's
    ``bias_ih_l0`` both count.
    """

    def __init__(self, model: Any, include_bias: bool = False) -> None:
        self.names = [name for name, param in model.named_parameters()
                      if include_bias or not name.rsplit(".", 1)[-1].startswith("bias")]
        self._params = dict(model.named_parameters())
        self.mean: list[list[float]] = []
        self.max: list[list[float]] = []

    def record(self) -> None:
        """Append this step's mean and max |grad| per weight (0 for a weight without a gradient)."""
        means, maxima = [], []
        for name in self.names:
            grad = self._params[name].grad
            values = np.abs(grad) if grad is not None else np.zeros(1)
            means.append(float(values.mean()))
            maxima.append(float(values.max()))
        self.mean.append(means)
        self.max.append(maxima)

    def as_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (mean, max), each of shape (steps, layers)."""
        return np.array(self.mean), np.array(self.max)


def _lstm_gates(x: np.ndarray, h: np.ndarray, weight_ih: np.ndarray, weight_hh: np.ndarray,
                bias_ih: np.ndarray | None, bias_hh: np.ndarray | None) -> dict[str, np.ndarray]:
    """Return the activated gates i, f, g, o of one LSTM step (each (N, H))."""
    pre = x @ weight_ih.T + h @ weight_hh.T
    if bias_ih is not None:
        pre = pre + bias_ih + bias_hh
    i, f, g, o = np.split(pre, 4, axis=1)
    sigmoid: Callable = lambda v: 1 / (1 + np.exp(-v))
    return {"input": sigmoid(i), "forget": sigmoid(f), "cell": np.tanh(g), "output": sigmoid(o)}


def lstm_trace(lstm: Any, x: Any, loss_fn: Callable[[Tensor], Tensor] | None = None) -> dict[str, Any]:
    """Run the first layer of ``lstm`` one step at a time; return gates and dL/dh_t.

    Args:
        lstm: an ``nn.LSTM`` (its layer 0 is traced) or an ``nn.LSTMCell``.
        x: one input sequence, (T, input_size), or a batch (N, T, input_size).
        loss_fn: maps the last hidden state h_T (N, H) to a scalar loss; by
            default the sum of h_T, so dL/dh_t measures how much step t
            still influences the end of the sequence.

    Returns:
        ``{"gates": {"input"|"forget"|"cell"|"output": (T, H)}, "grad_norms": (T,),
        "hidden": (T, H)}``, gates and hidden states of the first sequence of the batch,
        and the norm of dL/dh_t over the batch for every step t.

    The input is always read batch first, whatever ``lstm.batch_first`` says.
    The gradients that this backward adds to the LSTM's weights are removed
    again, so a training loop's ``.grad`` values are left as they were.
    """
    data = np.asarray(x.data if isinstance(x, Tensor) else x)
    if data.ndim == 2:
        data = data[None]
    suffix = "_l0" if hasattr(lstm, "weight_ih_l0") else ""
    weights = [getattr(lstm, f"{name}{suffix}", None) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    weight_ih, weight_hh, bias_ih, bias_hh = weights
    if weight_ih is None or weight_hh is None:
        raise TypeError(
            f"lstm_trace: expected an nn.LSTM or nn.LSTMCell (with weight_ih_l0 or weight_ih), "
            f"got {type(lstm).__name__}"
        )
    input_size = weight_ih.shape[1]
    if data.ndim != 3 or data.shape[2] != input_size:
        raise ShapeError(
            f"lstm_trace: expected x of shape (T, {input_size}) or (N, T, {input_size}), "
            f"got {data.shape}"
        )
    if data.shape[1] == 0:
        raise ShapeError(f"lstm_trace: the sequence has no time steps (x shape {data.shape})")
    dtype = weight_ih.dtype
    batch, steps, _ = data.shape
    hidden_size = weight_hh.shape[1]

    # h_0 requires grad so that dL/dh_t exists even when the weights are frozen.
    h = Tensor(np.zeros((batch, hidden_size), dtype=dtype), requires_grad=True)
    c = Tensor(np.zeros((batch, hidden_size), dtype=dtype))
    hidden_states: list[Tensor] = []
    gates = {name: [] for name in ("input", "forget", "cell", "output")}
    # The trace needs the graph even when the caller is inside tm.no_grad().
    with enable_grad():
        for t in range(steps):
            x_t = Tensor(data[:, t].astype(dtype))
            step_gates = _lstm_gates(x_t.data, h.data, weight_ih.data, weight_hh.data,
                                     None if bias_ih is None else bias_ih.data,
                                     None if bias_hh is None else bias_hh.data)
            for name, value in step_gates.items():
                gates[name].append(value[0])
            h, c = F.lstm_cell(x_t, (h, c), weight_ih, weight_hh, bias_ih, bias_hh)
            h.retain_grad()
            hidden_states.append(h)

        # Backward would add into the parameters' .grad; keep what a training loop put there.
        saved_grads = [None if w is None else w.grad for w in weights]
        loss = loss_fn(h) if loss_fn is not None else h.sum()
        loss.backward()
    for weight, grad in zip(weights, saved_grads):
        if weight is not None:
            weight.grad = grad
    grad_norms = np.array([
        0.0 if state.grad is None else float(np.linalg.norm(state.grad)) for state in hidden_states
    ])
    return {
        "gates": {name: np.stack(values) for name, values in gates.items()},
        "grad_norms": grad_norms,
        "hidden": np.stack([state.data[0] for state in hidden_states]),
    }
