"""Fully connected layers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tinymbm import functional as F
from tinymbm.nn import init
from tinymbm.nn.module import Module, Parameter
from tinymbm.tensor import Tensor


class Linear(Module):
    """y = x Wᵀ + b.

    Args:
        in_features: size of each input sample (the last axis of x).
        out_features: size of each output sample.
        bias: whether to learn the additive bias b.

    Shapes: x (..., in_features) -> y (..., out_features); ``weight`` is
    (out_features, in_features) and ``bias`` (out_features,), both drawn from
    U(-1/√in_features, 1/√in_features) as PyTorch does.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"Linear: {name} must be a positive int, got {value!r}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.weight = Parameter(np.empty((out_features, in_features), dtype=np.float32))
        if bias:
            self.bias = Parameter(np.empty(out_features, dtype=np.float32))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Any) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Identity(Module):
    """Return the input unchanged (a placeholder layer)."""

    def forward(self, x: Any) -> Any:
        return x
