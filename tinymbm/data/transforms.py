"""Image transforms with torchvision's names: ``Compose``, ``ToTensor``, ``Normalize``, ``Resize``.

Layouts: an image array is (H, W) or (H, W, C), as PIL and the datasets return
it. A Tensor image is (C, H, W), or (..., C, H, W) for ``Normalize``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tinymbm.errors import DTypeError, ShapeError
from tinymbm.tensor import Tensor

__all__ = ["Compose", "Lambda", "Normalize", "Resize", "ToTensor"]


def _as_image_array(image: Any, name: str) -> np.ndarray:
    """Return a NumPy array for an array, a PIL image or a Tensor."""
    if isinstance(image, Tensor):
        return image.data
    if isinstance(image, np.ndarray):
        return image
    if hasattr(image, "getbands"):  # a PIL image
        return np.asarray(image)
    raise TypeError(
        f"{name}: expected a NumPy array, a PIL image or a Tensor, got {type(image).__name__}"
    )


class Compose:
    """Apply transforms one after another: ``Compose([f, g])(x) == g(f(x))``."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: Any) -> Any:
        for transform in self.transforms:
            image = transform(image)
        return image

    def __repr__(self) -> str:
        inner = "".join(f"\n    {transform!r}," for transform in self.transforms)
        return f"Compose([{inner}\n])"


class Lambda:
    """Wrap a function as a transform."""

    def __init__(self, function: Callable[[Any], Any]) -> None:
        if not callable(function):
            raise TypeError(f"Lambda: expected a callable, got {type(function).__name__}")
        self.function = function

    def __call__(self, image: Any) -> Any:
        return self.function(image)

    def __repr__(self) -> str:
        return f"Lambda({getattr(self.function, '__name__', repr(self.function))})"


class ToTensor:
    """Convert an image array (H, W) or (H, W, C) to a Tensor (C, H, W).

    uint8 values are divided by 255, giving float32 in [0, 1]. Floating arrays
    keep their values and dtype (float16 becomes float32), as in torchvision.
    A PIL image is read as its array first.
    """

    def __call__(self, image: Any) -> Tensor:
        array = _as_image_array(image, "ToTensor")

        if array.ndim == 2:
            array = array[:, :, None]
        if array.ndim != 3:
            raise ShapeError(
                f"ToTensor: expected an image of shape (H, W) or (H, W, C), got {array.shape}"
            )

        if array.dtype == np.uint8:
            array = array.astype(np.float32) / np.float32(255.0)
        elif array.dtype == np.float16:
            array = array.astype(np.float32)
        elif array.dtype.kind != "f":
            raise DTypeError(
                f"ToTensor: expected a uint8 or floating image, got dtype {array.dtype}; "
                f"convert it first (e.g. image.astype(np.float32) / max_value)"
            )

        return Tensor(np.ascontiguousarray(array.transpose(2, 0, 1)))

    def __repr__(self) -> str:
        return "ToTensor()"


class Normalize:
    """Normalise each channel: ``output[..., c, :, :] = (input[..., c, :, :] - mean[c]) / std[c]``.

    Args:
        mean: one value per channel, or one value for all channels.
        std: one value per channel, or one value for all channels (all nonzero).

    Input: a floating Tensor or array (..., C, H, W). Output: the same kind,
    shape and dtype.
    """

    def __init__(self, mean: Sequence[float] | float, std: Sequence[float] | float) -> None:
        self.mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
        self.std = np.atleast_1d(np.asarray(std, dtype=np.float64))

        if self.mean.ndim != 1 or self.std.ndim != 1:
            raise ShapeError(
                f"Normalize: mean and std must be numbers or sequences of numbers, "
                f"got {mean!r} and {std!r}"
            )
        if np.any(self.std == 0):
            raise ValueError(f"Normalize: std must be nonzero in every channel, got {std!r}")

    def __call__(self, image: Any) -> Any:
        array = _as_image_array(image, "Normalize")

        if array.dtype.kind != "f":
            raise DTypeError(
                f"Normalize: expected a floating image, got dtype {array.dtype}; "
                f"apply ToTensor first"
            )
        if array.ndim < 3:
            raise ShapeError(
                f"Normalize: expected an image of shape (..., C, H, W), got {array.shape}"
            )
        channels = array.shape[-3]
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, channels):
                raise ShapeError(
                    f"Normalize: {name} has {len(values)} values but the image has {channels} "
                    f"channels (shape {array.shape})"
                )

        mean = self.mean.astype(array.dtype)[:, None, None]
        std = self.std.astype(array.dtype)[:, None, None]
        output = (array - mean) / std

        return Tensor(output) if isinstance(image, Tensor) else output

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


def _resize_axis(array: np.ndarray, axis: int, out_size: int) -> np.ndarray:
    """Linearly interpolate ``array`` along ``axis`` to ``out_size`` samples.

    Pixel centres are aligned (``align_corners=False``): output index j reads the
    input at ``x = (j + 0.5) * in_size / out_size - 0.5``, clamped to
    [0, in_size - 1], as ``value = (1 - f) * input[floor(x)] + f * input[floor(x) + 1]``
    with ``f = x - floor(x)``.
    """
    in_size = array.shape[axis]
    x = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
    x = np.clip(x, 0.0, in_size - 1)
    low = np.floor(x).astype(np.int64)
    high = np.minimum(low + 1, in_size - 1)

    shape = [1] * array.ndim
    shape[axis] = out_size
    fraction = (x - low).reshape(shape)
    below = np.take(array, low, axis=axis)
    above = np.take(array, high, axis=axis)
    return below * (1 - fraction) + above * fraction


class Resize:
    """Resize an image with bilinear interpolation (NumPy only).

    Args:
        size: ``(h, w)`` for an exact size, or an int: the shorter side becomes
            ``size`` and the longer one ``int(size * long / short)``, keeping the
            aspect ratio, as in torchvision.

    Input: an array (H, W) or (H, W, C), a PIL image, or a Tensor (..., H, W).
    Output: the same kind and layout, with the new H and W. uint8 arrays stay
    uint8 (rounded); floating data keeps its dtype.

    NOTE: there is no antialiasing, so shrinking by more than 2x drops detail
    that torchvision's default (antialias=True) would average in.
    """

    def __init__(self, size: int | Sequence[int]) -> None:
        if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
            sizes: tuple[int, ...] = (int(size),)
        elif isinstance(size, Sequence) and len(size) == 2 and all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size
        ):
            sizes = (int(size[0]), int(size[1]))
        else:
            raise TypeError(f"Resize: size must be an int or a pair of ints (h, w), got {size!r}")
        if any(s <= 0 for s in sizes):
            raise ValueError(f"Resize: size must be positive, got {size!r}")
        self.size = sizes[0] if len(sizes) == 1 else sizes

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Return (new_height, new_width) for an input of height x width."""
        if isinstance(self.size, tuple):
            return self.size
        short, long = sorted((height, width))
        new_long = int(self.size * long / short)
        return (self.size, new_long) if height <= width else (new_long, self.size)

    def __call__(self, image: Any) -> Any:
        array = _as_image_array(image, "Resize")

        if isinstance(image, Tensor):
            if array.ndim < 2:
                raise ShapeError(
                    f"Resize: expected a Tensor of shape (..., H, W), got {array.shape}"
                )
            h_axis, w_axis = array.ndim - 2, array.ndim - 1
        else:
            if array.ndim not in (2, 3):
                raise ShapeError(
                    f"Resize: expected an image of shape (H, W) or (H, W, C), got {array.shape}"
                )
            h_axis, w_axis = 0, 1
        if array.dtype.kind not in "uif":
            raise DTypeError(f"Resize: expected numeric pixels, got dtype {array.dtype}")

        new_height, new_width = self.output_size(array.shape[h_axis], array.shape[w_axis])
        work_dtype = array.dtype if array.dtype.kind == "f" else np.dtype(np.float64)
        output = array.astype(work_dtype, copy=False)
        output = _resize_axis(output, h_axis, new_height)
        output = _resize_axis(output, w_axis, new_width)

        if array.dtype.kind in "ui":
            info = np.iinfo(array.dtype)
            output = np.clip(np.rint(output), info.min, info.max).astype(array.dtype)
        else:
            output = output.astype(array.dtype, copy=False)

        return Tensor(output) if isinstance(image, Tensor) else output

    def __repr__(self) -> str:
        return f"Resize(size={self.size})"
