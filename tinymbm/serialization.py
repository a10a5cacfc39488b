"""Save and load state dicts and training checkpoints as ``.npz`` files.

A saved object is a tree of dicts, lists and tuples whose leaves are NumPy arrays,
Python numbers, strings, booleans or None. The file is an ordinary NumPy ``.npz``
archive, readable by ``numpy.load`` without tinymbm:

- every array is one entry, named by its path in the tree with the keys joined by
  ``/`` (``model/fc.weight``, ``optimizer/state/0/exp_avg``). So a flat state dict
  ``{"fc.weight": ..., "fc.bias": ...}`` keeps its keys as the entry names;
- one more entry, ``__tinymbm_meta__``, is a JSON string that describes the whole tree,
  with the non-array values inline and each array replaced by a reference to its
  entry. It also records which keys are ints and which sequences are tuples, so
  ``load`` returns the same structure that ``save`` received.

Arrays are read back with ``allow_pickle=False``, so loading a file runs no code from
it. Arrays of dtype object are rejected on save for the same reason.

``save`` writes to a temporary file in the target's folder and then renames it over
the target with ``os.replace``. A save that fails or is interrupted part way leaves
the previous file at ``path`` unchanged.
"""

import json
import os
import tempfile
import zipfile
from typing import Any

import numpy as np

__all__ = ["META_KEY", "SerializationError", "load", "save"]

META_KEY = "__tinymbm_meta__"
SEPARATOR = "/"
FORMAT_VERSION = 1

# Tags of the JSON tree. A JSON object is always a tagged node, never a raw dict, so
# a user's dict that happens to contain one of these keys cannot be misread.
_ARRAY = "ndarray"
_DICT = "dict"
_LIST = "list"
_TUPLE = "tuple"


class SerializationError(ValueError):
    """A file cannot be read as a tinymbm checkpoint, or an object cannot be saved."""


# ---------------------------------------------------------------- encode


def _encode(value: Any, path: list[str], arrays: dict[str, np.ndarray]) -> Any:
    """Return the JSON node for ``value`` and add its arrays to ``arrays``.

    ``path`` is the list of keys from the root to ``value``. It names the archive
    entry of an array and locates a bad value in error messages.
    """
    location = SEPARATOR.join(path) or "<root>"

    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise SerializationError(
                f"save: the array at {location!r} has dtype object, which cannot be "
                "stored without pickle. Convert it to a numeric or string dtype"
            )
        name = SEPARATOR.join(path) or "array"
        if name in arrays or name == META_KEY:
            raise SerializationError(
                f"save: two arrays map to the archive entry {name!r}. Rename a key "
                f"so that no key contains {SEPARATOR!r}"
            )
        arrays[name] = value
        return {"type": _ARRAY, "entry": name}

    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            if isinstance(key, bool) or not isinstance(key, (str, int, np.integer)):
                raise SerializationError(
                    f"save: the dict at {location!r} has the key {key!r} of type "
                    f"{type(key).__name__}, but keys must be str or int"
                )
            key = key if isinstance(key, str) else int(key)
            items.append([key, _encode(item, path + [str(key)], arrays)])
        return {"type": _DICT, "items": items}

    if isinstance(value, (list, tuple)):
        node_type = _TUPLE if isinstance(value, tuple) else _LIST
        items = [_encode(item, path + [str(i)], arrays) for i, item in enumerate(value)]
        return {"type": node_type, "items": items}

    # NumPy scalars (np.float32(0.5), np.int64(3)) become the equal Python number.
    if isinstance(value, np.generic) and not isinstance(value, (np.object_, np.void)):
        value = value.item()

    if value is None or isinstance(value, (bool, int, float, str)):
        return value

    raise SerializationError(
        f"save: cannot store the value at {location!r} of type {type(value).__name__}. "
        "Store NumPy arrays (call .numpy() on a Tensor, .state_dict() on a Module or "
        "optimizer), numbers, strings, None, and dicts, lists or tuples of them"
    )


def _write_archive(file: Any, entries: dict[str, np.ndarray]) -> None:
    """Write ``entries`` to the open binary ``file`` in the layout of ``numpy.savez``.

    Each entry is a ``NAME.npy`` member of an uncompressed zip archive. Writing the
    members here, rather than through ``numpy.savez(file, **entries)``, lets an entry
    be called ``file`` or ``allow_pickle`` without clashing with savez's arguments.
    """
    with zipfile.ZipFile(file, mode="w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in entries.items():
            with archive.open(name + ".npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def save(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` to ``path`` as an ``.npz`` archive, atomically.

    Args:
        obj: a tree of dicts (str or int keys), lists and tuples whose leaves are NumPy
            arrays, Python or NumPy scalars, strings or None. A Module's or
            optimizer's ``state_dict()`` and a checkpoint dict built from them fit.
        path: target file. No suffix is added, so the file has exactly this name.

    Raises:
        SerializationError: ``obj`` contains a value that cannot be stored.
        FileNotFoundError: the folder of ``path`` does not exist.
    """
    path = os.fspath(path)

    arrays: dict[str, np.ndarray] = {}
    tree = _encode(obj, [], arrays)
    meta = json.dumps({"format": "tinymbm", "version": FORMAT_VERSION, "tree": tree})

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"save: the folder {folder!r} of {path!r} does not exist")

    # The temporary file sits in the target's folder, so os.replace is a rename within
    # one file system and therefore atomic.
    fd, temporary_path = tempfile.mkstemp(
        dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as file:
            _write_archive(file, {META_KEY: np.array(meta), **arrays})
            file.flush()
            os.fsync(file.fileno())
        # mkstemp creates the file readable by its owner only; give it the
        # permissions an ordinary open() would have under the current umask.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary_path, 0o666 & ~umask)
        os.replace(temporary_path, path)
    except BaseException:
        # BaseException, so that a KeyboardInterrupt during the write also removes
        # the partial file before it propagates.
        if os.path.exists(temporary_path):
            os.remove(temporary_path)
        raise


# ---------------------------------------------------------------- decode


def _decode(node: Any, arrays: dict[str, np.ndarray], path: str) -> Any:
    """Rebuild the value described by the JSON ``node``, taking arrays from ``arrays``."""
    if not isinstance(node, dict):
        return node

    node_type = node.get("type")

    if node_type == _ARRAY:
        entry = node.get("entry")
        if entry not in arrays:
            raise SerializationError(
                f"load: {path!r} is corrupt: its metadata refers to the array entry "
                f"{entry!r}, which the archive does not contain"
            )
        return arrays[entry]

    if node_type == _DICT:
        return {key: _decode(item, arrays, path) for key, item in node["items"]}

    if node_type == _LIST:
        return [_decode(item, arrays, path) for item in node["items"]]

    if node_type == _TUPLE:
        return tuple(_decode(item, arrays, path) for item in node["items"])

    raise SerializationError(
        f"load: {path!r} is corrupt: its metadata contains a node of unknown type "
        f"{node_type!r}"
    )


def load(path: str | os.PathLike) -> Any:
    """Read an object written by :func:`save`.

    A plain ``.npz`` archive without tinymbm metadata (for example one written by
    ``numpy.savez`` from a converted PyTorch state dict) loads as a dict from entry
    name to array.

    Raises:
        FileNotFoundError: no file exists at ``path``.
        SerializationError: the file is not a readable ``.npz`` archive, or its
            metadata is damaged. The message names the path.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load: no checkpoint file at {path!r}")

    # Every entry is read inside the try block because np.load opens the archive
    # lazily, and a damaged entry only fails when it is read.
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise SerializationError(
                f"load: {path!r} is a single .npy array, not an .npz checkpoint; "
                f"read it with numpy.load"
            )
        with loaded as archive:
            foreign = [name for name in archive.zip.namelist() if not name.endswith(".npy")]
            if foreign:
                raise SerializationError(
                    f"load: {path!r} is a zip archive but not an .npz checkpoint (it contains "
                    f"{foreign[:3]}). A PyTorch checkpoint must be read with torch.load and its "
                    f"tensors converted with .numpy() first."
                )
            arrays = {name: archive[name] for name in archive.files}
    except SerializationError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise SerializationError(
            f"load: {path!r} is not a readable .npz archive because the file is damaged, "
            f"truncated or of another format ({type(exc).__name__}: {exc})"
        ) from exc

    if META_KEY not in arrays:
        return arrays

    meta_text = str(arrays.pop(META_KEY))
    try:
        meta = json.loads(meta_text)
        tree = meta["tree"]
        version = meta["version"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise SerializationError(
            f"load: {path!r} is corrupt: its {META_KEY} entry is not valid metadata "
            f"({type(exc).__name__}: {exc})"
        ) from exc

    if version != FORMAT_VERSION:
        raise SerializationError(
            f"load: {path!r} has format version {version!r}, but this tinymbm reads "
            f"version {FORMAT_VERSION}"
        )

    try:
        return _decode(tree, arrays, path)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, SerializationError):
            raise
        raise SerializationError(
            f"load: {path!r} is corrupt: its metadata tree is malformed "
            f"({type(exc).__name__}: {exc})"
        ) from exc
