"""Loss layers, thin wrappers over the functional losses."""

from __future__ import annotations

from typing import Any

from tinymbm import functional as F
from tinymbm.nn.module import Module
from tinymbm.tensor import Tensor


class _Loss(Module):
    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"{type(self).__name__}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}" if self.reduction != "mean" else ""


class CrossEntropyLoss(_Loss):
    """loss = -log softmax(input)[target], averaged (or summed) over the batch.

    input: (N, C) logits; target: (N,) integer class indices in [0, C).
    """

    def forward(self, input: Any, target: Any) -> Tensor:
        return F.cross_entropy(input, target, reduction=self.reduction)


class NLLLoss(_Loss):
    """loss = -input[target] for log-probabilities input (N, C)."""

    def forward(self, input: Any, target: Any) -> Tensor:
        return F.nll_loss(input, target, reduction=self.reduction)


class MSELoss(_Loss):
    """loss = (input - target)², averaged (or summed)."""

    def forward(self, input: Any, target: Any) -> Tensor:
        return F.mse_loss(input, target, reduction=self.reduction)
