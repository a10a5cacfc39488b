"""Tests of tinymbm.serialization: round trips, atomic writes and bad files."""

import math
import os
import zipfile

import numpy as np
import pytest

from tinymbm.serialization import META_KEY, SerializationError, load, save
from tinymbm.tensor import Tensor


def make_checkpoint() -> dict:
    """Return a nested checkpoint with every kind of value a training run stores."""
    rng = np.random.default_rng(7)
    return {
        "model": {
            "conv.weight": rng.standard_normal((2, 1, 3, 3)).astype(np.float32),
            "conv.bias": np.zeros(2, dtype=np.float32),
            "fc.weight": rng.standard_normal((3, 4)),
        },
        "optimizer": {
            "state": {0: {"step": 3, "exp_avg": np.ones((2, 1, 3, 3), np.float32)}},
            "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0, 1, 2]}],
        },
        "epoch": 4,
        "history": {"train_loss": [2.3, 1.1, float("nan")], "val_acc": []},
        "rng": np.random.default_rng(123).bit_generator.state,
        "name": "cnn",
        "finished": False,
        "note": None,
        "step_count": np.int64(12),
    }


def assert_trees_equal(actual, expected, where="root"):
    """Assert equal structure, types and values, comparing arrays with their dtype."""
    assert type(actual) is type(expected), f"{where}: {type(actual)} != {type(expected)}"
    if isinstance(expected, dict):
        assert list(actual) == list(expected), f"{where}: keys {list(actual)} != {list(expected)}"
        for key in expected:
            assert_trees_equal(actual[key], expected[key], f"{where}/{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), f"{where}: lengths differ"
        for index, (a, e) in enumerate(zip(actual, expected)):
            assert_trees_equal(a, e, f"{where}/{index}")
    elif isinstance(expected, np.ndarray):
        assert actual.dtype == expected.dtype, f"{where}: dtype {actual.dtype} != {expected.dtype}"
        np.testing.assert_array_equal(actual, expected, err_msg=where)
    elif isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(actual), f"{where}: {actual} is not NaN"
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


# ---------------------------------------------------------------- round trips


def test_state_dict_round_trip(tmp_path):
    state = {
        "fc.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
        "fc.bias": np.array([0.5, -0.5]),
        "steps": np.array(3),
        "mask": np.array([True, False]),
    }
    path = tmp_path / "state.npz"

    save(state, path)

    assert_trees_equal(load(path), state)


def test_state_dict_entries_readable_by_numpy(tmp_path):
    state = {"fc.weight": np.ones((2, 3), np.float32), "fc.bias": np.zeros(2, np.float32)}
    path = tmp_path / "state.npz"

    save(state, path)

    with np.load(path, allow_pickle=False) as archive:
        assert sorted(archive.files) == sorted([META_KEY, "fc.weight", "fc.bias"])
        np.testing.assert_array_equal(archive["fc.weight"], state["fc.weight"])


def test_checkpoint_round_trip(tmp_path):
    checkpoint = make_checkpoint()
    path = tmp_path / "checkpoint.npz"

    save(checkpoint, path)
    loaded = load(path)

    expected = dict(checkpoint, step_count=12)  # a NumPy scalar comes back as a Python int
    assert_trees_equal(loaded, expected)


def test_checkpoint_rng_state_restores_draws(tmp_path):
    generator = np.random.default_rng(5)
    generator.standard_normal(10)
    path = tmp_path / "rng.npz"

    save({"rng": generator.bit_generator.state}, path)
    expected = generator.standard_normal(4)
    restored = np.random.default_rng()
    restored.bit_generator.state = load(path)["rng"]

    np.testing.assert_array_equal(restored.standard_normal(4), expected)


@pytest.mark.parametrize(
    "obj",
    [
        {"a/b": np.ones(1), "a": {"b": np.zeros(1)}},
        {"x": np.array([{"a": 1}], dtype=object)},
        {"x": Tensor(np.ones(2))},
        {"x": {1, 2}},
        {1.5: np.ones(1)},
        {META_KEY: np.ones(1)},
    ],
    ids=["entry-collision", "object-array", "tensor", "set", "float-key", "reserved-name"],
)
def test_save_rejects_unstorable(tmp_path, obj):
    path = tmp_path / "bad.npz"

    with pytest.raises(SerializationError):
        save(obj, path)

    assert not path.exists(), f"a file was written for {obj!r}"


def test_plain_npz_loads_as_dict(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, weight=np.ones((2, 2)), bias=np.zeros(2))

    loaded = load(path)

    assert sorted(loaded) == ["bias", "weight"]


def test_save_keeps_exact_filename(tmp_path):
    path = tmp_path / "model.ckpt"

    save({"w": np.ones(1)}, path)

    assert os.listdir(tmp_path) == ["model.ckpt"]


# ---------------------------------------------------------------- atomic writes


def write_array_failing_after(count: int, exception: type[BaseException]):
    """Return a stand-in for np.lib.format.write_array that raises on call count + 1.

    The failing call first writes some bytes, as a write cut short by a full disk or an
    interrupt would.
    """
    real_write_array = np.lib.format.write_array
    calls = {"n": 0}

    def write_array(file, array, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > count:
            file.write(b"\x93NUMPY partial")
            raise exception("simulated failure in the middle of a save")
        return real_write_array(file, array, *args, **kwargs)

    return write_array


@pytest.mark.parametrize("exception", [OSError, KeyboardInterrupt])
def test_interrupted_save_keeps_old_file(tmp_path, monkeypatch, exception):
    path = tmp_path / "checkpoint.npz"
    save(make_checkpoint(), path)
    old_bytes = path.read_bytes()
    monkeypatch.setattr(np.lib.format, "write_array", write_array_failing_after(2, exception))

    with pytest.raises(exception):
        save({"model": {"w": np.ones(3), "b": np.ones(3), "c": np.ones(3)}}, path)

    assert path.read_bytes() == old_bytes


@pytest.mark.parametrize("exception", [OSError, KeyboardInterrupt])
def test_interrupted_save_leaves_no_partial_file(tmp_path, monkeypatch, exception):
    path = tmp_path / "checkpoint.npz"
    monkeypatch.setattr(np.lib.format, "write_array", write_array_failing_after(1, exception))

    with pytest.raises(exception):
        save({"w": np.ones(3), "b": np.ones(3)}, path)

    assert os.listdir(tmp_path) == []


def test_interrupted_save_old_file_still_loads(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.npz"
    save({"w": np.arange(3.0)}, path)
    monkeypatch.setattr(np.lib.format, "write_array", write_array_failing_after(0, OSError))

    with pytest.raises(OSError):
        save({"w": np.zeros(3)}, path)

    np.testing.assert_array_equal(load(path)["w"], np.arange(3.0))


# ---------------------------------------------------------------- bad files


def test_load_missing_file(tmp_path):
    path = tmp_path / "absent.npz"

    with pytest.raises(FileNotFoundError, match="absent.npz"):
        load(path)


def test_save_missing_folder(tmp_path):
    path = tmp_path / "no" / "such" / "folder" / "state.npz"

    with pytest.raises(FileNotFoundError, match="folder"):
        save({"w": np.ones(1)}, path)


def corrupt_random_bytes(path):
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())


def corrupt_truncated(path):
    save(make_checkpoint(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def corrupt_text(path):
    path.write_text("not a checkpoint\n")


def corrupt_empty(path):
    path.write_bytes(b"")


def corrupt_metadata_json(path):
    with zipfile.ZipFile(path, "w") as archive, archive.open(META_KEY + ".npy", "w") as member:
        np.lib.format.write_array(member, np.array("{not json"))


def corrupt_metadata_reference(path):
    save({"w": np.ones(2)}, path)
    with np.load(path) as archive:
        meta = str(archive[META_KEY])
    with zipfile.ZipFile(path, "w") as archive, archive.open(META_KEY + ".npy", "w") as member:
        np.lib.format.write_array(member, np.array(meta))


def corrupt_member_bytes(path):
    save({"w": np.arange(1000.0)}, path)
    data = bytearray(path.read_bytes())
    # Flip bytes inside the array data, so the zip member's CRC check fails on read.
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(16)
    data[middle] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "corrupt",
    [
        corrupt_random_bytes,
        corrupt_truncated,
        corrupt_text,
        corrupt_empty,
        corrupt_metadata_json,
        corrupt_metadata_reference,
        corrupt_member_bytes,
    ],
)
def test_load_corrupt_file(tmp_path, corrupt):
    path = tmp_path / "broken.npz"
    corrupt(path)

    with pytest.raises(SerializationError) as error:
        load(path)

    assert "broken.npz" in str(error.value), f"{corrupt.__name__}: {error.value}"


def test_load_newer_format_version(tmp_path):
    path = tmp_path / "future.npz"
    meta = '{"format": "tinymbm", "version": 99, "tree": null}'
    with zipfile.ZipFile(path, "w") as archive, archive.open(META_KEY + ".npy", "w") as member:
        np.lib.format.write_array(member, np.array(meta))

    with pytest.raises(SerializationError, match="version 99"):
        load(path)


def test_load_rejects_pickled_objects(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, payload=np.array([{"a": 1}], dtype=object), allow_pickle=True)

    with pytest.raises(SerializationError, match="pickled.npz"):
        load(path)


def test_load_rejects_npy_file(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(SerializationError, match="single .npy array"):
        load(path)


def test_load_rejects_foreign_zip(tmp_path):
    import zipfile

    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"x")
    with pytest.raises(SerializationError, match="torch.load"):
        load(path)
