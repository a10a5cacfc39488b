"""ImageFolder: class discovery, PNG and JPEG reading, and the errors for empty or missing folders."""

import numpy as np
import pytest
from PIL import Image

from tinymbm.data import DataLoader, ImageFolder
from tinymbm.data import transforms as T


def save(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)
    return path


@pytest.fixture
def tree(tmp_path, rng):
    """dog/ (created first) and cat/, PNG and JPEG, RGB and grey, plus a non-image file."""
    root = tmp_path / "pets"
    red = np.zeros((6, 5, 3), np.uint8)
    red[..., 0] = 200
    save(root / "dog" / "b.png", red)
    save(root / "dog" / "a.JPG", np.full((6, 5, 3), 128, np.uint8))
    save(root / "cat" / "x.jpeg", np.full((6, 5, 3), 60, np.uint8))
    save(root / "cat" / "grey.png", rng.integers(0, 256, size=(6, 5), dtype=np.uint8))
    (root / "cat" / "notes.txt").write_text("not an image")
    return root


def test_folder_classes_sorted(tree):
    dataset = ImageFolder(tree)

    assert dataset.classes == ["cat", "dog"]
    assert dataset.class_to_idx == {"cat": 0, "dog": 1}


def test_folder_samples(tree):
    dataset = ImageFolder(tree)

    names = [(path.name, target) for path, target in dataset.samples]

    assert names == [("grey.png", 0), ("x.jpeg", 0), ("a.JPG", 1), ("b.png", 1)]
    assert dataset.targets == [0, 0, 1, 1]
    assert len(dataset) == 4


def test_folder_png_exact(tree):
    image, target = ImageFolder(tree)[3]

    assert image.dtype == np.uint8
    assert image.shape == (6, 5, 3)
    assert target == 1
    assert image[..., 0].tolist() == [[200] * 5] * 6
    assert image[..., 1].max() == 0


def test_folder_grey_png_as_rgb(tree):
    image, _ = ImageFolder(tree)[0]
    grey = np.asarray(Image.open(tree / "cat" / "grey.png"))

    assert image.shape == (6, 5, 3)
    np.testing.assert_array_equal(image[..., 2], grey)


def test_folder_jpeg_close(tree):
    image, _ = ImageFolder(tree)[1]

    # JPEG is lossy: a flat colour comes back within a few levels.
    assert np.abs(image.astype(int) - 60).max() <= 3


def test_folder_transform_and_loader(tree):
    dataset = ImageFolder(tree, transform=T.ToTensor(), target_transform=lambda t: t * 10)

    images, targets = next(iter(DataLoader(dataset, batch_size=4)))

    assert images.shape == (4, 3, 6, 5)
    assert images.dtype == np.float32
    assert targets.data.tolist() == [0, 0, 10, 10]


def test_folder_empty_class_raises(tree):
    (tree / "empty").mkdir()

    with pytest.raises(FileNotFoundError, match="no images in class folder .*empty") as info:
        ImageFolder(tree)
    assert ".png, .jpg, .jpeg" in str(info.value)


def test_folder_without_subfolders_raises(tmp_path):
    save(tmp_path / "loose.png", np.zeros((2, 2), np.uint8))

    with pytest.raises(FileNotFoundError, match="no class sub-folders") as info:
        ImageFolder(tmp_path)
    assert str(tmp_path) in str(info.value)
    assert ".png, .jpg, .jpeg" in str(info.value)


def test_folder_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "absent")


def test_folder_root_is_file(tmp_path):
    (tmp_path / "file").write_text("x")

    with pytest.raises(NotADirectoryError):
        ImageFolder(tmp_path / "file")
