"""Pooling layers."""

from __future__ import annotations

from typing import Any

from tinymbm import functional as F
from tinymbm.nn.module import Module
from tinymbm.tensor import Tensor


class MaxPool2d(Module):
    """y = the maximum of every window of x (see ``F.max_pool2d`` for the rules on padding, ties and NaN).

    Args:
        kernel_size: int or pair (KH, KW), the window size.
        stride: int or pair (sh, sw); None (the default) means kernel_size.
        padding: int or pair (ph, pw), at most half the window on each axis.

    Shapes: x (N, C, H, W) -> y (N, C, OH, OW) with OH = (H + 2·ph - KH) // sh + 1
    and OW = (W + 2·pw - KW) // sw + 1. The layer has no parameters. As in
    PyTorch, the attributes keep the values as given (an int stays an int).
    """

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0) -> None:
        super().__init__()
        name = "MaxPool2d"
        kernel_pair = F._pair(name, "kernel_size", kernel_size)
        stride_pair = kernel_pair if stride is None else F._pair(name, "stride", stride)
        padding_pair = F._pair(name, "padding", padding)
        F._check_positive(name, "kernel_size", kernel_pair, kernel_size)
        F._check_positive(name, "stride", stride_pair, stride)
        F._check_padding(name, padding_pair, padding)
        if 2 * padding_pair[0] > kernel_pair[0] or 2 * padding_pair[1] > kernel_pair[1]:
            raise ValueError(f"{name}: padding {padding!r} must be at most half of kernel_size {kernel_size!r}")

        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding

    def forward(self, x: Any) -> Tensor:
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
