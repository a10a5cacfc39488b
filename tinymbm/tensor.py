"""The Tensor: a NumPy array plus what reverse-mode autograd needs.

A tensor is a *leaf* when the user made it (``grad_fn is None``); leaves that
require grad collect their gradient in ``.grad``, summed over every
``backward()`` call until someone clears it (this is why training loops call
``zero_grad()``). A tensor made by an op on tensors that require grad is a
*non-leaf*: its ``grad_fn`` is the recorded op, and its gradient is only
passed through, unless ``retain_grad()`` asks to keep it.

dtype rules, as in PyTorch: floating arrays keep their dtype (float32 or
float64); Python floats become float32; integers (Python ints, integer
arrays) become int64 and cannot require grad.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from tinymbm import autograd
from tinymbm import random as _random
from tinymbm.errors import DTypeError

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int64 = np.dtype(np.int64)
bool_ = np.dtype(np.bool_)

_DTYPE_NAMES = {"float": float32, "float32": float32, "double": float64, "float64": float64,
                "long": int64, "int64": int64, "bool": bool_}


def _resolve_dtype(dtype: Any) -> np.dtype:
    if isinstance(dtype, str) and dtype in _DTYPE_NAMES:
        return _DTYPE_NAMES[dtype]
    return np.dtype(dtype)


def _to_array(data: Any, dtype: Any = None) -> np.ndarray:
    """Convert ``data`` to an array following the engine's dtype rules."""
    if isinstance(data, Tensor):
        array = data.data
    elif isinstance(data, (list, tuple)) and any(isinstance(item, Tensor) for item in _flatten(data)):
        array = np.asarray(_unwrap_nested(data))
    else:
        array = data if isinstance(data, np.ndarray) else np.asarray(data)

    if dtype is not None:
        return array.astype(_resolve_dtype(dtype), copy=False)
    came_from_python = not isinstance(data, (np.ndarray, np.generic, Tensor))
    if array.dtype.kind == "f":
        if came_from_python or array.dtype == np.float16:
            return array.astype(np.float32)
        return array
    if array.dtype.kind in "iu":
        return array.astype(np.int64, copy=False)
    if array.dtype.kind == "b":
        return array
    raise DTypeError(f"tensor: unsupported data type {array.dtype} (expected floating, integer or bool data)")


def _flatten(items: Any) -> Iterator:
    for item in items:
        if isinstance(item, (list, tuple)):
            yield from _flatten(item)
        else:
            yield item


def _unwrap_nested(items: Any) -> Any:
    if isinstance(items, (list, tuple)):
        return [_unwrap_nested(item) for item in items]
    return items.data if isinstance(items, Tensor) else items


class RemovableHandle:
    """Returned by ``register_hook``; ``remove()`` unregisters the hook."""

    def __init__(self, hooks: list, hook: Callable) -> None:
        self._hooks = hooks
        self._hook = hook

    def remove(self) -> None:
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


class Tensor:
    """An n-dimensional array that records the ops applied to it.

    Attributes:
        data: the values, a ``numpy.ndarray``.
        grad: the accumulated gradient (same shape and dtype as ``data``) or None.
        requires_grad: whether ops on this tensor are recorded for backward.
        grad_fn: the op that produced this tensor (None for a leaf).
    """

    # Makes NumPy defer to Tensor's reflected operators in ``array * tensor``.
    __array_priority__ = 1000

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None) -> None:
        self.data: np.ndarray = _to_array(data, dtype)
        self.grad: np.ndarray | None = None
        self.grad_fn: autograd.Node | None = None
        self._output_index = 0
        self._hooks: list[Callable] = []
        self._requires_grad = False
        self.requires_grad = requires_grad

    @classmethod
    def _from_op(cls, data: np.ndarray, node: autograd.Node | None, index: int) -> Tensor:
        tensor = cls.__new__(cls)
        tensor.data = data
        tensor.grad = None
        tensor.grad_fn = node if node is not None and data.dtype.kind == "f" else None
        tensor._output_index = index
        tensor._hooks = []
        tensor._requires_grad = tensor.grad_fn is not None
        return tensor

    # ----------------------------------------------------------- attributes

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        if self.grad_fn is not None:
            raise RuntimeError(
                "requires_grad can only be changed on leaf tensors; use detach() to get a leaf"
            )
        if flag and self.data.dtype.kind != "f":
            raise DTypeError(
                f"Only floating point tensors can require gradients, but this tensor has dtype "
                f"{self.data.dtype}. Convert it first, e.g. t.float()."
            )
        self._requires_grad = bool(flag)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    def dim(self) -> int:
        return self.data.ndim

    def size(self, dim: int | None = None) -> Any:
        return self.data.shape if dim is None else self.data.shape[dim]

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    # ------------------------------------------------------------- autograd

    def backward(self, gradient: Any = None, retain_graph: bool = False) -> None:
        """Accumulate the gradient of this tensor into ``.grad`` of every leaf.

        ``gradient`` is dL/d(self); it may be omitted only for a single-element
        tensor, where it is 1. After the call the graph's saved values are
        freed unless ``retain_graph=True``.
        """
        autograd.backward(self, gradient, retain_graph)

    def retain_grad(self) -> None:
        """Keep this non-leaf tensor's gradient in ``.grad`` after backward."""
        if self.grad_fn is None:
            return
        import weakref

        self.grad_fn.retained[self._output_index] = weakref.ref(self)

    def register_hook(self, hook: Callable) -> RemovableHandle:
        """Call ``hook(grad)`` when this tensor's gradient is computed.

        The hook receives the gradient as a Tensor and may return a
        replacement. Returns a handle whose ``remove()`` unregisters it.
        """
        if not self.requires_grad:
            raise RuntimeError("register_hook: cannot register a hook on a tensor that does not require grad")
        if self.grad_fn is None:
            hooks = self._hooks
        else:
            hooks = self.grad_fn.hooks.setdefault(self._output_index, [])
        hooks.append(hook)
        return RemovableHandle(hooks, hook)

    def zero_grad(self) -> None:
        """Clear the accumulated gradient (sets ``.grad`` to None)."""
        self.grad = None

    def detach(self) -> Tensor:
        """Return a leaf sharing this tensor's data, outside the graph."""
        return Tensor(self.data)

    # ----------------------------------------------------------- conversion

    def numpy(self) -> np.ndarray:
        return self.data

    def item(self) -> Any:
        if self.data.size != 1:
            raise ValueError(
                f"item: only a tensor with one element can be converted to a Python scalar, "
                f"but this one has shape {self.shape}"
            )
        return self.data.reshape(()).item()

    def tolist(self) -> Any:
        return self.data.tolist()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.data if dtype is None else self.data.astype(dtype)

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __bool__(self) -> bool:
        return bool(self.item())

    def to(self, dtype: Any) -> Tensor:
        """Return this tensor in ``dtype`` (differentiable between floating types)."""
        return F.cast(self, _resolve_dtype(dtype))

    def float(self) -> Tensor:
        return self.to(float32)

    def double(self) -> Tensor:
        return self.to(float64)

    def long(self) -> Tensor:
        return self.to(int64)

    def clone(self) -> Tensor:
        return F.clone(self)

    def __repr__(self) -> str:
        body = np.array2string(self.data, separator=", ", precision=4, prefix="tensor(")
        extras = []
        if self.data.dtype not in (float32, int64, bool_):
            extras.append(f"dtype={self.data.dtype}")
        if self.grad_fn is not None:
            extras.append(f"grad_fn=<{self.grad_fn.name}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([body] + extras) + ")"

    __hash__ = object.__hash__

    # ------------------------------------------------------------ operators

    def __add__(self, other: Any) -> Tensor:
        return F.add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return F.add(other, self)

    def __sub__(self, other: Any) -> Tensor:
        return F.sub(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return F.sub(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return F.mul(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return F.mul(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return F.div(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return F.div(other, self)

    def __pow__(self, other: Any) -> Tensor:
        return F.pow(self, other)

    def __rpow__(self, other: Any) -> Tensor:
        return F.pow(other, self)

    def __matmul__(self, other: Any) -> Tensor:
        return F.matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return F.matmul(other, self)

    def __neg__(self) -> Tensor:
        return F.neg(self)

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return F.abs(self)

    def __getitem__(self, index: Any) -> Tensor:
        return F.getitem(self, index)

    def __setitem__(self, index: Any, value: Any) -> None:
        if self.requires_grad and autograd.is_grad_enabled():
            raise RuntimeError(
                "item assignment on a tensor that requires grad would bypass autograd; "
                "do it inside tm.no_grad() or on a detached tensor"
            )
        index = index.data if isinstance(index, Tensor) else index
        self.data[index] = value.data if isinstance(value, Tensor) else value

    def __iter__(self) -> Iterator[Tensor]:
        for i in range(len(self)):
            yield self[i]

    # Comparisons give bool tensors outside the graph, as in PyTorch.
    def _compare(self, other: Any, op: Callable) -> Tensor:
        return Tensor(op(self.data, other.data if isinstance(other, Tensor) else other))

    def __eq__(self, other: object) -> Tensor:  # type: ignore[override]
        return self._compare(other, np.equal)

    def __ne__(self, other: object) -> Tensor:  # type: ignore[override]
        return self._compare(other, np.not_equal)

    def __lt__(self, other: Any) -> Tensor:
        return self._compare(other, np.less)

    def __le__(self, other: Any) -> Tensor:
        return self._compare(other, np.less_equal)

    def __gt__(self, other: Any) -> Tensor:
        return self._compare(other, np.greater)

    def __ge__(self, other: Any) -> Tensor:
        return self._compare(other, np.greater_equal)

    # ----------------------------------------------------------- reductions

    def sum(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None, keepdims: Any = None) -> Tensor:
        return F.sum(self, _pick(dim, axis), _pick(keepdim, keepdims))

    def mean(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None, keepdims: Any = None) -> Tensor:
        return F.mean(self, _pick(dim, axis), _pick(keepdim, keepdims))

    def max(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None, keepdims: Any = None) -> Any:
        """``max()`` -> scalar tensor; ``max(dim)`` -> ``(values, indices)`` as in PyTorch."""
        return F.max(self, _pick(dim, axis), _pick(keepdim, keepdims))

    def min(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None, keepdims: Any = None) -> Any:
        return F.min(self, _pick(dim, axis), _pick(keepdim, keepdims))

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        if dim is None:
            return Tensor(np.int64(np.argmax(self.data)))
        indices = np.argmax(self.data, axis=dim)
        return Tensor(np.expand_dims(indices, dim) if keepdim else indices)

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        if dim is None:
            return Tensor(np.int64(np.argmin(self.data)))
        indices = np.argmin(self.data, axis=dim)
        return Tensor(np.expand_dims(indices, dim) if keepdim else indices)

    # --------------------------------------------------------------- shapes

    def reshape(self, *shape: Any) -> Tensor:
        return F.reshape(self, _shape_args(shape))

    def view(self, *shape: Any) -> Tensor:
        return F.reshape(self, _shape_args(shape))

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        return F.transpose(self, dim0, dim1)

    @property
    def T(self) -> Tensor:
        return F.permute(self, tuple(reversed(range(self.ndim))))

    def permute(self, *dims: Any) -> Tensor:
        return F.permute(self, _shape_args(dims))

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        return F.flatten(self, start_dim, end_dim)

    def squeeze(self, dim: int | None = None) -> Tensor:
        return F.squeeze(self, dim)

    def unsqueeze(self, dim: int) -> Tensor:
        return F.unsqueeze(self, dim)

    # ---------------------------------------------------------- elementwise

    def exp(self) -> Tensor:
        return F.exp(self)

    def log(self) -> Tensor:
        return F.log(self)

    def sqrt(self) -> Tensor:
        return F.sqrt(self)

    def abs(self) -> Tensor:
        return F.abs(self)

    def tanh(self) -> Tensor:
        return F.tanh(self)

    def sigmoid(self) -> Tensor:
        return F.sigmoid(self)

    def relu(self) -> Tensor:
        return F.relu(self)

    def softmax(self, dim: int) -> Tensor:
        return F.softmax(self, dim)

    def log_softmax(self, dim: int) -> Tensor:
        return F.log_softmax(self, dim)


def _pick(torch_style: Any, numpy_style: Any) -> Any:
    return torch_style if numpy_style is None else numpy_style


def _shape_args(args: tuple) -> tuple:
    """Accept both ``reshape(2, 3)`` and ``reshape((2, 3))``."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])
    return tuple(args)


# ---------------------------------------------------------------- factories


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    """Create a leaf tensor from a list, scalar, array or Tensor (data is copied)."""
    array = _to_array(data, dtype)
    if array is data or (isinstance(data, Tensor) and array is data.data):
        array = array.copy()
    return Tensor(array, requires_grad=requires_grad)


def _size(size: tuple) -> tuple:
    return _shape_args(size)


def zeros(*size: Any, requires_grad: bool = False, dtype: Any = float32) -> Tensor:
    return Tensor(np.zeros(_size(size), dtype=_resolve_dtype(dtype)), requires_grad=requires_grad)


def ones(*size: Any, requires_grad: bool = False, dtype: Any = float32) -> Tensor:
    return Tensor(np.ones(_size(size), dtype=_resolve_dtype(dtype)), requires_grad=requires_grad)


def full(size: Any, fill_value: float, requires_grad: bool = False, dtype: Any = float32) -> Tensor:
    return Tensor(np.full(_size((size,)), fill_value, dtype=_resolve_dtype(dtype)), requires_grad=requires_grad)


def zeros_like(other: Tensor, requires_grad: bool = False) -> Tensor:
    return Tensor(np.zeros_like(other.data), requires_grad=requires_grad)


def ones_like(other: Tensor, requires_grad: bool = False) -> Tensor:
    return Tensor(np.ones_like(other.data), requires_grad=requires_grad)


def arange(*args: Any, dtype: Any = None) -> Tensor:
    return Tensor(np.arange(*args), dtype=dtype)


def randn(*size: Any, requires_grad: bool = False, dtype: Any = float32) -> Tensor:
    """Samples of N(0, 1) from the engine's generator (see ``tm.manual_seed``)."""
    values = _random.generator().standard_normal(_size(size))
    return Tensor(values.astype(_resolve_dtype(dtype)), requires_grad=requires_grad)


def rand(*size: Any, requires_grad: bool = False, dtype: Any = float32) -> Tensor:
    """Samples of U[0, 1) from the engine's generator (see ``tm.manual_seed``)."""
    values = _random.generator().random(_size(size))
    return Tensor(values.astype(_resolve_dtype(dtype)), requires_grad=requires_grad)


def stack(tensors: Any, dim: int = 0) -> Tensor:
    return F.stack(tensors, dim)


def cat(tensors: Any, dim: int = 0) -> Tensor:
    return F.cat(tensors, dim)


# Imported last: functional builds on Tensor, and Tensor's methods call into it.
from tinymbm import functional as F
