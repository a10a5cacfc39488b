"""``ImageFolder``: a dataset of image files sorted into one sub-folder per class.

    root/cat/001.png
    root/cat/002.jpg
    root/dog/a.jpeg

The class names are the sub-folder names in sorted order, and a class's index
is its position in that order (``cat`` -> 0, ``dog`` -> 1), as in torchvision.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import Dataset

__all__ = ["IMG_EXTENSIONS", "ImageFolder"]

IMG_EXTENSIONS = (".png", ".jpg", ".jpeg")


class ImageFolder(Dataset):
    """Images in ``root/<class>/<file>``, read with PIL.

    ``dataset[i]`` is ``(image, class_index)``. Without a transform, ``image`` is
    a uint8 array (H, W, 3) in RGB (grey-scale and palette files are converted).
    Files whose extension is not in ``IMG_EXTENSIONS`` (any case) are skipped;
    the images are read when indexed, not up front.

    Args:
        root: the folder holding one sub-folder per class.
        transform: called on each image array.
        target_transform: called on each class index.

    Attributes:
        classes: the class names, sorted.
        class_to_idx: class name -> index.
        samples: ``(path, class_index)`` per image, sorted by class then file name.
        targets: the class index of each sample.

    Raises:
        FileNotFoundError: ``root`` does not exist, has no class sub-folders, or
            a class sub-folder contains no image.
        NotADirectoryError: ``root`` is a file.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
    ) -> None:
        self.root = Path(root).expanduser()
        self.transform = transform
        self.target_transform = target_transform

        if not self.root.exists():
            raise FileNotFoundError(f"ImageFolder: root folder {self.root} does not exist")
        if not self.root.is_dir():
            raise NotADirectoryError(f"ImageFolder: root {self.root} is a file, expected a folder")

        self.classes = sorted(entry.name for entry in self.root.iterdir() if entry.is_dir())
        if not self.classes:
            raise FileNotFoundError(
                f"ImageFolder: no images in {self.root}: it has no class sub-folders; put the "
                f"images of each class ({', '.join(IMG_EXTENSIONS)}) in their own sub-folder, "
                f"e.g. {self.root / 'cat' / '001.png'}"
            )
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}

        self.samples: list[tuple[Path, int]] = []
        for name in self.classes:
            folder = self.root / name
            files = sorted(
                path
                for path in folder.rglob("*")
                if path.is_file() and path.suffix.lower() in IMG_EXTENSIONS
            )
            if not files:
                raise FileNotFoundError(
                    f"ImageFolder: no images in class folder {folder} "
                    f"(looked for files ending in {', '.join(IMG_EXTENSIONS)}, any case)"
                )
            self.samples.extend((path, self.class_to_idx[name]) for path in files)

        self.targets = [index for _, index in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        from PIL import Image

        path, target = self.samples[index]
        try:
            with Image.open(path) as image:
                array: Any = np.asarray(image.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as error:
            raise OSError(f"ImageFolder: cannot read image {path!r}: {error}") from error

        if self.transform is not None:
            array = self.transform(array)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return array, target

    def __repr__(self) -> str:
        return (
            f"ImageFolder(root={str(self.root)!r}, classes={len(self.classes)}, "
            f"images={len(self)})"
        )
