"""Recurrent layers: ``LSTMCell`` (one step) and ``LSTM`` (stacked layers over a sequence).

Notation: N batch, T time steps (seq_len), I input size, H hidden size, L
number of layers. At step t a layer reads x_t (N, I) and its state (h, c),
each (N, H), and computes, with its weights W_ih (4H, I) and W_hh (4H, H) and
its biases b_ih and b_hh (4H,)::

    gates = x_t @ W_ih.T + b_ih + h @ W_hh.T + b_hh          (N, 4H)
    i = σ(gates[:, 0:H])        input gate
    f = σ(gates[:, H:2H])       forget gate
    g = tanh(gates[:, 2H:3H])   cell candidate
    o = σ(gates[:, 3H:4H])      output gate
    c' = f ⊙ c + i ⊙ g
    h' = o ⊙ tanh(c')

Names, shapes, the gate order i, f, g, o and the initial distribution
U(-1/√H, 1/√H) of every parameter are PyTorch's, so a PyTorch state dict,
converted to NumPy arrays, loads into these modules and gives the same
outputs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tinymbm import functional as F
from tinymbm.errors import DTypeError, ShapeError
from tinymbm.nn import init
from tinymbm.nn.module import Module, Parameter
from tinymbm.tensor import Tensor


def _check_size(owner: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")
    return int(value)


class LSTMCell(Module):
    """One LSTM step: ``h', c' = cell(x, (h, c))``, with the equations of this module's docstring.

    Args:
        input_size: I, the number of features of x.
        hidden_size: H, the size of h and c.
        bias: whether to learn b_ih and b_hh.

    Parameters: ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias_ih`` and
    ``bias_hh`` (4H,), gates stacked i, f, g, o, all drawn from
    U(-1/√H, 1/√H).

    ``forward(x, hx=None)``: x is (N, I) or (I,); hx is the pair (h, c), each
    (N, H) or (H,), and None means zeros. Returns (h', c') of the same shape
    as h.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        self.input_size = _check_size("LSTMCell", "input_size", input_size)
        self.hidden_size = _check_size("LSTMCell", "hidden_size", hidden_size)
        self.bias = bool(bias)

        gates = 4 * self.hidden_size
        self.weight_ih = Parameter(np.empty((gates, self.input_size), dtype=np.float32))
        self.weight_hh = Parameter(np.empty((gates, self.hidden_size), dtype=np.float32))
        if bias:
            self.bias_ih = Parameter(np.empty(gates, dtype=np.float32))
            self.bias_hh = Parameter(np.empty(gates, dtype=np.float32))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.hidden_size)
        for parameter in self.parameters():
            init.uniform_(parameter, -bound, bound)

    def forward(self, x: Any, hx: Any = None) -> tuple[Tensor, Tensor]:
        return F.lstm_cell(x, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        return text if self.bias else text + ", bias=False"


class LSTM(Module):
    """L stacked LSTM layers run over a whole sequence.

    Layer 0 reads the input sequence and layer k > 0 reads the hidden states
    of layer k - 1; each step follows the equations of this module's docstring.

    Args:
        input_size: I, the number of features of each step of the input.
        hidden_size: H, the size of h and c in every layer.
        num_layers: L, the number of stacked layers.
        bias: whether each layer learns b_ih and b_hh.
        batch_first: if True, the input and output are (N, T, ·) instead of
            (T, N, ·). The states h and c are (L, N, H) either way.

    Parameters of layer k: ``weight_ih_l{k}`` (4H, I for k = 0, else H),
    ``weight_hh_l{k}`` (4H, H), ``bias_ih_l{k}`` and ``bias_hh_l{k}`` (4H,),
    gates stacked i, f, g, o, all drawn from U(-1/√H, 1/√H).

    ``forward(x, hx=None)``: x is (T, N, I), or (N, T, I) with batch_first.
    hx is the pair (h0, c0), each (L, N, H), and None means zeros. Returns
    ``output, (h_n, c_n)``: output (T, N, H), or (N, T, H) with batch_first,
    contains the last layer's hidden state at every step, and h_n and c_n
    (L, N, H) contain every layer's state after the last step.

    As in PyTorch, a single sequence may also come without a batch dimension:
    x (T, I), whatever batch_first says, with h0 and c0 (L, H), gives output
    (T, H) and h_n, c_n (L, H).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
    ) -> None:
        super().__init__()
        self.input_size = _check_size("LSTM", "input_size", input_size)
        self.hidden_size = _check_size("LSTM", "hidden_size", hidden_size)
        self.num_layers = _check_size("LSTM", "num_layers", num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)

        gates = 4 * self.hidden_size
        for k in range(self.num_layers):
            layer_input = self.input_size if k == 0 else self.hidden_size
            shapes = {"weight_ih": (gates, layer_input), "weight_hh": (gates, self.hidden_size)}
            if bias:
                shapes.update(bias_ih=(gates,), bias_hh=(gates,))
            for name, shape in shapes.items():
                setattr(self, f"{name}_l{k}", Parameter(np.empty(shape, dtype=np.float32)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.hidden_size)
        for parameter in self.parameters():
            init.uniform_(parameter, -bound, bound)

    def _layer_parameters(self, k: int) -> tuple:
        """Return (weight_ih, weight_hh, bias_ih, bias_hh) of layer k, None for absent biases."""
        weights = (getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}"))
        if not self.bias:
            return (*weights, None, None)
        return (*weights, getattr(self, f"bias_ih_l{k}"), getattr(self, f"bias_hh_l{k}"))

    def _check_input(self, x: Tensor) -> None:
        if self.batch_first:
            layout = "(batch, seq_len, input_size)"
        else:
            layout = "(seq_len, batch, input_size)"
        if x.dtype.kind != "f":
            raise DTypeError(
                f"LSTM: input must be a floating tensor (float32 or float64), got dtype "
                f"{x.dtype}. Convert it first, e.g. with .float()"
            )
        if x.ndim not in (2, 3):
            raise ShapeError(
                f"LSTM: expected a 3-D input {layout} or a 2-D input (seq_len, input_size) "
                f"for a single sequence, got a {x.ndim}-D input of shape {x.shape}"
            )
        if x.shape[-1] != self.input_size:
            raise ShapeError(
                f"LSTM: input has {x.shape[-1]} features in its last dimension "
                f"(input shape {x.shape}) but input_size is {self.input_size}"
            )

    def _initial_state(self, hx: Any, batch: int, dtype: np.dtype) -> tuple[Tensor, Tensor]:
        expected = (self.num_layers, batch, self.hidden_size)
        if hx is None:
            return Tensor(np.zeros(expected, dtype=dtype)), Tensor(np.zeros(expected, dtype=dtype))

        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(
                f"LSTM: hx must be a pair (h0, c0) of tensors or None, got {type(hx).__name__}"
            )
        h0, c0 = (value if isinstance(value, Tensor) else Tensor(value) for value in hx)
        for label, state in (("h0", h0), ("c0", c0)):
            if state.dtype.kind != "f":
                raise DTypeError(
                    f"LSTM: {label} must be a floating tensor (float32 or float64), "
                    f"got dtype {state.dtype}"
                )
            if state.shape != expected:
                raise ShapeError(
                    f"LSTM: {label} has shape {state.shape}, expected {expected} = "
                    f"(num_layers, batch, hidden_size)"
                )
        return h0, c0

    def forward(self, x: Any, hx: Any = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        x = x if isinstance(x, Tensor) else Tensor(x)
        self._check_input(x)
        if x.ndim == 2:
            return self._forward_unbatched(x, hx)

        if self.batch_first:
            x = x.transpose(0, 1)
        h0, c0 = self._initial_state(hx, x.shape[1], x.dtype)

        layer_output = x
        h_n, c_n = [], []
        for k in range(self.num_layers):
            weights = self._layer_parameters(k)
            layer_output, (h, c) = F.lstm_layer(layer_output, (h0[k], c0[k]), *weights)
            h_n.append(h)
            c_n.append(c)

        if self.batch_first:
            layer_output = layer_output.transpose(0, 1)
        return layer_output, (F.stack(h_n), F.stack(c_n))

    def _forward_unbatched(self, x: Tensor, hx: Any) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Run one sequence x (T, I) as a batch of one. Its states are (L, H) on the way in and out."""
        steps = x.shape[0]
        states = None
        if hx is not None:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(
                    f"LSTM: hx must be a pair (h0, c0) of tensors or None, got {type(hx).__name__}"
                )
            h0, c0 = (value if isinstance(value, Tensor) else Tensor(value) for value in hx)
            expected = (self.num_layers, self.hidden_size)
            for label, state in (("h0", h0), ("c0", c0)):
                if state.shape != expected:
                    raise ShapeError(
                        f"LSTM: for a 2-D input (seq_len, input_size) of shape {x.shape}, {label} must "
                        f"be 2-D with shape {expected} = (num_layers, hidden_size), got {state.shape}"
                    )
            states = (h0.reshape(self.num_layers, 1, self.hidden_size), c0.reshape(self.num_layers, 1, self.hidden_size))

        # The batched path reads (T, N, I) unless batch_first is set, so the batch of
        # one goes in the position that batch_first expects.
        batched = x.reshape(1, steps, self.input_size) if self.batch_first else x.reshape(steps, 1, self.input_size)
        output, (h_n, c_n) = self.forward(batched, states)

        return (
            output.reshape(steps, self.hidden_size),
            (h_n.reshape(self.num_layers, self.hidden_size), c_n.reshape(self.num_layers, self.hidden_size)),
        )

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if not self.bias:
            text += ", bias=False"
        if self.batch_first:
            text += ", batch_first=True"
        return text
