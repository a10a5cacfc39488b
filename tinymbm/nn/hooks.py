"""Module backward hooks: ``hook(module, grad_input, grad_output)``.

A module's inputs and output are routed through identity ops. The output's
identity sees dL/d(output) first; the inputs' identity runs once the
gradients of all the module's inputs are complete (every consumer inside the
module comes earlier in the backward order), and then calls the hooks. When
no input requires grad, nothing is routed on the input side, so the hooks run
as soon as dL/d(output) arrives, with ``grad_input`` all None, as in PyTorch.

``grad_input`` has one entry per positional argument of ``forward`` and
``grad_output`` one per top-level element of its result (a single tensor counts
as one), each a Tensor or None where the entry is not a tensor that requires
grad. ``nn.LSTM`` returns ``(output, (h_n, c_n))``, so its ``grad_output`` is
``(dL/d(output), None)``: tensors nested deeper are not routed, as in PyTorch.
An output that the loss does not use gets a zero gradient here (PyTorch passes None).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinymbm.autograd import Context, Function
from tinymbm.tensor import Tensor


def _grad_positions(items: tuple) -> list[int]:
    return [i for i, item in enumerate(items) if isinstance(item, Tensor) and item.requires_grad]


def _pack(positions: list[int], count: int, grads: tuple) -> tuple:
    """Place the gradients of the routed entries at their positions, None elsewhere."""
    packed: list[Tensor | None] = [None] * count
    for position, grad in zip(positions, grads):
        packed[position] = Tensor(grad)
    return tuple(packed)


class BackwardHookTracker:
    """Carries dL/d(output) of one module call to the hooks that run on its inputs."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self.grad_output: tuple | None = None
        self.inputs_wrapped = False
        self.input_count = 0
        self.input_positions: list[int] = []
        self.output_count = 0
        self.output_positions: list[int] = []

    def wrap_inputs(self, args: tuple) -> tuple:
        self.input_count = len(args)
        positions = _grad_positions(args)
        if not positions:
            return args
        self.inputs_wrapped = True
        self.input_positions = positions
        wrapped = _HookedInputs.apply(self, *(args[i] for i in positions))
        wrapped = wrapped if isinstance(wrapped, tuple) else (wrapped,)
        args = list(args)
        for i, tensor in zip(positions, wrapped):
            args[i] = tensor
        return tuple(args)

    def wrap_output(self, output: Any) -> Any:
        is_tuple = isinstance(output, tuple)
        items = output if is_tuple else (output,)
        positions = _grad_positions(items)
        if not positions:
            return output
        self.output_count = len(items)
        self.output_positions = positions

        wrapped = _HookedOutput.apply(self, *(items[i] for i in positions))
        wrapped = wrapped if isinstance(wrapped, tuple) else (wrapped,)
        if not is_tuple:
            return wrapped[0]
        items = list(items)
        for i, tensor in zip(positions, wrapped):
            items[i] = tensor
        # A named tuple is rebuilt field by field; a plain tuple from the list.
        return type(output)(*items) if hasattr(output, "_fields") else tuple(items)

    def call_hooks(self, grad_input: tuple) -> tuple:
        for hook in list(self.module._backward_hooks):
            result = hook(self.module, grad_input, self.grad_output)
            if result is None:
                continue
            result = tuple(result)
            if len(result) != len(grad_input):
                raise RuntimeError(
                    f"backward hook of {type(self.module).__name__} returned {len(result)} "
                    f"gradients, expected {len(grad_input)} (one per forward argument, or None)"
                )
            grad_input = result
        return grad_input


class _HookedOutput(Function):
    @staticmethod
    def forward(ctx: Context, tracker: BackwardHookTracker, *ys: np.ndarray) -> Any:
        ctx.tracker = tracker
        return ys if len(ys) > 1 else ys[0]

    @staticmethod
    def backward(ctx: Context, *grads: np.ndarray) -> tuple:
        tracker = ctx.tracker
        tracker.grad_output = _pack(tracker.output_positions, tracker.output_count, grads)
        if not tracker.inputs_wrapped:
            tracker.call_hooks((None,) * tracker.input_count)
        return (None, *grads)


class _HookedInputs(Function):
    @staticmethod
    def forward(ctx: Context, tracker: BackwardHookTracker, *xs: np.ndarray) -> Any:
        ctx.tracker = tracker
        return xs if len(xs) > 1 else xs[0]

    @staticmethod
    def backward(ctx: Context, *grads: np.ndarray) -> tuple:
        tracker = ctx.tracker
        grad_input = tracker.call_hooks(_pack(tracker.input_positions, tracker.input_count, grads))
        arrays = [grad_input[i] for i in tracker.input_positions]
        return (None, *[g.data if isinstance(g, Tensor) else g for g in arrays])
