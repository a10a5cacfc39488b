"""Reverse-mode automatic differentiation.

Every differentiable op is a :class:`Function` with a ``forward`` that computes
on NumPy arrays and a ``backward`` that turns the gradient of the loss with
respect to the op's output into gradients with respect to its inputs (the
chain rule, one op at a time). ``Function.apply`` runs ``forward`` and, when
any input requires grad, records a :class:`Node` (the output's ``grad_fn``)
that remembers the inputs and the context saved for backward.

``Tensor.backward`` then walks those nodes in reverse topological order. A
node sends its gradient on only after every consumer of its output has added
its contribution, which is what makes shared subexpressions (a "diamond")
exact. The order is computed with an explicit stack, never recursion, so a
chain of 100,000 ops is as safe as a chain of three.
"""

from __future__ import annotations

import contextlib
import os
import traceback
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_grad_enabled = True
_anomaly_enabled = False


class no_grad(contextlib.ContextDecorator):
    """Context manager (and decorator) in which no op records a graph.

    Use it for evaluation and for parameter updates: results are plain
    tensors with ``requires_grad=False`` and nothing is saved for backward.
    """

    def __enter__(self) -> None:
        global _grad_enabled
        self._previous = _grad_enabled
        _grad_enabled = False

    def __exit__(self, *exc_info: object) -> None:
        global _grad_enabled
        _grad_enabled = self._previous


class enable_grad(contextlib.ContextDecorator):
    """Context manager that turns graph recording back on inside ``no_grad``."""

    def __enter__(self) -> None:
        global _grad_enabled
        self._previous = _grad_enabled
        _grad_enabled = True

    def __exit__(self, *exc_info: object) -> None:
        global _grad_enabled
        _grad_enabled = self._previous


def is_grad_enabled() -> bool:
    """Return True when ops record the graph for backward."""
    return _grad_enabled


class detect_anomaly(contextlib.ContextDecorator):
    """Raise on the first NaN or infinity that an op produces, forward or backward.

    Inside this context every op also remembers where in the user's code it was
    created, and the error names the op and that place.
    """

    def __enter__(self) -> None:
        global _anomaly_enabled
        self._previous = _anomaly_enabled
        _anomaly_enabled = True

    def __exit__(self, *exc_info: object) -> None:
        global _anomaly_enabled
        _anomaly_enabled = self._previous


class Context:
    """What a Function's forward leaves for its backward.

    ``save_for_backward(*arrays)`` stores arrays; ``saved_tensors`` returns them.
    Any other value can be stored as an attribute. ``needs_input_grad`` holds
    one bool per forward argument, so backward can skip gradients nobody needs.
    """

    def __init__(self, needs_input_grad: tuple[bool, ...] = ()) -> None:
        self.needs_input_grad = needs_input_grad
        self._saved: tuple | None = ()
        self._freed = False

    def save_for_backward(self, *arrays: Any) -> None:
        self._saved = arrays

    @property
    def saved_tensors(self) -> tuple:
        if self._freed:
            raise RuntimeError(_FREED_MESSAGE)
        return self._saved

    def free(self) -> None:
        """Drop everything saved for backward, keeping only the bookkeeping."""
        self.__dict__ = {"needs_input_grad": self.needs_input_grad, "_saved": None, "_freed": True}


_FREED_MESSAGE = (
    "Trying to backward through the graph a second time: the values saved for backward "
    "were freed after the first call. Pass retain_graph=True to the first backward() "
    "if you need to call it twice."
)


class Node:
    """One recorded op in the graph: the ``grad_fn`` of the tensors it produced.

    ``inputs`` holds, for each forward argument, the Tensor it was (or None for
    arguments that are not tensors). Hooks and ``retain_grad`` requests of the
    op's outputs are kept here, keyed by output index.
    """

    def __init__(self, function: type, ctx: Context, inputs: tuple, num_outputs: int) -> None:
        self.function = function
        self.ctx = ctx
        self.inputs = inputs
        self.num_outputs = num_outputs
        self.output_shapes: list[tuple] = []
        self.output_dtypes: list[np.dtype] = []
        self.hooks: dict[int, list[Callable]] = {}
        self.retained: dict[int, weakref.ref] = {}
        self.created_at: str | None = None

    @property
    def name(self) -> str:
        return f"{self.function.__name__}Backward"

    @property
    def next_functions(self) -> tuple:
        """The nodes (or leaf tensors) that this node sends gradient to."""
        result = []
        for tensor in self.inputs:
            if tensor is None or not tensor.requires_grad:
                continue
            result.append(tensor.grad_fn if tensor.grad_fn is not None else tensor)
        return tuple(result)

    def __repr__(self) -> str:
        return f"<{self.name}>"


class Function:
    """Base class of every differentiable op.

    Subclasses define two static methods::

        @staticmethod
        def forward(ctx, *args):        # tensors arrive as numpy arrays
            ...                         # return one array or a tuple of arrays

        @staticmethod
        def backward(ctx, *grad_outputs):   # one array per output
            ...                             # return one gradient (or None) per forward argument

    and are called through ``apply``. The engine sums a returned gradient back
    to its input's shape where the input was broadcast, and casts it to the
    input's dtype, so float32 stays float32.
    """

    @staticmethod
    def forward(ctx: Context, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Context, *grad_outputs: np.ndarray) -> Any:
        raise NotImplementedError

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        from tinymbm.tensor import Tensor

        arrays = [arg.data if isinstance(arg, Tensor) else arg for arg in args]
        needs_input_grad = tuple(isinstance(arg, Tensor) and arg.requires_grad for arg in args)
        ctx = Context(needs_input_grad)

        output = cls.forward(ctx, *arrays, **kwargs)
        outputs = output if isinstance(output, tuple) else (output,)
        outputs = tuple(np.asarray(value) for value in outputs)
        # Walking the stack is slow, so it happens only in anomaly mode, once per op.
        site = _creation_site() if _anomaly_enabled else None
        if _anomaly_enabled:
            _check_finite(outputs, f"Function '{cls.__name__}' returned", "output", site)

        node = None
        if _grad_enabled and any(needs_input_grad):
            inputs = tuple(arg if isinstance(arg, Tensor) else None for arg in args)
            node = Node(cls, ctx, inputs, len(outputs))
            node.output_shapes = [value.shape for value in outputs]
            node.output_dtypes = [value.dtype for value in outputs]
            node.created_at = site

        tensors = tuple(Tensor._from_op(value, node, index) for index, value in enumerate(outputs))
        return tensors if isinstance(output, tuple) else tensors[0]


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _creation_site() -> str:
    """Return 'file:line in function' of the innermost frame outside the tinymbm package.

    The test is on the package's own folder, not on the word "tinymbm" in a
    path, so a checkout that is itself named tinymbm still reports the user's line.
    """
    for frame in reversed(traceback.extract_stack()[:-1]):
        if not os.path.abspath(frame.filename).startswith(_PACKAGE_DIR):
            return f"{frame.filename}:{frame.lineno} in {frame.name}"
    return "unknown location"


def _check_finite(arrays: Sequence, prefix: str, what: str, where: str | None) -> None:
    for index, value in enumerate(arrays):
        if value is None or not np.issubdtype(np.asarray(value).dtype, np.inexact):
            continue
        if np.isnan(value).any():
            kind = "nan"
        elif np.isinf(value).any():
            kind = "inf"
        else:
            continue
        place = f" (op created at {where})" if where else ""
        raise RuntimeError(f"{prefix} {kind} values in its {what} {index}{place}")


def reduce_to_shape(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum a broadcast gradient back to ``shape``.

    Broadcasting copies an operand along new leading axes and along axes of
    size 1, so its gradient is the sum over exactly those axes.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra < 0:
        return np.broadcast_to(grad, shape)
    grad = grad.sum(axis=tuple(range(extra))) if extra else grad
    stretched = tuple(axis for axis, size in enumerate(shape) if size == 1 and grad.shape[axis] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad.reshape(shape)


@dataclass
class BackwardStep:
    """One node of a backward pass: what gradient arrived and what it sent on.

    ``grad_inputs`` has one entry per forward argument of the op (None where
    nothing was sent, e.g. for a constant or an int argument).
    """

    step: int
    op: str
    output_shapes: list
    grad_outputs: list
    grad_inputs: list
    input_shapes: list = field(default_factory=list)
    node: Any = field(default=None, repr=False)

    @staticmethod
    def _norm(array: np.ndarray | None) -> float | None:
        if array is None:
            return None
        return float(np.linalg.norm(np.asarray(array, dtype=np.float64).ravel()))

    @property
    def grad_output_norms(self) -> list:
        return [self._norm(g) for g in self.grad_outputs]

    @property
    def grad_input_norms(self) -> list:
        return [self._norm(g) for g in self.grad_inputs]

    def __str__(self) -> str:
        shapes = ", ".join(str(tuple(s)) for s in self.output_shapes)
        arriving = ", ".join(_format_norm(n) for n in self.grad_output_norms)
        leaving = ", ".join(_format_norm(n) for n in self.grad_input_norms if n is not None)
        return f"{self.step:>4}  {self.op:<22} out {shapes:<18} |grad in| {arriving:<12} |grads out| {leaving}"


def _format_norm(norm: float | None) -> str:
    return "-" if norm is None else f"{norm:.4g}"


def _topological_order(root: Node) -> list[Node]:
    """Return the nodes reachable from ``root``, every consumer before its producers.

    Depth-first post-order with an explicit stack (recursion would overflow on
    long chains), then reversed.
    """
    # BEGIN EXERCISE topological_sort: implement a depth-first post-order with an explicit stack, then reverse it
    order: list[Node] = []
    visited: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for tensor in node.inputs:
            if tensor is not None and tensor.grad_fn is not None and id(tensor.grad_fn) not in visited:
                stack.append((tensor.grad_fn, False))
    order.reverse()
    return order
    # END EXERCISE topological_sort


def _run_hooks(hooks: list[Callable], grad: np.ndarray) -> np.ndarray:
    from tinymbm.tensor import Tensor

    for hook in hooks:
        result = hook(Tensor(grad))
        if result is not None:
            replacement = np.asarray(result.data if isinstance(result, Tensor) else result, dtype=grad.dtype)
            if replacement.shape != grad.shape:
                raise RuntimeError(
                    f"hook {getattr(hook, '__name__', hook)!r} returned a gradient of shape "
                    f"{replacement.shape}, but the gradient it replaces has shape {grad.shape}"
                )
            grad = replacement
    return grad


def _accumulate_leaf(tensor: Any, grad: np.ndarray) -> None:
    grad = _run_hooks(tensor._hooks, grad) if tensor._hooks else grad
    if tensor.grad is None:
        tensor.grad = np.array(grad, dtype=tensor.dtype, copy=True)
    else:
        tensor.grad = tensor.grad + grad


def backward_steps(
    output: Any, gradient: Any = None, retain_graph: bool = False
) -> Iterator[BackwardStep]:
    """Perform backward one node at a time, yielding a :class:`BackwardStep` per node.

    Running the generator to the end leaves exactly the gradients that
    ``output.backward(gradient, retain_graph)`` leaves; stopping early leaves
    the gradients of the steps done so far.
    """
    from tinymbm.tensor import Tensor

    if not isinstance(output, Tensor):
        raise TypeError(f"backward: expected a Tensor, got {type(output).__name__}")
    if not output.requires_grad:
        raise RuntimeError(
            "backward: this tensor does not require grad and has no grad_fn, so there is "
            "nothing to differentiate. Create the inputs with requires_grad=True."
        )
    if gradient is None:
        if output.data.size != 1:
            raise RuntimeError(
                f"backward: grad can be implicitly created only for scalar outputs, but the "
                f"output has shape {output.shape}. Pass gradient= (an array of that shape) "
                f"or reduce the output first, e.g. output.sum().backward()."
            )
        seed = np.ones(output.shape, dtype=output.dtype)
    else:
        seed = np.asarray(gradient.data if isinstance(gradient, Tensor) else gradient, dtype=output.dtype)
        if seed.shape != output.shape:
            raise RuntimeError(
                f"backward: gradient has shape {seed.shape} but the output has shape {output.shape}"
            )

    if output.grad_fn is None:
        _accumulate_leaf(output, seed)
        return

    buffers: dict[int, list] = {id(output.grad_fn): [None] * output.grad_fn.num_outputs}
    buffers[id(output.grad_fn)][output._output_index] = seed

    step = 0
    for node in _topological_order(output.grad_fn):
        grads = buffers.pop(id(node), None)
        if grads is None:
            # Every gradient towards this node was None (e.g. an op that returns
            # no gradient for that input), so it does no work and gets no step number.
            continue
        if node.ctx._freed:
            raise RuntimeError(_FREED_MESSAGE)

        # An output that no op used still enters the backward formula, with gradient zero.
        grads = [
            np.zeros(shape, dtype=dtype) if grad is None else grad
            for grad, shape, dtype in zip(grads, node.output_shapes, node.output_dtypes)
        ]
        for index, hooks in node.hooks.items():
            grads[index] = _run_hooks(hooks, grads[index])
        for index, tensor_ref in node.retained.items():
            tensor = tensor_ref()
            if tensor is not None:
                tensor.grad = grads[index].copy() if tensor.grad is None else tensor.grad + grads[index]

        grad_inputs = node.function.backward(node.ctx, *grads)
        if not isinstance(grad_inputs, tuple):
            grad_inputs = (grad_inputs,)
        if len(grad_inputs) != len(node.inputs):
            raise RuntimeError(
                f"{node.name} returned {len(grad_inputs)} gradients but its forward took "
                f"{len(node.inputs)} arguments"
            )
        if _anomaly_enabled:
            _check_finite(
                grad_inputs, f"Function '{node.name}' returned", "gradient for input", node.created_at
            )

        sent = []
        for tensor, grad in zip(node.inputs, grad_inputs):
            if tensor is None or grad is None or not tensor.requires_grad:
                sent.append(None)
                continue
            grad = reduce_to_shape(np.asarray(grad), tensor.shape)
            if grad.dtype != tensor.dtype:
                grad = grad.astype(tensor.dtype)
            sent.append(grad)
            if tensor.grad_fn is None:
                _accumulate_leaf(tensor, grad)
                continue
            slots = buffers.setdefault(id(tensor.grad_fn), [None] * tensor.grad_fn.num_outputs)
            index = tensor._output_index
            slots[index] = grad if slots[index] is None else slots[index] + grad

        record = BackwardStep(
            step=step,
            op=node.function.__name__,
            output_shapes=list(node.output_shapes),
            grad_outputs=grads,
            grad_inputs=sent,
            input_shapes=[None if t is None else t.shape for t in node.inputs],
            node=node,
        )
        if not retain_graph:
            node.ctx.free()
        step += 1
        yield record


def backward(output: Any, gradient: Any = None, retain_graph: bool = False) -> None:
    """Accumulate d(output)/d(leaf) into ``.grad`` of every leaf that requires grad."""
    for _ in backward_steps(output, gradient, retain_graph):
        pass


class GradcheckError(RuntimeError):
    """An analytic gradient disagrees with its numerical estimate."""


def gradcheck(
    fn: Callable,
    inputs: Any,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    max_elements: int = 400,
    seed: int = 0,
) -> bool:
    """Compare backward's gradients with float64 central differences.

    For each input x that requires grad and each checked element j::

        numerical_j = (L(x + eps e_j) - L(x - eps e_j)) / (2 eps)
        L(x)        = sum(fn(x) * v)

    where v is 1 for a scalar output and a fixed random upstream gradient
    otherwise, so a non-scalar op's backward is checked without building a
    loss. The check passes when ``|analytic - numerical| <= atol + rtol *
    |numerical|`` everywhere. Inputs are copied to float64 first (central
    differences in float32 are too coarse). An input with more than
    ``max_elements`` elements is checked on a random sample of that many.

    Returns True, or raises :class:`GradcheckError` naming the input, the
    element index and both values.
    """
    from tinymbm.tensor import Tensor

    single = isinstance(inputs, Tensor)
    originals = (inputs,) if single else tuple(inputs)
    copies = []
    for value in originals:
        if isinstance(value, Tensor) and np.issubdtype(value.dtype, np.floating):
            copies.append(Tensor(value.data.astype(np.float64), requires_grad=value.requires_grad))
        else:
            copies.append(value)
    checked = [i for i, value in enumerate(copies) if isinstance(value, Tensor) and value.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad, so there is nothing to check")

    def scalar_loss() -> float:
        result = fn(*copies)
        result = result[0] if isinstance(result, tuple) else result
        return float(np.sum(result.data.astype(np.float64) * upstream))

    output = fn(*copies)
    output = output[0] if isinstance(output, tuple) else output
    rng = np.random.default_rng(seed)
    upstream = np.ones(output.shape) if output.data.size == 1 else rng.standard_normal(output.shape)
    if output.requires_grad:
        output.backward(np.asarray(upstream, dtype=output.dtype))

    with no_grad():
        for position in checked:
            tensor = copies[position]
            analytic = tensor.grad if tensor.grad is not None else np.zeros(tensor.shape)
            flat = tensor.data.reshape(-1)
            indices = np.arange(flat.size)
            if flat.size > max_elements:
                indices = np.sort(rng.choice(flat.size, size=max_elements, replace=False))
            for flat_index in indices:
                original = flat[flat_index]
                flat[flat_index] = original + eps
                plus = scalar_loss()
                flat[flat_index] = original - eps
                minus = scalar_loss()
                flat[flat_index] = original
                numerical = (plus - minus) / (2 * eps)
                value = float(analytic.reshape(-1)[flat_index])
                if not abs(value - numerical) <= atol + rtol * abs(numerical):
                    index = np.unravel_index(flat_index, tensor.shape)
                    raise GradcheckError(
                        f"gradcheck: input {position} (shape {tensor.shape}) element "
                        f"{tuple(int(i) for i in index)}: analytic gradient {value:.10g} but "
                        f"numerical {numerical:.10g} (difference {abs(value - numerical):.3g}, "
                        f"tolerance {atol + rtol * abs(numerical):.3g})"
                    )
    return True

