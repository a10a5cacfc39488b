"""Shared test set-up: real data location, a per-test random generator, headless plots."""

# tinymbm comes before NumPy, as in the lessons, so the tests run the kernels
# the way users who import it first do: with OpenBLAS's thread timeout set and
# the convolution split over threads (tinymbm/kernels/shares.py).
import tinymbm  # noqa: F401

# isort: split
import os
import pathlib
import zlib

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

# The real MNIST/FSDD copies sit in shared/data beside the checkout; tests that
# need them read TINYMBM_DATA and skip with a message when it is not set.
_SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
if "TINYMBM_DATA" not in os.environ and _SHARED_DATA.is_dir():
    os.environ["TINYMBM_DATA"] = str(_SHARED_DATA)


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """A generator seeded from the test's id: a fresh seed per case, repeatable per case."""
    seed = zlib.crc32(request.node.nodeid.encode())
    print(f"rng seed for {request.node.nodeid}: {seed}")
    return np.random.default_rng(seed)


def real_data_dir(name: str) -> pathlib.Path:
    """Return $TINYMBM_DATA/name, or skip the test when it is absent."""
    root = os.environ.get("TINYMBM_DATA")
    if not root or not (pathlib.Path(root) / name).is_dir():
        pytest.skip(f"real {name} data not found: set TINYMBM_DATA to a folder containing {name}/")
    return pathlib.Path(root) / name
