"""Module backward hooks: ``hook(module, grad_input, grad_output)``.

A module's inputs and output are routed through identity ops. The output's
identity sees dL/d(output) first; the inputs' identity runs once the
gradients of all the module's inputs are complete (every consumer inside the
module comes earlier in the backward order), and then calls the hooks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinymbm.autograd import Context, Function
from tinymbm.tensor import Tensor


class BackwardHookTracker:
    """Carries dL/d(output) of one module call to the hooks that run on its inputs."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self.grad_output: tuple | None = None
        self.inputs_wrapped = False

    def wrap_inputs(self, args: tuple) -> tuple:
        positions = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]
        if not positions:
            return args
        self.inputs_wrapped = True
        wrapped = _HookedInputs.apply(self, *(args[i] for i in positions))
        wrapped = wrapped if isinstance(wrapped, tuple) else (wrapped,)
        args = list(args)
        for i, tensor in zip(positions, wrapped):
            args[i] = tensor
        return tuple(args)

    def wrap_output(self, output: Any) -> Any:
        if not isinstance(output, Tensor) or not output.requires_grad:
            return output
        return _HookedOutput.apply(self, output)

    def call_hooks(self, grad_input: tuple) -> tuple:
        for hook in list(self.module._backward_hooks):
            result = hook(self.module, grad_input, self.grad_output)
            if result is not None:
                grad_input = tuple(result)
        return grad_input


class _HookedOutput(Function):
    @staticmethod
    def forward(ctx: Context, tracker: BackwardHookTracker, y: np.ndarray) -> np.ndarray:
        ctx.tracker = tracker
        return y

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        tracker = ctx.tracker
        tracker.grad_output = (Tensor(g),)
        if not tracker.inputs_wrapped:
            tracker.call_hooks((None,))
        return None, g


class _HookedInputs(Function):
    @staticmethod
    def forward(ctx: Context, tracker: BackwardHookTracker, *xs: np.ndarray) -> Any:
        ctx.tracker = tracker
        return xs if len(xs) > 1 else xs[0]

    @staticmethod
    def backward(ctx: Context, *grads: np.ndarray) -> tuple:
        grad_input = ctx.tracker.call_hooks(tuple(Tensor(g) for g in grads))
        arrays = [g.data if isinstance(g, Tensor) else g for g in grad_input]
        return (None, *arrays)
