"""Activation and reshaping layers, thin wrappers over the functional ops."""

from __future__ import annotations

from typing import Any

from tinymbm import functional as F
from tinymbm.nn.module import Module
from tinymbm.tensor import Tensor


class ReLU(Module):
    """y = max(x, 0), elementwise."""

    def forward(self, x: Any) -> Tensor:
        return F.relu(x)


class Sigmoid(Module):
    """y = 1 / (1 + e⁻ˣ), elementwise."""

    def forward(self, x: Any) -> Tensor:
        return F.sigmoid(x)


class Tanh(Module):
    """y = tanh x, elementwise."""

    def forward(self, x: Any) -> Tensor:
        return F.tanh(x)


class Softmax(Module):
    """y = softmax(x) along ``dim``."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Any) -> Tensor:
        return F.softmax(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """y = log softmax(x) along ``dim``."""

    def forward(self, x: Any) -> Tensor:
        return F.log_softmax(x, self.dim)


class Flatten(Module):
    """Merge the axes ``start_dim`` .. ``end_dim`` into one: (N, C, H, W) -> (N, C·H·W)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, x: Any) -> Tensor:
        return F.flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
