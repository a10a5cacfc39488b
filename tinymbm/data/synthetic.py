"""Synthetic MNIST-style digits, rendered from font glyphs and distorted at random.

The lessons fall back to these when real MNIST is not on disk. Each image is
made the way MNIST's were normalised, from a glyph instead of a scan:

1. Templates (once per process): each digit 0-9 is drawn with PIL in several
   fonts that ship with matplotlib, at several stroke widths, on a 96x96 canvas
   where a digit is about 40 px tall. A Gaussian blur (sigma 1 px) stops the
   later 2x reduction from aliasing thin strokes.
2. Per image, a random linear map ``A = R(theta) @ Shear(k) @ diag(1, a)``
   acting on (row, column) offsets: rotation by ``theta``, a slant that moves
   columns by ``k`` per row, and a width factor ``a``.
3. As in MNIST, the distorted glyph is scaled by ``s`` so its bounding box fits a
   ``box x box`` square (``box <= 20``) with its aspect ratio kept. Its centre of
   mass is then placed at the centre of the 28x28 field (plus a small jitter).
   An affine map moves the centre of mass to the image of the centre of mass,
   so the template's centre of mass ``m`` gives it without rendering.
4. Each output pixel ``q`` reads the template at ``p = m + (s A)^-1 (q - centre)``
   with bilinear interpolation, all images of a chunk at once in NumPy.
5. Ink: divided by the image's maximum and multiplied by a gain >= 1 (then
   clipped at 1), so stroke cores saturate as in MNIST. A random gamma thins or
   thickens the strokes, Gaussian noise is added, and the result is rounded to
   uint8.

Everything random comes from one ``numpy.random.Generator`` seeded by
``(seed, split)``, so a seed gives the same images on every run, and the
training and test splits of one seed differ.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .datasets import Dataset
from .idx import write_idx

__all__ = ["SyntheticDigits", "make_synthetic_digits", "save_synthetic_idx"]

IMAGE_SIZE = 28
NUM_CLASSES = 10

# Fonts bundled with matplotlib, upright and slanted, sans and serif.
FONT_FILES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Italic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralItalic.ttf",
    "cmss10.ttf",
    "cmti10.ttf",
)
STROKE_WIDTHS = (0, 1, 2)  # PIL stroke_width in template pixels (about half an output pixel each)
TEMPLATE_SIZE = 96
FONT_SIZE = 56  # digits come out about 40 template pixels tall
BLUR_SIGMA = 1.0  # template pixels
HULL_DIRECTIONS = 64  # directions in which each glyph's extreme ink point is kept

# Ranges of the random distortion.
MAX_ROTATION = np.deg2rad(12.0)
MAX_SHEAR = 0.35
MAX_LOG_ASPECT = 0.25
BOX_RANGE = (16.0, 20.0)
MAX_JITTER = 1.0
GAIN_RANGE = (1.0, 1.6)
LOG_GAMMA_RANGE = (-0.4, 0.4)

CHUNK = 2048  # images warped at once, which bounds the memory of the temporaries


class _Templates:
    """Glyph templates with the per-template data the warp needs.

    Attributes:
        images: float32 (T, S, S) in [0, 1], S = TEMPLATE_SIZE, zero border.
        digits: int64 (T,), the digit each template shows.
        centers: float64 (T, 2), intensity-weighted centre of mass (row, column).
        extremes: float64 (T, K, 2), ink points farthest out in K directions,
            relative to the centre of mass: the bounding box of ``A @ p`` over the
            ink equals the one over these points (up to a 1 - cos(pi/K) error).
    """

    def __init__(
        self, images: np.ndarray, digits: np.ndarray, centers: np.ndarray, extremes: np.ndarray
    ) -> None:
        self.images = images
        self.digits = digits
        self.centers = centers
        self.extremes = extremes


def _font_paths() -> list[Path]:
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    paths = [folder / name for name in FONT_FILES if (folder / name).is_file()]
    if not paths:
        raise FileNotFoundError(
            f"no font for the synthetic digits: none of {', '.join(FONT_FILES)} is in {folder}; "
            f"reinstall matplotlib, which ships them"
        )
    return paths


def _gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Blur (T, S, S) images with a separable Gaussian, zero outside the canvas."""
    radius = int(np.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()

    for axis in (1, 2):
        pad_width = [(0, 0), (0, 0), (0, 0)]
        pad_width[axis] = (radius, radius)
        padded = np.pad(images, pad_width)
        size = images.shape[axis]
        blurred = np.zeros_like(images)
        for weight, offset in zip(weights, offsets):
            start = radius + offset
            blurred += weight * np.take(padded, np.arange(start, start + size), axis=axis)
        images = blurred

    return images


@functools.lru_cache(maxsize=1)
def _templates() -> _Templates:
    """Render, blur and measure every (digit, font, stroke width) template, once."""
    from PIL import Image, ImageDraw, ImageFont

    images, digits = [], []
    middle = TEMPLATE_SIZE / 2
    for font_path in _font_paths():
        font = ImageFont.truetype(str(font_path), FONT_SIZE)
        for stroke_width in STROKE_WIDTHS:
            for digit in range(NUM_CLASSES):
                canvas = Image.new("L", (TEMPLATE_SIZE, TEMPLATE_SIZE), 0)
                ImageDraw.Draw(canvas).text(
                    (middle, middle),
                    str(digit),
                    fill=255,
                    font=font,
                    anchor="mm",
                    stroke_width=stroke_width,
                    stroke_fill=255,
                )
                images.append(np.asarray(canvas, dtype=np.float32) / 255.0)
                digits.append(digit)

    stack = _gaussian_blur(np.stack(images), BLUR_SIGMA)

    # A zero border: the bilinear lookup clamps coordinates to the canvas, so
    # every point outside it reads 0.
    stack[:, [0, -1], :] = 0.0
    stack[:, :, [0, -1]] = 0.0

    rows, columns = np.mgrid[0:TEMPLATE_SIZE, 0:TEMPLATE_SIZE].astype(np.float64)
    mass = stack.sum(axis=(1, 2), dtype=np.float64)
    centers = np.stack(
        [(stack * rows).sum(axis=(1, 2)) / mass, (stack * columns).sum(axis=(1, 2)) / mass], axis=1
    )

    angles = np.linspace(0.0, 2 * np.pi, HULL_DIRECTIONS, endpoint=False)
    directions = np.stack([np.sin(angles), np.cos(angles)])  # (2, K), (row, column)
    extremes = np.empty((len(stack), HULL_DIRECTIONS, 2))
    for t, image in enumerate(stack):
        ink = np.argwhere(image > 0.25).astype(np.float64) - centers[t]
        extremes[t] = ink[np.argmax(ink @ directions, axis=0)]

    return _Templates(stack, np.asarray(digits, dtype=np.int64), centers, extremes)


def _warp_chunk(
    templates: _Templates,
    template_index: np.ndarray,
    inverse: np.ndarray,
    output_center: np.ndarray,
) -> np.ndarray:
    """Sample templates through affine maps with bilinear interpolation.

    For image b, output pixel q = (i, j) reads template ``template_index[b]`` at
    ``p = centers[t] + inverse[b] @ (q - output_center[b])``.

    Args:
        templates: the glyph templates.
        template_index: int (B,).
        inverse: float (B, 2, 2), the map from output offsets to template offsets.
        output_center: float (B, 2), where the centre of mass lands (row, column).

    Returns:
        float32 (B, 28, 28).
    """
    size = TEMPLATE_SIZE
    grid = np.arange(IMAGE_SIZE, dtype=np.float32)
    di = grid[None, :, None] - output_center[:, 0, None, None].astype(np.float32)
    dj = grid[None, None, :] - output_center[:, 1, None, None].astype(np.float32)
    inverse = inverse.astype(np.float32)
    center = templates.centers[template_index].astype(np.float32)

    m = inverse[:, :, :, None, None]
    r = center[:, 0, None, None] + m[:, 0, 0] * di + m[:, 0, 1] * dj
    c = center[:, 1, None, None] + m[:, 1, 0] * di + m[:, 1, 1] * dj

    # Clamp to the canvas: the border is zero, so points outside read 0.
    np.clip(r, 0.0, size - 1.001, out=r)
    np.clip(c, 0.0, size - 1.001, out=c)
    r0 = r.astype(np.int64)
    c0 = c.astype(np.int64)
    fr = r - r0
    fc = c - c0

    flat = templates.images.reshape(-1)
    base = template_index[:, None, None] * (size * size) + r0 * size + c0
    top = flat[base] * (1 - fc) + flat[base + 1] * fc
    bottom = flat[base + size] * (1 - fc) + flat[base + size + 1] * fc
    return top * (1 - fr) + bottom * fr


def make_synthetic_digits(
    n: int, seed: int | None = 0, train: bool = True, noise: float = 0.06
) -> tuple[np.ndarray, np.ndarray]:
    """Make ``n`` synthetic MNIST-style digit images and their labels.

    The labels are balanced: each digit appears ``n // 10`` or ``n // 10 + 1``
    times, in random order.

    Args:
        n: number of images (>= 0).
        seed: the seed; ``None`` draws one from ``tinymbm.random.generator()``.
        train: which split; the two splits of one seed differ.
        noise: the largest standard deviation of the additive Gaussian noise,
            in units of full ink (each image draws its own from [0, noise]).

    Returns:
        images: uint8 (n, 28, 28), 0 background to 255 full ink.
        labels: int64 (n,), values 0..9.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"make_synthetic_digits: n must be an int >= 0, got {n!r}")
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"make_synthetic_digits: noise must be in [0, 1], got {noise!r}")
    if seed is None:
        from .. import random as tm_random

        seed = int(tm_random.generator().integers(2**63))
    rng = np.random.default_rng([int(seed), 0 if train else 1])
    templates = _templates()

    # Labels, then a template of that digit (a font and a stroke width) per image.
    labels = np.arange(n, dtype=np.int64) % NUM_CLASSES
    rng.shuffle(labels)
    per_digit = len(templates.digits) // NUM_CLASSES
    variant = rng.integers(0, per_digit, size=n)
    template_index = variant * NUM_CLASSES + labels

    # The random linear map A = R(theta) @ Shear(k) @ diag(1, a), on (row, column).
    theta = rng.uniform(-MAX_ROTATION, MAX_ROTATION, size=n)
    shear = rng.uniform(-MAX_SHEAR, MAX_SHEAR, size=n)
    aspect = np.exp(rng.uniform(-MAX_LOG_ASPECT, MAX_LOG_ASPECT, size=n))
    cos, sin = np.cos(theta), np.sin(theta)
    rotation = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    shear_matrix = np.zeros((n, 2, 2))
    shear_matrix[:, 0, 0] = 1.0
    shear_matrix[:, 1, 0] = shear
    shear_matrix[:, 1, 1] = 1.0
    linear = rotation @ shear_matrix * np.stack([np.ones(n), aspect], -1)[:, None, :]

    box = rng.uniform(*BOX_RANGE, size=n)
    output_center = (IMAGE_SIZE - 1) / 2 + rng.uniform(-MAX_JITTER, MAX_JITTER, size=(n, 2))
    gain = rng.uniform(*GAIN_RANGE, size=n).astype(np.float32)
    gamma = np.exp(rng.uniform(*LOG_GAMMA_RANGE, size=n)).astype(np.float32)
    sigma = rng.uniform(0.0, noise, size=n).astype(np.float32)

    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for start in range(0, n, CHUNK):
        part = slice(start, min(start + CHUNK, n))

        # MNIST's normalisation: scale the glyph so its bounding box fits a
        # box x box square with its aspect ratio kept. The warp then puts its
        # centre of mass at output_center.
        points = np.einsum("bij,bkj->bki", linear[part], templates.extremes[template_index[part]])
        extent = points.max(axis=1) - points.min(axis=1) + 1.0
        scale = box[part] / extent.max(axis=1)
        inverse = np.linalg.inv(linear[part]) / scale[:, None, None]
        ink = _warp_chunk(templates, template_index[part], inverse, output_center[part])

        peak = np.maximum(ink.max(axis=(1, 2), keepdims=True), 1e-6)
        ink = np.minimum(ink / peak * gain[part, None, None], 1.0)
        ink **= gamma[part, None, None]
        ink += sigma[part, None, None] * rng.standard_normal(ink.shape, dtype=np.float32)

        images[part] = np.rint(np.clip(ink, 0.0, 1.0) * 255.0).astype(np.uint8)

    return images, labels


class SyntheticDigits(Dataset):
    """A dataset of synthetic MNIST-style digits with MNIST's interface.

    ``dataset[i]`` is ``(image, label)``: without a transform, the uint8 array
    (28, 28) and an int in 0..9.

    Args:
        n: number of examples (default: 60,000 for the training split and
            10,000 for the test split, as MNIST).
        train: which split; the two splits of one seed differ.
        seed: the seed; ``None`` draws one from ``tinymbm.random.generator()``.
        transform: called on each image.
        target_transform: called on each label.
        noise: the largest noise standard deviation (see ``make_synthetic_digits``).

    Attributes:
        data: uint8 (n, 28, 28).
        targets: int64 (n,).
        classes: ``"0 - zero"`` ... ``"9 - nine"``, as MNIST.
    """

    classes: ClassVar[list[str]] = [
        f"{d} - {word}"
        for d, word in enumerate(
            ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
        )
    ]

    def __init__(
        self,
        n: int | None = None,
        train: bool = True,
        seed: int | None = 0,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
        noise: float = 0.06,
    ) -> None:
        if n is None:
            n = 60_000 if train else 10_000
        self.train = bool(train)
        self.seed = seed
        self.transform = transform
        self.target_transform = target_transform
        self.data, self.targets = make_synthetic_digits(n, seed=seed, train=train, noise=noise)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image: Any = self.data[index]
        label: Any = int(self.targets[index])

        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label

    def arrays(self) -> tuple[np.ndarray, ...] | None:
        if self.transform is not None or self.target_transform is not None:
            return None
        return self.data, self.targets

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return f"SyntheticDigits(split={split!r}, examples={len(self)}, seed={self.seed!r})"


def save_synthetic_idx(
    folder: str | os.PathLike, n_train: int = 60_000, n_test: int = 10_000, seed: int = 0
) -> list[Path]:
    """Write synthetic digits as the four gzip-compressed MNIST IDX files in ``folder``.

    ``MNIST(root=folder)`` then loads them like real MNIST.

    Returns:
        The four paths written.
    """
    folder = Path(folder)
    paths = []
    for train, n, prefix in ((True, n_train, "train"), (False, n_test, "t10k")):
        images, labels = make_synthetic_digits(n, seed=seed, train=train)
        paths.append(write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images))
        paths.append(write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels.astype(np.uint8)))
    return paths
