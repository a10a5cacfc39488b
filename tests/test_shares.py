"""Shares of the batch: how kernels split a batch over threads and hold BLAS to one thread."""

import concurrent.futures
import itertools
import multiprocessing
import os
import queue
import subprocess
import sys
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import threadpoolctl

from tinymbm.kernels import conv as K
from tinymbm.kernels import shares


def blas_threads():
    """Return {library path: thread count} of every BLAS library loaded in this process.

    Importing Numba may load SciPy's own OpenBLAS beside NumPy's, so checks
    compare the libraries that were loaded at the first reading.
    """
    return {pool["filepath"]: pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"}


def assert_blas_restored(before):
    after = blas_threads()
    assert {path: after[path] for path in before} == before


@pytest.fixture
def two_shares(monkeypatch):
    """Split every batch of two or more samples into two shares, regardless of the BLAS settings and Numba's thread count."""
    monkeypatch.setattr(shares, "share_count", lambda n_batch: max(1, min(2, n_batch)))


@pytest.mark.parametrize("threads", [1, 2, 3, 5])
def test_split_batch_even_ranges(monkeypatch, threads):
    monkeypatch.setattr(shares, "blas_allows_shares", lambda: True)
    monkeypatch.setattr(shares.numba, "get_num_threads", lambda: threads)
    for n_batch in range(12):
        ranges = shares.split_batch(n_batch)
        assert len(ranges) == max(1, min(threads, n_batch)), (threads, n_batch)
        assert ranges[0][0] == 0, ranges
        assert ranges[-1][1] == n_batch, ranges
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges)), ranges
        sizes = [n1 - n0 for n0, n1 in ranges]
        assert max(sizes) - min(sizes) <= 1, ranges


def test_split_batch_one_share_when_blas_spins(monkeypatch):
    monkeypatch.setattr(shares, "blas_allows_shares", lambda: False)
    monkeypatch.setattr(shares.numba, "get_num_threads", lambda: 4)
    assert shares.split_batch(64) == [(0, 64)]


def fake_blas(monkeypatch, timeout, *libraries):
    """Make blas_allows_shares see ``libraries`` and OPENBLAS_THREAD_TIMEOUT=timeout (None: unset)."""
    controller = SimpleNamespace(select=lambda user_api: SimpleNamespace(lib_controllers=list(libraries)))
    monkeypatch.setattr(shares, "_controller", lambda: controller)
    monkeypatch.setattr(shares, "_blas_allows_shares", None)
    if timeout is None:
        monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", timeout)


def library(internal_api="openblas", threading_layer="pthreads", num_threads=2):
    return SimpleNamespace(internal_api=internal_api, threading_layer=threading_layer, num_threads=num_threads)


@pytest.mark.parametrize(
    "timeout, libraries, expected",
    [
        ("4", [library()], True),
        ("16", [library()], True),
        # OpenBLAS's default timeout (unset) and long ones keep threads spinning.
        (None, [library()], False),
        ("28", [library()], False),
        ("", [library()], False),
        ("four", [library()], False),
        # One BLAS thread never spins, whatever the timeout.
        (None, [library(num_threads=1)], True),
        # Other BLAS libraries, or OpenBLAS on OpenMP threads, follow other settings.
        ("4", [library(internal_api="mkl", threading_layer="intel")], False),
        ("4", [library(threading_layer="openmp")], False),
        ("4", [library(), library(internal_api="mkl", threading_layer="intel")], False),
    ],
)
def test_blas_allows_shares_cases(monkeypatch, timeout, libraries, expected):
    fake_blas(monkeypatch, timeout, *libraries)
    assert shares.blas_allows_shares() is expected


def test_run_shares_results_in_order(two_shares):
    seen_threads = set()

    def work(n0, n1):
        seen_threads.add(threading.get_ident())
        return (n0, n1)

    assert shares.run_shares(work, 9) == [(0, 4), (4, 9)]
    assert threading.get_ident() not in seen_threads


def test_run_shares_single_share_runs_here(monkeypatch):
    monkeypatch.setattr(shares, "share_count", lambda n_batch: 1)
    assert shares.run_shares(lambda n0, n1: threading.get_ident(), 8) == [threading.get_ident()]


def test_run_shares_limits_blas_then_restores(two_shares):
    before = blas_threads()

    def work(n0, n1):
        return blas_threads()

    inside = shares.run_shares(work, 4)
    for counts in inside:
        assert all(counts[path] == 1 for path in before), inside
    assert_blas_restored(before)


def test_error_in_a_share_reaches_caller(two_shares):
    before = blas_threads()
    finished = []

    def work(n0, n1):
        if n0 == 0:
            raise RuntimeError("share failed")
        finished.append((n0, n1))

    with pytest.raises(RuntimeError, match="share failed"):
        shares.run_shares(work, 6)
    # The other share ran to its end before the error reached the caller.
    assert finished == [(3, 6)]
    assert_blas_restored(before)


def test_error_in_conv_share_restores_blas(monkeypatch, rng, two_shares):
    before = blas_threads()

    def broken_store(*args):
        raise RuntimeError("store failed")

    monkeypatch.setattr(K, "_store_group", broken_store)
    x = rng.standard_normal((4, 2, 6, 6))
    weight = rng.standard_normal((3, 2, 3, 3))
    with pytest.raises(RuntimeError, match="store failed"):
        K.conv2d_forward(x, weight, None, (1, 1), (0, 0))
    assert_blas_restored(before)


def test_concurrent_callers_get_own_results(rng, two_shares):
    before = blas_threads()
    problems = [
        (rng.standard_normal((6, 3, 12, 11)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4))
        for _ in range(4)
    ]
    expected = [K.reference_conv2d_forward(x, w, b, (1, 1), (1, 1)) for x, w, b in problems]

    def run(index):
        x, w, b = problems[index]
        return [K.conv2d_forward(x, w, b, (1, 1), (1, 1)) for _ in range(5)]

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as callers:
        results = list(callers.map(run, range(4)))
    for index, runs in enumerate(results):
        for y in runs:
            np.testing.assert_allclose(y, expected[index], rtol=1e-12, atol=1e-12, err_msg=f"caller {index}")
    assert_blas_restored(before)


def conv_in_child(queue):
    x = np.arange(4 * 2 * 5 * 5, dtype=np.float64).reshape(4, 2, 5, 5) / 50
    weight = np.ones((3, 2, 3, 3))
    y = K.conv2d_forward(x, weight, None, (1, 1), (1, 1))
    queue.put(float(y.sum()))


@pytest.mark.skipif(sys.platform == "win32", reason="fork is POSIX only")
def test_forked_child_runs_shares(two_shares):
    # The parent's pool threads exist when it forks; the child must start its own.
    here = queue.Queue()
    conv_in_child(here)
    expected = here.get()

    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=conv_in_child, args=(results,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung in the convolution")
    assert child.exitcode == 0
    assert results.get(timeout=5) == expected


def run_python(code, env):
    completed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return completed.stdout.strip()


def test_import_order_sets_thread_timeout():
    env = {key: value for key, value in os.environ.items() if key != "OPENBLAS_THREAD_TIMEOUT"}
    check = "import os; from tinymbm.kernels import shares; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"

    # Imported first, tinymbm sets the timeout before NumPy loads OpenBLAS.
    assert run_python(check, env) == "4"
    # After NumPy, the setting would come too late, so tinymbm leaves it unset.
    assert run_python("import numpy; " + check, env) == "None"
    # A value from the environment wins.
    assert run_python(check, dict(env, OPENBLAS_THREAD_TIMEOUT="10")) == "10"
