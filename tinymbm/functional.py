"""Every differentiable op of the engine, each one :class:`~tinymbm.autograd.Function`.

Each op states its forward formula and the derivative its backward applies,
in the symbols the code uses. ``g`` is always the gradient arriving from
above, dL/d(out); the backward returns dL/d(input) = g · d(out)/d(input).

Legend: N batch, C classes or channels, H×W image size, K kernel size,
T time steps, H hidden size (in the recurrent section).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import numpy as np

from tinymbm.autograd import Context, Function
from tinymbm.errors import DTypeError, ShapeError
from tinymbm.tensor import Tensor, _to_array

# ------------------------------------------------------------------ helpers


def _as_tensor(value: Any) -> Tensor:
    return value if isinstance(value, Tensor) else Tensor(value)


def _as_float_tensor(value: Any) -> Tensor:
    """Return a floating tensor: integer input becomes float32, as PyTorch's float ops give."""
    tensor = _as_tensor(value)
    return tensor if tensor.dtype.kind == "f" else Cast.apply(tensor, np.dtype(np.float32))


def _operands(name: str, a: Any, b: Any) -> tuple[Any, Any]:
    """Bring two operands to a common dtype and check that they broadcast.

    A Python scalar takes the tensor's dtype (``x32 * 2.0`` stays float32);
    an integer operand meeting a floating one takes the floating dtype.
    """
    a_array = a.data if isinstance(a, Tensor) else _scalar_or_array(a, b)
    b_array = b.data if isinstance(b, Tensor) else _scalar_or_array(b, a)
    a_float = a_array.dtype.kind == "f"
    b_float = b_array.dtype.kind == "f"
    if a_float and not b_float:
        b_array = b_array.astype(a_array.dtype)
    elif b_float and not a_float:
        a_array = a_array.astype(b_array.dtype)

    try:
        np.broadcast_shapes(a_array.shape, b_array.shape)
    except ValueError:
        raise ShapeError(
            f"{name}: shapes {a_array.shape} and {b_array.shape} cannot be broadcast together "
            f"(aligned from the right, each pair of sizes must be equal or contain a 1)"
        ) from None

    return _keep_graph(a, a_array), _keep_graph(b, b_array)


def _keep_graph(original: Any, array: np.ndarray) -> Any:
    """Return the operand to pass on: the tensor itself, a recorded cast of it, or a constant."""
    if not isinstance(original, Tensor):
        return array
    if original.data is array:
        return original
    return Cast.apply(original, array.dtype)


def _scalar_or_array(value: Any, other: Any) -> np.ndarray:
    other_dtype = other.dtype if isinstance(other, (Tensor, np.ndarray)) else None
    if isinstance(value, (bool, int, float)) and other_dtype is not None:
        if other_dtype.kind == "f":
            return np.asarray(value, dtype=other_dtype)
        if isinstance(value, float):
            return np.asarray(value, dtype=np.float32)
        return np.asarray(value, dtype=other_dtype)
    return _to_array(value)


def _axes(name: str, dim: Any, ndim: int) -> tuple[int, ...] | None:
    """Normalize ``dim`` (None, an int or a sequence of ints) to positive axes."""
    if dim is None:
        return None
    if isinstance(dim, (int, np.integer)):
        dims = (dim,)
    elif isinstance(dim, (tuple, list)) and all(isinstance(d, (int, np.integer)) for d in dim):
        dims = tuple(dim)
    else:
        raise TypeError(f"{name}: dim must be an int or a tuple of ints, got {dim!r}")
    axes = []
    for d in dims:
        if not -builtins.max(ndim, 1) <= d < builtins.max(ndim, 1):
            raise IndexError(
                f"{name}: dim {d} is out of range for a tensor with {ndim} dimensions "
                f"(expected a value in [{-ndim}, {ndim - 1}])"
            )
        axes.append(int(d) % builtins.max(ndim, 1))
    if len(set(axes)) != len(axes):
        raise ValueError(f"{name}: dim {dim!r} names the same axis twice")
    return tuple(axes)


# --------------------------------------------------------------- arithmetic


class Add(Function):
    """out = a + b;  da = g, db = g (summed back over broadcast axes)."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        return g, g


class Sub(Function):
    """out = a - b;  da = g, db = -g."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a - b

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        return g, (-g if ctx.needs_input_grad[1] else None)


class Mul(Function):
    """out = a * b;  da = g * b, db = g * a."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        a, b = ctx.saved_tensors
        da = g * b if ctx.needs_input_grad[0] else None
        db = g * a if ctx.needs_input_grad[1] else None
        return da, db


class Div(Function):
    """out = a / b;  da = g / b, db = -g * a / b²."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        a, b = ctx.saved_tensors
        da = g / b if ctx.needs_input_grad[0] else None
        db = -g * a / (b * b) if ctx.needs_input_grad[1] else None
        return da, db


class Pow(Function):
    """out = a ** b;  da = g * b * a^(b-1), db = g * out * ln(a).

    ln(a) is taken as 0 where a <= 0, where the real power has no derivative
    in b (PyTorch also returns 0 there for a == 0).
    """

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = np.power(a, b)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        a, b, out = ctx.saved_tensors
        da = db = None
        if ctx.needs_input_grad[0]:
            da = g * b * np.power(a, b - 1)
        if ctx.needs_input_grad[1]:
            db = g * out * np.log(np.where(a > 0, a, 1))
        return da, db


class Neg(Function):
    """out = -x;  dx = -g."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        return -x

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        return -g


class MatMul(Function):
    """out = a @ b (NumPy's matmul rules);  da = g @ bᵀ, db = aᵀ @ g.

    A 1-D operand is treated as a row (for a) or a column (for b) vector and
    that axis is removed again from the result and from its gradient.
    """

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        a, b = ctx.saved_tensors
        if a.ndim == 1 and b.ndim == 1:
            return g * b, g * a
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g
        if a.ndim == 1:
            g2 = np.expand_dims(g2, -2)
        if b.ndim == 1:
            g2 = np.expand_dims(g2, -1)

        da = db = None
        if ctx.needs_input_grad[0]:
            da = g2 @ np.swapaxes(b2, -1, -2)
            da = da.squeeze(-2) if a.ndim == 1 else da
        if ctx.needs_input_grad[1]:
            db = np.swapaxes(a2, -1, -2) @ g2
            db = db.squeeze(-1) if b.ndim == 1 else db
        return da, db


def _check_matmul(a: np.ndarray, b: np.ndarray) -> None:
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: both operands need at least 1 dimension, got shapes {a.shape} and {b.shape}")
    inner_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if a.shape[-1] != inner_b:
        raise ShapeError(
            f"matmul: shapes {a.shape} and {b.shape} are not aligned: the last dimension of the "
            f"first ({a.shape[-1]}) must equal the {'only' if b.ndim == 1 else 'second-to-last'} "
            f"dimension of the second ({inner_b})"
        )
    if a.ndim > 2 or b.ndim > 2:
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ShapeError(
                f"matmul: batch dimensions of shapes {a.shape} and {b.shape} cannot be broadcast together"
            ) from None


def add(a: Any, b: Any) -> Tensor:
    return Add.apply(*_operands("add", a, b))


def sub(a: Any, b: Any) -> Tensor:
    return Sub.apply(*_operands("sub", a, b))


def mul(a: Any, b: Any) -> Tensor:
    return Mul.apply(*_operands("mul", a, b))


def div(a: Any, b: Any) -> Tensor:
    a, b = _operands("div", a, b)
    if np.asarray(a.data if isinstance(a, Tensor) else a).dtype.kind != "f":
        # True division of integers gives float32, as in PyTorch.
        a = _as_float_tensor(a)
        b = _as_float_tensor(b)
    return Div.apply(a, b)


def pow(a: Any, b: Any) -> Tensor:
    return Pow.apply(*_operands("pow", a, b))


def neg(x: Any) -> Tensor:
    return Neg.apply(_as_tensor(x))


def matmul(a: Any, b: Any) -> Tensor:
    a, b = _operands_no_broadcast(a, b)
    _check_matmul(np.asarray(a.data if isinstance(a, Tensor) else a), np.asarray(b.data if isinstance(b, Tensor) else b))
    return MatMul.apply(a, b)


def _operands_no_broadcast(a: Any, b: Any) -> tuple[Any, Any]:
    a = a if isinstance(a, Tensor) else Tensor(_scalar_or_array(a, b))
    b = b if isinstance(b, Tensor) else Tensor(_scalar_or_array(b, a))
    if a.dtype.kind == "f" and b.dtype.kind != "f":
        b = Tensor(b.data.astype(a.dtype))
    elif b.dtype.kind == "f" and a.dtype.kind != "f":
        a = Tensor(a.data.astype(b.dtype))
    return a, b


# ------------------------------------------------------------- elementwise


class Abs(Function):
    """out = |x|;  dx = g * sign(x) (0 at x = 0)."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(x)
        return np.abs(x)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (x,) = ctx.saved_tensors
        return g * np.sign(x)


class Exp(Function):
    """out = eˣ;  dx = g * out."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        out = np.exp(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (out,) = ctx.saved_tensors
        return g * out


class Log(Function):
    """out = ln x;  dx = g / x."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(x)
        return np.log(x)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (x,) = ctx.saved_tensors
        return g / x


class Sqrt(Function):
    """out = √x;  dx = g / (2 out)."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        out = np.sqrt(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (out,) = ctx.saved_tensors
        return g / (2 * out)


class Tanh(Function):
    """out = tanh x;  dx = g * (1 - out²)."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        out = np.tanh(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (out,) = ctx.saved_tensors
        return g * (1 - out * out)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # exp(-|x|) never overflows, so both branches are safe for any x.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


class Sigmoid(Function):
    """out = σ(x) = 1 / (1 + e⁻ˣ);  dx = g * out * (1 - out)."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        out = _sigmoid(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (out,) = ctx.saved_tensors
        return g * out * (1 - out)


class ReLU(Function):
    """out = max(x, 0);  dx = g where x > 0, else 0 (so the gradient at 0 is 0)."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(x > 0)
        return np.maximum(x, x.dtype.type(0))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (positive,) = ctx.saved_tensors
        return g * positive


class Cast(Function):
    """out = x converted to ``dtype``;  dx = g converted back to x's dtype."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, dtype: np.dtype) -> np.ndarray:
        ctx.input_dtype = x.dtype
        return x.astype(dtype)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        return g.astype(ctx.input_dtype), None


class Clone(Function):
    """out = a copy of x;  dx = g."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        return x.copy()

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        return g


def abs(x: Any) -> Tensor:
    return Abs.apply(_as_tensor(x))


def exp(x: Any) -> Tensor:
    return Exp.apply(_as_float_tensor(x))


def log(x: Any) -> Tensor:
    return Log.apply(_as_float_tensor(x))


def sqrt(x: Any) -> Tensor:
    return Sqrt.apply(_as_float_tensor(x))


def tanh(x: Any) -> Tensor:
    return Tanh.apply(_as_float_tensor(x))


def sigmoid(x: Any) -> Tensor:
    return Sigmoid.apply(_as_float_tensor(x))


def relu(x: Any) -> Tensor:
    return ReLU.apply(_as_tensor(x))


def cast(x: Any, dtype: Any) -> Tensor:
    x = _as_tensor(x)
    dtype = np.dtype(dtype)
    if x.dtype == dtype:
        return x
    return Cast.apply(x, dtype)


def clone(x: Any) -> Tensor:
    return Clone.apply(_as_tensor(x))


# ---------------------------------------------------------------- reductions


def _expand_back(g: np.ndarray, axes: tuple | None, keepdim: bool, shape: tuple) -> np.ndarray:
    """Broadcast a reduced gradient back over the reduced axes."""
    if axes is not None and not keepdim:
        g = np.expand_dims(g, axes)
    return np.broadcast_to(g, shape).copy()


class Sum(Function):
    """out = Σ over ``dim`` of x;  dx = g copied along the summed axes."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, axes: tuple | None, keepdim: bool) -> np.ndarray:
        ctx.shape, ctx.axes, ctx.keepdim = x.shape, axes, keepdim
        return np.sum(x, axis=axes, keepdims=keepdim)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        return _expand_back(g, ctx.axes, ctx.keepdim, ctx.shape), None, None


class Mean(Function):
    """out = (1/n) Σ over ``dim`` of x;  dx = g / n copied along the averaged axes."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, axes: tuple | None, keepdim: bool) -> np.ndarray:
        ctx.shape, ctx.axes, ctx.keepdim = x.shape, axes, keepdim
        ctx.count = x.size if axes is None else int(np.prod([x.shape[a] for a in axes]))
        return np.mean(x, axis=axes, keepdims=keepdim)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        return _expand_back(g / ctx.count, ctx.axes, ctx.keepdim, ctx.shape), None, None


class MaxAll(Function):
    """out = max of all elements;  dx = g / m at each of the m tied maxima, else 0.

    Splitting the gradient evenly among ties is PyTorch's rule for the full
    reduction; a NaN element is the maximum (NaN propagates).
    """

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, largest: bool) -> np.ndarray:
        out = np.max(x) if largest else np.min(x)
        ctx.save_for_backward(np.isnan(x) if np.isnan(out) else x == out)
        return np.asarray(out)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        (winners,) = ctx.saved_tensors
        return g * winners / winners.sum(), None


class MaxAlong(Function):
    """values = max of x along ``dim``;  dx = g at the returned index, else 0.

    The index is the first maximum (the first NaN if there is one), as
    ``argmax`` returns it, so exactly one element per slice gets the gradient.
    """

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, axis: int, keepdim: bool, indices: np.ndarray) -> np.ndarray:
        ctx.shape, ctx.axis, ctx.keepdim = x.shape, axis, keepdim
        ctx.save_for_backward(indices)
        values = np.take_along_axis(x, np.expand_dims(indices, axis), axis)
        return values if keepdim else values.squeeze(axis)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        (indices,) = ctx.saved_tensors
        grad = np.zeros(ctx.shape, dtype=g.dtype)
        g = g if ctx.keepdim else np.expand_dims(g, ctx.axis)
        np.put_along_axis(grad, np.expand_dims(indices, ctx.axis), g, ctx.axis)
        return grad, None, None, None


class MinAll(MaxAll):
    """out = min of all elements;  dx = g / m at each of the m tied minima, else 0."""


class MinAlong(MaxAlong):
    """values = min of x along ``dim``;  dx = g at the returned index (the first minimum), else 0."""


def sum(x: Any, dim: Any = None, keepdim: bool = False) -> Tensor:
    x = _as_tensor(x)
    return Sum.apply(x, _axes("sum", dim, x.ndim), bool(keepdim))


def mean(x: Any, dim: Any = None, keepdim: bool = False) -> Tensor:
    x = _as_tensor(x)
    if x.dtype.kind != "f":
        raise DTypeError(f"mean: input dtype {x.dtype} is not floating; convert it first, e.g. x.float()")
    return Mean.apply(x, _axes("mean", dim, x.ndim), bool(keepdim))


def _extreme(name: str, x: Any, dim: Any, keepdim: bool, largest: bool) -> Any:
    x = _as_tensor(x)
    if x.data.size == 0:
        raise ValueError(f"{name}: the input is empty (shape {x.shape})")
    if dim is None:
        return (MaxAll if largest else MinAll).apply(x, largest)
    (axis,) = _axes(name, dim, x.ndim)
    data = x.data if x.ndim else x.data.reshape(1)
    indices = np.argmax(data, axis=axis) if largest else np.argmin(data, axis=axis)
    values = (MaxAlong if largest else MinAlong).apply(x, axis, bool(keepdim), indices)
    index_tensor = Tensor(np.expand_dims(indices, axis) if keepdim else indices)
    return MaxResult(values, index_tensor)


class MaxResult(tuple):
    """``(values, indices)`` of ``max(dim)``, also readable as ``.values``/``.indices``."""

    def __new__(cls, values: Tensor, indices: Tensor) -> MaxResult:  # noqa: PYI034
        return super().__new__(cls, (values, indices))

    @property
    def values(self) -> Tensor:
        return self[0]

    @property
    def indices(self) -> Tensor:
        return self[1]


def max(x: Any, dim: Any = None, keepdim: bool = False) -> Any:
    """``max(x)`` -> scalar tensor; ``max(x, dim)`` -> ``(values, indices)``."""
    return _extreme("max", x, dim, keepdim, largest=True)


def min(x: Any, dim: Any = None, keepdim: bool = False) -> Any:
    """``min(x)`` -> scalar tensor; ``min(x, dim)`` -> ``(values, indices)``."""
    return _extreme("min", x, dim, keepdim, largest=False)


# -------------------------------------------------------------------- shapes


class Reshape(Function):
    """out = x with a new shape (same elements, row-major);  dx = g reshaped back."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, shape: tuple) -> np.ndarray:
        ctx.shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        return g.reshape(ctx.shape), None


class Permute(Function):
    """out = x with its axes reordered by ``dims``;  dx = g with the inverse order."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, dims: tuple) -> np.ndarray:
        ctx.inverse = tuple(np.argsort(dims))
        return np.transpose(x, dims)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        return np.transpose(g, ctx.inverse), None


class GetItem(Function):
    """out = x[index];  dx = g scattered back to the indexed positions.

    Integer-array indices may repeat an element; its gradient is then the
    sum of all its copies (``np.add.at`` accumulates where plain assignment
    would keep only the last one).
    """

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, index: Any) -> np.ndarray:
        ctx.shape, ctx.dtype, ctx.index = x.shape, x.dtype, index
        return np.asarray(x[index])

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        grad = np.zeros(ctx.shape, dtype=ctx.dtype)
        if _is_basic_index(ctx.index):
            grad[ctx.index] = g
        else:
            np.add.at(grad, ctx.index, g)
        return grad, None


def _is_basic_index(index: Any) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (int, np.integer, slice, type(None), type(Ellipsis))) for p in parts)


class Stack(Function):
    """out = the inputs stacked along a new axis ``dim``;  d(input k) = g[..., k, ...]."""

    @staticmethod
    def forward(ctx: Context, dim: int, *arrays: np.ndarray) -> np.ndarray:
        ctx.dim = dim
        return np.stack(arrays, axis=dim)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        parts = np.moveaxis(g, ctx.dim, 0)
        return (None, *parts)


class Cat(Function):
    """out = the inputs joined along the existing axis ``dim``;  d(input k) = its slice of g."""

    @staticmethod
    def forward(ctx: Context, dim: int, *arrays: np.ndarray) -> np.ndarray:
        ctx.dim = dim
        ctx.splits = np.cumsum([a.shape[dim] for a in arrays])[:-1]
        return np.concatenate(arrays, axis=dim)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        return (None, *np.split(g, ctx.splits, axis=ctx.dim))


def reshape(x: Any, shape: Sequence[int]) -> Tensor:
    x = _as_tensor(x)
    shape = tuple(int(s) for s in shape)
    try:
        x.data.reshape(shape)
    except ValueError:
        raise ShapeError(
            f"reshape: cannot reshape a tensor of shape {x.shape} ({x.data.size} elements) "
            f"into shape {shape}"
        ) from None
    return Reshape.apply(x, shape)


def permute(x: Any, dims: Sequence[int]) -> Tensor:
    x = _as_tensor(x)
    axes = _axes("permute", tuple(dims), x.ndim) or ()
    if sorted(axes) != list(range(x.ndim)):
        raise ShapeError(f"permute: dims {tuple(dims)} are not a permutation of the {x.ndim} axes of shape {x.shape}")
    return Permute.apply(x, axes)


def transpose(x: Any, dim0: int, dim1: int) -> Tensor:
    x = _as_tensor(x)
    a, b = _axes("transpose", (dim0, dim1), x.ndim)
    dims = list(range(x.ndim))
    dims[a], dims[b] = dims[b], dims[a]
    return Permute.apply(x, tuple(dims))


def flatten(x: Any, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge the axes ``start_dim`` .. ``end_dim`` (inclusive) into one."""
    x = _as_tensor(x)
    if x.ndim == 0:
        return reshape(x, (1,))
    start, end = _axes("flatten", (start_dim, end_dim), x.ndim)
    shape = x.shape[:start] + (int(np.prod(x.shape[start:end + 1])),) + x.shape[end + 1:]
    return Reshape.apply(x, shape)


def squeeze(x: Any, dim: int | None = None) -> Tensor:
    x = _as_tensor(x)
    if dim is None:
        shape = tuple(s for s in x.shape if s != 1)
    else:
        (axis,) = _axes("squeeze", dim, x.ndim)
        shape = x.shape[:axis] + x.shape[axis + 1:] if x.shape[axis] == 1 else x.shape
    return Reshape.apply(x, shape)


def unsqueeze(x: Any, dim: int) -> Tensor:
    x = _as_tensor(x)
    (axis,) = _axes("unsqueeze", dim, x.ndim + 1)
    return Reshape.apply(x, x.shape[:axis] + (1,) + x.shape[axis:])


def getitem(x: Any, index: Any) -> Tensor:
    x = _as_tensor(x)
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    elif isinstance(index, list):
        index = np.asarray(index)
    return GetItem.apply(x, index)


def stack(tensors: Sequence[Any], dim: int = 0) -> Tensor:
    tensors = [_as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("stack: expected a non-empty sequence of tensors")
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        raise ShapeError(f"stack: all tensors must have the same shape, got {[t.shape for t in tensors]}")
    (axis,) = _axes("stack", dim, tensors[0].ndim + 1)
    return Stack.apply(axis, *tensors)


def cat(tensors: Sequence[Any], dim: int = 0) -> Tensor:
    tensors = [_as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    (axis,) = _axes("cat", dim, tensors[0].ndim)
    rest = {t.shape[:axis] + t.shape[axis + 1:] for t in tensors}
    if len(rest) != 1 or len({t.ndim for t in tensors}) != 1:
        raise ShapeError(f"cat: shapes {[t.shape for t in tensors]} differ outside dim {dim}")
    return Cat.apply(axis, *tensors)


# --------------------------------------------------------- softmax and loss


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    # Subtracting the maximum first keeps exp() from overflowing: logits of
    # 1e4 would otherwise give inf/inf = nan. The result is mathematically equal.
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


class Softmax(Function):
    """out_i = e^(x_i) / Σ_j e^(x_j) along ``dim``;  dx = out * (g - Σ_j g_j out_j)."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, axis: int) -> np.ndarray:
        out = np.exp(_log_softmax(x, axis))
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        (out,) = ctx.saved_tensors
        return out * (g - np.sum(g * out, axis=ctx.axis, keepdims=True)), None


class LogSoftmax(Function):
    """out_i = x_i - log Σ_j e^(x_j) along ``dim``;  dx = g - softmax(x) * Σ_j g_j."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, axis: int) -> np.ndarray:
        out = _log_softmax(x, axis)
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        (out,) = ctx.saved_tensors
        return g - np.exp(out) * np.sum(g, axis=ctx.axis, keepdims=True), None


def softmax(x: Any, dim: int) -> Tensor:
    x = _as_float_tensor(x)
    (axis,) = _axes("softmax", dim, x.ndim)
    return Softmax.apply(x, axis)


def log_softmax(x: Any, dim: int) -> Tensor:
    x = _as_float_tensor(x)
    (axis,) = _axes("log_softmax", dim, x.ndim)
    return LogSoftmax.apply(x, axis)


_REDUCTIONS = ("mean", "sum", "none")


def _reduce_loss(losses: np.ndarray, reduction: str) -> np.ndarray:
    if reduction == "mean":
        return np.asarray(losses.mean())
    if reduction == "sum":
        return np.asarray(losses.sum())
    return losses


def _loss_scale(g: np.ndarray, reduction: str, n: int) -> np.ndarray:
    """dL/d(loss_n) for each sample: g/N for 'mean', g for 'sum', g_n for 'none'."""
    if reduction == "mean":
        return np.full(n, g / n)
    if reduction == "sum":
        return np.full(n, g)
    return g


class CrossEntropy(Function):
    """loss_n = -log softmax(x_n)[t_n] = log Σ_c e^(x_nc) - x_n,t_n, then the reduction.

    d loss_n / d x_nc = softmax(x_n)_c - [c == t_n], so the backward is
    (softmax - one_hot(t)) scaled by each sample's upstream gradient.
    """

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, target: np.ndarray, reduction: str) -> np.ndarray:
        log_probs = _log_softmax(x, 1)
        rows = np.arange(x.shape[0])
        losses = -log_probs[rows, target]
        ctx.save_for_backward(log_probs, target)
        ctx.reduction = reduction
        return _reduce_loss(losses, reduction)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        # BEGIN EXERCISE cross_entropy_backward: implement the formula above, scaling row n by _loss_scale(g, ctx.reduction, N)[n]
        log_probs, target = ctx.saved_tensors
        grad = np.exp(log_probs)
        grad[np.arange(grad.shape[0]), target] -= 1
        grad *= _loss_scale(g, ctx.reduction, grad.shape[0]).astype(grad.dtype)[:, None]
        return grad, None, None
        # END EXERCISE cross_entropy_backward


class NLLLoss(Function):
    """loss_n = -x_n,t_n (x contains log-probabilities), then the reduction.

    d loss_n / d x_nc = -[c == t_n].
    """

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, target: np.ndarray, reduction: str) -> np.ndarray:
        ctx.shape, ctx.dtype, ctx.reduction = x.shape, x.dtype, reduction
        ctx.save_for_backward(target)
        return _reduce_loss(-x[np.arange(x.shape[0]), target], reduction)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        (target,) = ctx.saved_tensors
        grad = np.zeros(ctx.shape, dtype=ctx.dtype)
        grad[np.arange(ctx.shape[0]), target] = -_loss_scale(g, ctx.reduction, ctx.shape[0])
        return grad, None, None


def _class_targets(name: str, logits: Tensor, target: Any) -> tuple[Tensor, np.ndarray, bool]:
    """Validate (N, C) scores and (N,) class indices; a single (C,) row is allowed too."""
    target_array = np.asarray(target.data if isinstance(target, Tensor) else target)
    if logits.dtype.kind != "f":
        raise DTypeError(f"{name}: input must be floating, got dtype {logits.dtype}")
    if target_array.dtype.kind not in "iu":
        raise DTypeError(
            f"{name}: target must hold integer class indices, got dtype {target_array.dtype}"
        )
    single = logits.ndim == 1
    if single:
        if target_array.ndim != 0:
            raise ShapeError(
                f"{name}: for a single row of scores (shape {logits.shape}) the target must be a "
                f"scalar class index, got shape {target_array.shape}"
            )
        logits = reshape(logits, (1, logits.shape[0]))
        target_array = target_array.reshape(1)
    if logits.ndim != 2:
        raise ShapeError(f"{name}: expected input of shape (N, C), got shape {logits.shape}")
    if target_array.shape != (logits.shape[0],):
        raise ShapeError(
            f"{name}: target has shape {target_array.shape} but the input has a batch of "
            f"{logits.shape[0]} (input shape {logits.shape}); expected target shape ({logits.shape[0]},)"
        )
    classes = logits.shape[1]
    bad = np.flatnonzero((target_array < 0) | (target_array >= classes))
    if bad.size:
        position = int(bad[0])
        raise IndexError(
            f"{name}: class index {int(target_array[position])} at position {position} is out "
            f"of range [0, {classes}) for an input with {classes} classes"
        )
    return logits, target_array.astype(np.int64, copy=False), single


def cross_entropy(input: Any, target: Any, reduction: str = "mean") -> Tensor:
    """Mean (or sum, or per-sample) of -log softmax(input)[target].

    Args:
        input: (N, C) unnormalized class scores (logits), or (C,) for one sample.
        target: (N,) integer class indices in [0, C), or a scalar for one sample.
        reduction: "mean", "sum" or "none" (then the result has shape (N,)).
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"cross_entropy: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    logits, target_array, single = _class_targets("cross_entropy", _as_tensor(input), target)
    loss = CrossEntropy.apply(logits, target_array, reduction)
    return reshape(loss, ()) if single and reduction == "none" else loss


def nll_loss(input: Any, target: Any, reduction: str = "mean") -> Tensor:
    """Mean (or sum, or per-sample) of -input[n, target_n]; input contains log-probabilities (N, C)."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"nll_loss: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    log_probs, target_array, single = _class_targets("nll_loss", _as_tensor(input), target)
    loss = NLLLoss.apply(log_probs, target_array, reduction)
    return reshape(loss, ()) if single and reduction == "none" else loss


def mse_loss(input: Any, target: Any, reduction: str = "mean") -> Tensor:
    """Mean (or sum, or elementwise) of (input - target)²."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"mse_loss: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    squared = (_as_tensor(input) - target) ** 2
    if reduction == "mean":
        return squared.mean()
    if reduction == "sum":
        return squared.sum()
    return squared


# ----------------------------------------------------------------- linear


class Linear(Function):
    """out = x Wᵀ + b, for x of shape (..., in), W (out, in), b (out,).

    dx = g W,  dW = gᵀ x,  db = Σ over all leading axes of g.
    """

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
        ctx.save_for_backward(x, weight)
        out = x @ weight.T
        if bias is not None:
            out += bias
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        x, weight = ctx.saved_tensors
        needs_x, needs_weight, needs_bias = ctx.needs_input_grad
        g2 = g.reshape(-1, g.shape[-1])
        dx = (g @ weight) if needs_x else None
        dweight = g2.T @ x.reshape(-1, x.shape[-1]) if needs_weight else None
        dbias = g2.sum(axis=0) if needs_bias else None
        return dx, dweight, dbias


def linear(input: Any, weight: Any, bias: Any = None) -> Tensor:
    """Apply out = input @ weight.T + bias.

    Args:
        input: (..., in_features).
        weight: (out_features, in_features).
        bias: (out_features,) or None.
    Returns:
        (..., out_features).
    """
    x = _as_tensor(input)
    weight = _as_tensor(weight)
    if weight.ndim != 2:
        raise ShapeError(f"linear: weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ShapeError(
            f"linear: input has {x.shape[-1] if x.ndim else 0} features (input shape {x.shape}) "
            f"but weight expects {weight.shape[1]} (weight shape {weight.shape})"
        )
    if bias is not None:
        bias = _as_tensor(bias)
        if bias.shape != (weight.shape[0],):
            raise ShapeError(f"linear: bias has shape {bias.shape}, expected ({weight.shape[0]},)")
    if x.dtype != weight.dtype:
        x = cast(x, np.promote_types(x.dtype, weight.dtype)) if x.dtype.kind == "f" else cast(x, weight.dtype)
    return Linear.apply(x, weight, bias)


# ------------------------------------------------------- convolution and pooling
#
# Legend: N batch, C input channels, F output channels, H×W input size, KH×KW
# kernel or window size, OH×OW output size, (sh, sw) stride, (ph, pw) padding.
# The loops run in tinymbm.kernels.conv and tinymbm.kernels.pool. Each op
# runs the backend that the kernel module's ``backend`` attribute names:
# "numba" by default, or "reference" for the plain-loop versions.


def _conv_kernels() -> Any:
    from tinymbm.kernels import conv as conv_kernels

    return conv_kernels.select()


def _pool_kernels() -> Any:
    from tinymbm.kernels import pool as pool_kernels

    return pool_kernels.select()


class Conv2d(Function):
    """y = conv2d(x, w) + b, a cross-correlation with zero padding.

    Shapes: x (N, C, H, W), w (F, C, KH, KW), b (F,), y (N, F, OH, OW) with
    OH = (H + 2·ph - KH) // sh + 1 and OW = (W + 2·pw - KW) // sw + 1::

        y[n, f, oh, ow] = b[f] + Σ_c Σ_i Σ_j w[f, c, i, j] · x[n, c, oh·sh + i - ph, ow·sw + j - pw]

    where x is 0 outside the image. Backward, with g = dL/dy::

        db[f]          = Σ_n Σ_oh Σ_ow g[n, f, oh, ow]
        dw[f, c, i, j] = Σ_n Σ_oh Σ_ow g[n, f, oh, ow] · x[n, c, oh·sh + i - ph, ow·sw + j - pw]
        dx[n, c, h, w_] = Σ g[n, f, oh, ow] · w[f, c, i, j]  over f, i, j and the (oh, ow)
                          with oh·sh + i - ph = h and ow·sw + j - pw = w_
    """

    @staticmethod
    def forward(
        ctx: Context,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None,
        stride: tuple[int, int],
        padding: tuple[int, int],
        kernels: Any,
    ) -> np.ndarray:
        x = np.ascontiguousarray(x)
        weight = np.ascontiguousarray(weight)
        bias = None if bias is None else np.ascontiguousarray(bias)

        y = kernels.forward(x, weight, bias, stride, padding)

        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.kernels = stride, padding, kernels
        return y

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        x, weight = ctx.saved_tensors
        needs_x, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        g = np.ascontiguousarray(g)
        kernels, stride, padding = ctx.kernels, ctx.stride, ctx.padding

        dx = kernels.backward_input(g, weight, x.shape, stride, padding) if needs_x else None
        dweight = kernels.backward_weight(g, x, weight.shape, stride, padding) if needs_weight else None
        dbias = kernels.backward_bias(g) if needs_bias else None
        return dx, dweight, dbias, None, None, None


class MaxPool2d(Function):
    """y = the maximum of every KH×KW window of x, windows stepping by the stride.

    Shapes: x (N, C, H, W), y (N, C, OH, OW) with OH = (H + 2·ph - KH) // sh + 1
    and OW = (W + 2·pw - KW) // sw + 1. Padding never wins a window (as if it
    were -inf), a tie goes to the first maximum in row-major order, and NaN
    counts as the maximum (the first NaN wins). Backward: g[n, c, oh, ow] goes
    whole to the input position that won window (oh, ow); an input that wins
    several overlapping windows receives their sum.
    """

    @staticmethod
    def forward(
        ctx: Context,
        x: np.ndarray,
        kernel_size: tuple[int, int],
        stride: tuple[int, int],
        padding: tuple[int, int],
        kernels: Any,
    ) -> np.ndarray:
        x = np.ascontiguousarray(x)

        y, indices = kernels.forward(x, kernel_size, stride, padding)

        ctx.save_for_backward(indices)
        ctx.input_shape, ctx.kernels = x.shape, kernels
        return y

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        (indices,) = ctx.saved_tensors
        dx = ctx.kernels.backward(np.ascontiguousarray(g), indices, ctx.input_shape)
        return dx, None, None, None, None


def _pair(name: str, label: str, value: Any) -> tuple[int, int]:
    """Turn an int or a pair of ints into a pair of Python ints; raise TypeError otherwise."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value), int(value)
    is_pair = isinstance(value, (tuple, list)) and len(value) == 2
    if is_pair and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        return int(value[0]), int(value[1])
    raise TypeError(f"{name}: {label} must be an int or a pair of ints, got {value!r}")


def _check_positive(name: str, label: str, pair: tuple[int, int], given: Any) -> None:
    if pair[0] < 1 or pair[1] < 1:
        raise ValueError(f"{name}: {label} must be positive, got {given!r}")


def _check_padding(name: str, pair: tuple[int, int], given: Any) -> None:
    if pair[0] < 0 or pair[1] < 0:
        raise ValueError(f"{name}: padding must be non-negative, got {given!r}")


def _check_image_batch(name: str, x: Tensor) -> None:
    if x.ndim != 4:
        raise ShapeError(
            f"{name}: expected a 4-D input (batch, channels, height, width), "
            f"got a {x.ndim}-D input of shape {x.shape}"
        )


def _check_window_fits(
    name: str, label: str, x: Tensor, window: tuple[int, int], padding: tuple[int, int]
) -> None:
    padded = (x.shape[2] + 2 * padding[0], x.shape[3] + 2 * padding[1])
    if window[0] > padded[0] or window[1] > padded[1]:
        raise ShapeError(
            f"{name}: {label} {window} is larger than the padded input {padded} "
            f"(input height and width {x.shape[2:]} plus padding {padding} on each side)"
        )


def conv2d(input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0) -> Tensor:
    """Apply a 2-D convolution (cross-correlation) with zero padding, as torch's conv2d does.

    The formulas are in :class:`Conv2d`. A float32 and a float64 operand are
    both cast to float64 first, as in :func:`linear`.

    Args:
        input: (N, C, H, W), float32 or float64.
        weight: (F, C, KH, KW).
        bias: (F,) or None.
        stride: int or pair (sh, sw), each at least 1.
        padding: int or pair (ph, pw) of zeros added on each side, each at least 0.

    Returns:
        (N, F, OH, OW) with OH = (H + 2·ph - KH) // sh + 1 and OW = (W + 2·pw - KW) // sw + 1.

    Raises:
        ShapeError: input or weight not 4-D, channel counts that differ, a bias
            of the wrong shape, or a kernel larger than the padded input.
        DTypeError: an operand that is not floating.
        ValueError: a stride below 1 or a negative padding.
        TypeError: a stride or padding that is not an int or a pair of ints.
    """
    name = "conv2d"
    x = _as_tensor(input)
    weight = _as_tensor(weight)
    bias = None if bias is None else _as_tensor(bias)
    stride_pair = _pair(name, "stride", stride)
    padding_pair = _pair(name, "padding", padding)
    _check_positive(name, "stride", stride_pair, stride)
    _check_padding(name, padding_pair, padding)

    _check_image_batch(name, x)
    if weight.ndim != 4:
        raise ShapeError(
            f"{name}: weight must be 4-D (out_channels, in_channels, kernel_height, kernel_width), "
            f"got shape {weight.shape}"
        )
    if x.shape[1] != weight.shape[1]:
        raise ShapeError(
            f"{name}: input has {x.shape[1]} channels but weight expects {weight.shape[1]} "
            f"(input shape {x.shape}, weight shape {weight.shape})"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ShapeError(
            f"{name}: bias has shape {bias.shape}, expected ({weight.shape[0]},) = (out_channels,) "
            f"for weight shape {weight.shape}"
        )
    _check_floating(name, input=x, weight=weight, bias=bias)
    _check_window_fits(name, "kernel size", x, weight.shape[2:], padding_pair)

    x, weight, bias = _common_dtype(x, weight, bias)
    return Conv2d.apply(x, weight, bias, stride_pair, padding_pair, _conv_kernels())


def max_pool2d(input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Tensor:
    """Take the maximum over every window, as torch's max_pool2d does (the rules are in :class:`MaxPool2d`).

    Args:
        input: (N, C, H, W), float32 or float64.
        kernel_size: int or pair (KH, KW), each at least 1.
        stride: int or pair (sh, sw), each at least 1; None (the default) means kernel_size.
        padding: int or pair (ph, pw), each at least 0 and at most half the
            window size on its axis (PyTorch's rule, which keeps every window
            partly inside the input).

    Returns:
        (N, C, OH, OW) with OH = (H + 2·ph - KH) // sh + 1 and OW = (W + 2·pw - KW) // sw + 1.

    Raises:
        ShapeError: an input that is not 4-D, or a window larger than the padded input.
        DTypeError: an input that is not floating.
        ValueError: a kernel_size or stride below 1, or a padding that is
            negative or more than half the window.
        TypeError: a size that is not an int or a pair of ints.
    """
    name = "max_pool2d"
    x = _as_tensor(input)
    kernel_pair = _pair(name, "kernel_size", kernel_size)
    stride_pair = kernel_pair if stride is None else _pair(name, "stride", stride)
    padding_pair = _pair(name, "padding", padding)
    _check_positive(name, "kernel_size", kernel_pair, kernel_size)
    _check_positive(name, "stride", stride_pair, stride)
    _check_padding(name, padding_pair, padding)
    if 2 * padding_pair[0] > kernel_pair[0] or 2 * padding_pair[1] > kernel_pair[1]:
        raise ValueError(
            f"{name}: padding {padding_pair} must be at most half of kernel_size {kernel_pair}, "
            f"so that every window covers part of the input"
        )

    _check_image_batch(name, x)
    _check_floating(name, input=x)
    _check_window_fits(name, "kernel_size", x, kernel_pair, padding_pair)

    return MaxPool2d.apply(x, kernel_pair, stride_pair, padding_pair, _pool_kernels())


# ------------------------------------------------------------ recurrent cells
#
# Legend: N batch, T time steps, I input size, H hidden size. The four gates
# are stacked along an axis of size 4H in the order input, forget, cell,
# output (i, f, g, o), as in PyTorch: weight_ih is (4H, I), weight_hh (4H, H),
# bias_ih and bias_hh (4H,). The elementwise part of a step runs in the kernels
# of tinymbm.kernels.lstm, and the matrix products run in BLAS.


def _lstm_kernels() -> Any:
    from tinymbm.kernels import lstm as lstm_kernels

    return lstm_kernels.select()


class LSTMCell(Function):
    """One LSTM step: (h', c') from x, (h, c) and the weights.

    Shapes: x (N, I); h, c, h', c' (N, H); weight_ih (4H, I); weight_hh
    (4H, H); bias_ih, bias_hh (4H,) or None. Forward::

        gates = x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh     (N, 4H)
        i = σ(gates[:, 0:H])        f = σ(gates[:, H:2H])
        g = tanh(gates[:, 2H:3H])   o = σ(gates[:, 3H:4H])
        c' = f ⊙ c + i ⊙ g
        h' = o ⊙ tanh(c')

    Backward: the kernel turns (dh', dc') into d_gates (N, 4H) and dc (its
    docstring gives the formulas), then::

        dx = d_gates @ weight_ih      dweight_ih = d_gatesᵀ @ x
        dh = d_gates @ weight_hh      dweight_hh = d_gatesᵀ @ h
        dbias_ih = dbias_hh = Σ_n d_gates[n]
    """

    @staticmethod
    def forward(
        ctx: Context,
        x: np.ndarray,
        h: np.ndarray,
        c: np.ndarray,
        weight_ih: np.ndarray,
        weight_hh: np.ndarray,
        bias_ih: np.ndarray | None,
        bias_hh: np.ndarray | None,
        kernels: Any,
    ) -> tuple[np.ndarray, np.ndarray]:
        gates = x @ weight_ih.T
        gates += h @ weight_hh.T
        if bias_ih is not None:
            gates += bias_ih
        if bias_hh is not None:
            gates += bias_hh

        c = np.ascontiguousarray(c)
        h_next, c_next, activations, tanh_c_next = kernels.forward(gates, c)

        ctx.save_for_backward(x, h, c, weight_ih, weight_hh, activations, tanh_c_next)
        ctx.kernels = kernels
        return h_next, c_next

    @staticmethod
    def backward(ctx: Context, grad_h_next: np.ndarray, grad_c_next: np.ndarray) -> tuple:
        x, h, c, weight_ih, weight_hh, activations, tanh_c_next = ctx.saved_tensors
        needs_x, needs_h, needs_c, needs_w_ih, needs_w_hh, needs_b_ih, needs_b_hh, _ = (
            ctx.needs_input_grad
        )

        grad_h_next = np.ascontiguousarray(grad_h_next)
        grad_c_next = np.ascontiguousarray(grad_c_next)
        grad_gates, grad_c = ctx.kernels.backward(
            grad_h_next, grad_c_next, c, activations, tanh_c_next
        )

        grad_x = grad_gates @ weight_ih if needs_x else None
        grad_h = grad_gates @ weight_hh if needs_h else None
        grad_weight_ih = grad_gates.T @ x if needs_w_ih else None
        grad_weight_hh = grad_gates.T @ h if needs_w_hh else None
        grad_bias = grad_gates.sum(axis=0)
        return (
            grad_x,
            grad_h,
            grad_c if needs_c else None,
            grad_weight_ih,
            grad_weight_hh,
            grad_bias if needs_b_ih else None,
            grad_bias.copy() if needs_b_hh else None,
            None,
        )


class LSTMLayer(Function):
    """One LSTM layer run over a whole sequence: T steps of :class:`LSTMCell`.

    Shapes: x (T, N, I); h0, c0, h_n, c_n (N, H); output (T, N, H), where
    output[t] is the hidden state h_(t+1) after step t and h_n = output[T-1].
    Forward::

        x_proj = x.reshape(T·N, I) @ weight_ih.T + bias_ih + bias_hh   (one product for all steps)
        for t = 0 .. T-1:
            gates_t = x_proj[t] + h_t @ weight_hh.T
            h_(t+1), c_(t+1) = cell update of gates_t and c_t     (as in LSTMCell)

    Backward through time, from t = T-1 down to 0, carries both recurrent
    gradients. dh starts as dh_n and dc as dc_n, and each step computes::

        d_gates_t, dc = kernel backward of (grad_output[t] + dh, dc)
        dh = d_gates_t @ weight_hh

    The weight gradients are then one product each over all steps, with D the
    (T·N, 4H) stack of every d_gates_t::

        dweight_ih = Dᵀ @ x.reshape(T·N, I)     dweight_hh = Dᵀ @ [h_0 .. h_(T-1)]
        dx = (D @ weight_ih).reshape(T, N, I)   dbias_ih = dbias_hh = Σ rows of D

    The loop is iterative and stores every step's state, so a sequence of
    thousands of steps needs memory linear in T and no recursion.
    """

    @staticmethod
    def forward(
        ctx: Context,
        x: np.ndarray,
        h0: np.ndarray,
        c0: np.ndarray,
        weight_ih: np.ndarray,
        weight_hh: np.ndarray,
        bias_ih: np.ndarray | None,
        bias_hh: np.ndarray | None,
        kernels: Any,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        steps, batch, input_size = x.shape
        hidden = weight_hh.shape[1]
        dtype = x.dtype

        # hs[t] and cs[t] are the state entering step t, so hs[T] and cs[T] are h_n and c_n.
        hs = np.empty((steps + 1, batch, hidden), dtype=dtype)
        cs = np.empty((steps + 1, batch, hidden), dtype=dtype)
        activations = np.empty((steps, batch, 4 * hidden), dtype=dtype)
        tanh_cs = np.empty((steps, batch, hidden), dtype=dtype)
        hs[0] = h0
        cs[0] = c0

        # x_proj for all steps in one product. It is written into `activations`,
        # which has its shape: step t reads x_proj[t] before the kernel
        # overwrites it with the activated gates, and the layer needs no
        # separate (T, N, 4H) array.
        x_proj = activations
        np.matmul(x.reshape(steps * batch, input_size), weight_ih.T,
                  out=x_proj.reshape(steps * batch, 4 * hidden))
        if bias_ih is not None:
            x_proj += bias_ih
        if bias_hh is not None:
            x_proj += bias_hh

        weight_hh_t = weight_hh.T
        gates = np.empty((batch, 4 * hidden), dtype=dtype)
        for t in range(steps):
            np.matmul(hs[t], weight_hh_t, out=gates)
            gates += x_proj[t]
            kernels.forward(gates, cs[t], out=(hs[t + 1], cs[t + 1], activations[t], tanh_cs[t]))

        ctx.save_for_backward(x, weight_ih, weight_hh, hs, cs, activations, tanh_cs)
        ctx.kernels = kernels

        # Copies, so that writing into an output tensor cannot change what backward reads.
        return hs[1:].copy(), hs[steps].copy(), cs[steps].copy()

    @staticmethod
    def backward(
        ctx: Context, grad_output: np.ndarray, grad_h_n: np.ndarray, grad_c_n: np.ndarray
    ) -> tuple:
        x, weight_ih, weight_hh, hs, cs, activations, tanh_cs = ctx.saved_tensors
        needs_x, needs_h0, needs_c0, needs_w_ih, needs_w_hh, needs_b_ih, needs_b_hh, _ = (
            ctx.needs_input_grad
        )
        steps, batch, input_size = x.shape
        hidden = weight_hh.shape[1]
        dtype = x.dtype
        backward_kernel = ctx.kernels.backward

        grad_gates = np.empty_like(activations)
        grad_h = np.array(grad_h_n, dtype=dtype)
        grad_h_total = np.empty_like(grad_h)
        # Two buffers for dc, because the kernel reads one step's dc and writes the next.
        grad_c, grad_c_next = np.empty_like(grad_h), np.array(grad_c_n, dtype=dtype)
        for t in range(steps - 1, -1, -1):
            np.add(grad_output[t], grad_h, out=grad_h_total)
            backward_kernel(
                grad_h_total, grad_c_next, cs[t], activations[t], tanh_cs[t],
                out=(grad_gates[t], grad_c),
            )
            grad_c, grad_c_next = grad_c_next, grad_c
            if t > 0 or needs_h0:
                np.matmul(grad_gates[t], weight_hh, out=grad_h)

        all_grad_gates = grad_gates.reshape(steps * batch, 4 * hidden)
        all_x = x.reshape(steps * batch, input_size)
        all_h = hs[:steps].reshape(steps * batch, hidden)
        grad_x = (all_grad_gates @ weight_ih).reshape(x.shape) if needs_x else None
        grad_weight_ih = all_grad_gates.T @ all_x if needs_w_ih else None
        grad_weight_hh = all_grad_gates.T @ all_h if needs_w_hh else None
        grad_bias = all_grad_gates.sum(axis=0)
        return (
            grad_x,
            grad_h if needs_h0 else None,
            grad_c_next if needs_c0 else None,
            grad_weight_ih,
            grad_weight_hh,
            grad_bias if needs_b_ih else None,
            grad_bias.copy() if needs_b_hh else None,
            None,
        )


def _check_floating(name: str, **tensors: Tensor | None) -> None:
    for label, value in tensors.items():
        if value is not None and value.dtype.kind != "f":
            raise DTypeError(
                f"{name}: {label} must be a floating tensor (float32 or float64), got dtype "
                f"{value.dtype}. Convert it first, e.g. with .float()"
            )


def _lstm_sizes(
    name: str, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor | None, bias_hh: Tensor | None
) -> tuple[int, int]:
    """Check the weight layouts and return (input_size I, hidden_size H)."""
    if weight_ih.ndim != 2 or weight_ih.shape[0] % 4 != 0:
        raise ShapeError(
            f"{name}: weight_ih must have shape (4*hidden_size, input_size), "
            f"got shape {weight_ih.shape}"
        )
    hidden = weight_ih.shape[0] // 4
    if weight_hh.shape != (4 * hidden, hidden):
        raise ShapeError(
            f"{name}: weight_hh has shape {weight_hh.shape}, expected {(4 * hidden, hidden)} = "
            f"(4*hidden_size, hidden_size) for weight_ih of shape {weight_ih.shape}"
        )
    for label, bias in (("bias_ih", bias_ih), ("bias_hh", bias_hh)):
        if bias is not None and bias.shape != (4 * hidden,):
            raise ShapeError(
                f"{name}: {label} has shape {bias.shape}, "
                f"expected ({4 * hidden},) = (4*hidden_size,)"
            )
    return weight_ih.shape[1], hidden


def _state_pair(name: str, hx: Any) -> tuple[Tensor, Tensor]:
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        raise TypeError(
            f"{name}: hx must be a pair (h, c) of tensors or None, got {type(hx).__name__}"
        )
    return _as_tensor(hx[0]), _as_tensor(hx[1])


def _check_state(name: str, label: str, state: Tensor, expected: tuple, meaning: str) -> None:
    if state.shape != expected:
        raise ShapeError(
            f"{name}: {label} has shape {state.shape}, expected {expected} = {meaning}"
        )


def _common_dtype(*tensors: Tensor | None) -> list:
    """Cast floating tensors of mixed dtypes to the widest one, as linear() does."""
    present = [t for t in tensors if t is not None]
    dtype = np.result_type(*(t.dtype for t in present))
    return [None if t is None else cast(t, dtype) for t in tensors]


def lstm_cell(
    x: Any,
    hx: Any,
    weight_ih: Any,
    weight_hh: Any,
    bias_ih: Any = None,
    bias_hh: Any = None,
) -> tuple[Tensor, Tensor]:
    """Run one LSTM step (the formulas are in :class:`LSTMCell`).

    Args:
        x: (N, I) input, or (I,) for a single sample.
        hx: the pair (h, c), each (N, H) (or (H,) for a single sample), or None
            for zeros.
        weight_ih: (4H, I), gates stacked i, f, g, o.
        weight_hh: (4H, H).
        bias_ih, bias_hh: (4H,) or None.

    Returns:
        (h', c'), each (N, H), or (H,) for a single sample.
    """
    name = "lstm_cell"
    x = _as_tensor(x)
    weight_ih, weight_hh = _as_tensor(weight_ih), _as_tensor(weight_hh)
    bias_ih = None if bias_ih is None else _as_tensor(bias_ih)
    bias_hh = None if bias_hh is None else _as_tensor(bias_hh)
    _check_floating(
        name, input=x, weight_ih=weight_ih, weight_hh=weight_hh, bias_ih=bias_ih, bias_hh=bias_hh
    )
    input_size, hidden = _lstm_sizes(name, weight_ih, weight_hh, bias_ih, bias_hh)

    if x.ndim not in (1, 2):
        raise ShapeError(
            f"{name}: expected a 2-D input (batch, input_size) or a 1-D input (input_size,), "
            f"got a {x.ndim}-D input of shape {x.shape}"
        )
    if x.shape[-1] != input_size:
        raise ShapeError(
            f"{name}: input has {x.shape[-1]} features in its last dimension "
            f"(input shape {x.shape}) "
            f"but weight_ih expects input_size={input_size} (weight_ih shape {weight_ih.shape})"
        )
    batched = x.ndim == 2
    state_shape = (x.shape[0], hidden) if batched else (hidden,)
    meaning = "(batch, hidden_size)" if batched else "(hidden_size,) for a 1-D input"

    if hx is None:
        h = Tensor(np.zeros(state_shape, dtype=x.dtype))
        c = Tensor(np.zeros(state_shape, dtype=x.dtype))
    else:
        h, c = _state_pair(name, hx)
        _check_floating(name, h=h, c=c)
        _check_state(name, "h", h, state_shape, meaning)
        _check_state(name, "c", c, state_shape, meaning)

    x, h, c, weight_ih, weight_hh, bias_ih, bias_hh = _common_dtype(
        x, h, c, weight_ih, weight_hh, bias_ih, bias_hh
    )
    if not batched:
        x, h, c = reshape(x, (1, input_size)), reshape(h, (1, hidden)), reshape(c, (1, hidden))

    kernels = _lstm_kernels()
    h_next, c_next = LSTMCell.apply(x, h, c, weight_ih, weight_hh, bias_ih, bias_hh, kernels)

    if not batched:
        h_next, c_next = reshape(h_next, (hidden,)), reshape(c_next, (hidden,))
    return h_next, c_next


def lstm_layer(
    x: Any,
    hx: Any,
    weight_ih: Any,
    weight_hh: Any,
    bias_ih: Any = None,
    bias_hh: Any = None,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Run one LSTM layer over a sequence (the formulas are in :class:`LSTMLayer`).

    Args:
        x: (T, N, I) input, time first.
        hx: the pair (h0, c0), each (N, H), or None for zeros.
        weight_ih: (4H, I), gates stacked i, f, g, o.
        weight_hh: (4H, H).
        bias_ih, bias_hh: (4H,) or None.

    Returns:
        ``output, (h_n, c_n)``: output (T, N, H) contains the hidden state
        after every step, and h_n and c_n (N, H) are the state after the last
        step.
    """
    name = "lstm_layer"
    x = _as_tensor(x)
    weight_ih, weight_hh = _as_tensor(weight_ih), _as_tensor(weight_hh)
    bias_ih = None if bias_ih is None else _as_tensor(bias_ih)
    bias_hh = None if bias_hh is None else _as_tensor(bias_hh)
    _check_floating(
        name, input=x, weight_ih=weight_ih, weight_hh=weight_hh, bias_ih=bias_ih, bias_hh=bias_hh
    )
    input_size, hidden = _lstm_sizes(name, weight_ih, weight_hh, bias_ih, bias_hh)

    if x.ndim != 3:
        raise ShapeError(
            f"{name}: expected a 3-D input (seq_len, batch, input_size), "
            f"got a {x.ndim}-D input of shape {x.shape}"
        )
    if x.shape[2] != input_size:
        raise ShapeError(
            f"{name}: input has {x.shape[2]} features in its last dimension "
            f"(input shape {x.shape}) "
            f"but weight_ih expects input_size={input_size} (weight_ih shape {weight_ih.shape})"
        )
    if x.shape[0] == 0:
        raise ShapeError(
            f"{name}: the input sequence is empty (input shape {x.shape}); expected seq_len >= 1"
        )
    state_shape = (x.shape[1], hidden)

    if hx is None:
        h0 = Tensor(np.zeros(state_shape, dtype=x.dtype))
        c0 = Tensor(np.zeros(state_shape, dtype=x.dtype))
    else:
        h0, c0 = _state_pair(name, hx)
        _check_floating(name, h0=h0, c0=c0)
        _check_state(name, "h0", h0, state_shape, "(batch, hidden_size)")
        _check_state(name, "c0", c0, state_shape, "(batch, hidden_size)")

    x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh = _common_dtype(
        x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh
    )
    kernels = _lstm_kernels()
    output, h_n, c_n = LSTMLayer.apply(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, kernels)
    return output, (h_n, c_n)
