"""Convolution layers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tinymbm import functional as F
from tinymbm.nn import init
from tinymbm.nn.module import Module, Parameter
from tinymbm.tensor import Tensor


class Conv2d(Module):
    """y = conv2d(x, weight) + bias, a 2-D cross-correlation with zero padding (see ``F.conv2d``).

    Args:
        in_channels: C, the channels of the input.
        out_channels: F, the channels of the output (one filter each).
        kernel_size: int or pair (KH, KW).
        stride: int or pair (sh, sw).
        padding: int or pair (ph, pw) of zeros added on each side.
        bias: whether to learn the additive bias.

    Shapes: x (N, C, H, W) -> y (N, F, OH, OW) with OH = (H + 2·ph - KH) // sh + 1
    and OW = (W + 2·pw - KW) // sw + 1. ``weight`` is (F, C, KH, KW) and
    ``bias`` (F,), both drawn from U(-1/√fan_in, 1/√fan_in) with
    fan_in = C·KH·KW, as PyTorch does.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        name = "Conv2d"
        for label, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"{name}: {label} must be a positive int, got {value!r}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = F._pair(name, "kernel_size", kernel_size)
        self.stride = F._pair(name, "stride", stride)
        self.padding = F._pair(name, "padding", padding)
        F._check_positive(name, "kernel_size", self.kernel_size, kernel_size)
        F._check_positive(name, "stride", self.stride, stride)
        F._check_padding(name, self.padding, padding)

        shape = (self.out_channels, self.in_channels, *self.kernel_size)
        self.weight = Parameter(np.empty(shape, dtype=np.float32))
        if bias:
            self.bias = Parameter(np.empty(self.out_channels, dtype=np.float32))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init.calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in)
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Any) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.bias is None:
            text += ", bias=False"
        return text
