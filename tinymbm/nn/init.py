"""Initial distributions for weights, as PyTorch draws them.

Every draw uses the engine's generator, so ``tm.manual_seed`` fixes them.
"""

from __future__ import annotations

import math

import numpy as np

from tinymbm import random as _random
from tinymbm.tensor import Tensor


def calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """Return (fan_in, fan_out): for a weight (out, in, *kernel), fan_in = in · ∏kernel."""
    if tensor.ndim < 2:
        raise ValueError(f"fan in and fan out need a tensor with at least 2 dimensions, got shape {tensor.shape}")
    receptive_field = int(np.prod(tensor.shape[2:])) if tensor.ndim > 2 else 1
    return tensor.shape[1] * receptive_field, tensor.shape[0] * receptive_field


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Fill ``tensor`` in place with samples of U(a, b)."""
    tensor.data = _random.generator().uniform(a, b, tensor.shape).astype(tensor.dtype)
    return tensor


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Fill ``tensor`` in place with samples of N(mean, std²)."""
    tensor.data = _random.generator().normal(mean, std, tensor.shape).astype(tensor.dtype)
    return tensor


def zeros_(tensor: Tensor) -> Tensor:
    tensor.data = np.zeros(tensor.shape, dtype=tensor.dtype)
    return tensor


def kaiming_uniform_(tensor: Tensor, a: float = math.sqrt(5)) -> Tensor:
    """Fill ``tensor`` with U(-bound, bound), bound = gain · √(3 / fan_in), gain = √(2 / (1 + a²)).

    With PyTorch's default a = √5 for Linear and Conv2d, bound = 1 / √fan_in.
    """
    fan_in, _ = calculate_fan_in_and_fan_out(tensor)
    gain = math.sqrt(2.0 / (1 + a * a))
    bound = gain * math.sqrt(3.0 / fan_in)
    return uniform_(tensor, -bound, bound)
