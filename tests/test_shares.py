"""Shares of the batch: how kernels split a batch over threads and hold BLAS to one thread."""

import concurrent.futures
import itertools
import json
import multiprocessing
import os
import queue
import signal
import subprocess
import sys
import threading
import time
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
    monkeypatch.setattr(shares, "_blas_libraries", lambda: list(libraries))
    monkeypatch.setattr(shares, "_timeout_is_short", None)
    monkeypatch.setattr(shares._environment, "OPENBLAS_THREAD_TIMEOUT", timeout)


def library(internal_api="openblas", threading_layer="pthreads", num_threads=2):
    return SimpleNamespace(internal_api=internal_api, threading_layer=threading_layer, num_threads=num_threads)


@pytest.mark.parametrize(
    "text, exponent",
    [
        ("4", 4),
        ("16", 16),
        (" 8", 8),
        ("+10", 10),
        # C's atoi reads the leading digits and ignores the rest.
        ("4abc", 4),
        # Values from 1 to 3 are raised to 4, and large ones lowered to 30.
        ("1", 4),
        ("99", 30),
        # Nothing, 0, negative values and text without leading digits keep the default.
        (None, 28),
        ("", 28),
        ("0", 28),
        ("-3", 28),
        ("four", 28),
        # Only ASCII digits count, as for atoi.
        ("\u00b2", 28),
        ("\u0664", 28),
    ],
)
def test_openblas_timeout_exponent_like_atoi(text, exponent):
    assert shares.openblas_timeout_exponent(text) == exponent


@pytest.mark.parametrize(
    "timeout, libraries, expected",
    [
        ("4", [library()], True),
        ("16", [library()], True),
        ("2", [library()], True),
        # OpenBLAS's default timeout (unset, 0 or junk) and long ones keep threads spinning.
        (None, [library()], False),
        ("0", [library()], False),
        ("17", [library()], False),
        ("28", [library()], False),
        ("four", [library()], False),
        # One BLAS thread never spins, whatever the timeout.
        (None, [library(num_threads=1)], True),
        (None, [library(num_threads=1), library(num_threads=1)], True),
        (None, [library(num_threads=1), library()], False),
        # Other BLAS libraries, or OpenBLAS on OpenMP threads, follow other settings.
        ("4", [library(internal_api="mkl", threading_layer="intel")], False),
        ("4", [library(threading_layer="openmp")], False),
        ("4", [library(), library(internal_api="mkl", threading_layer="intel")], False),
        # Without a BLAS library that threadpoolctl finds, BLAS cannot be held to one thread.
        ("4", [], False),
    ],
)
def test_blas_allows_shares_cases(monkeypatch, timeout, libraries, expected):
    fake_blas(monkeypatch, timeout, *libraries)
    assert shares.blas_allows_shares() is expected


def test_blas_allows_shares_follows_thread_count(monkeypatch):
    # The thread count is read on every call, the timeout only once.
    blas = library(num_threads=1)
    fake_blas(monkeypatch, None, blas)
    assert shares.blas_allows_shares() is True
    blas.num_threads = 2
    assert shares.blas_allows_shares() is False


def test_blas_library_found():
    # Without one, every check in this file would compare empty lists.
    assert shares._blas_libraries(), "threadpoolctl found no BLAS library; is it older than 3.5?"
    assert blas_threads()


def test_run_shares_results_in_order(two_shares):
    threads = {}

    def work(n0, n1):
        threads[n0] = threading.get_ident()
        return (n0, n1)

    assert shares.run_shares(work, 9) == [(0, 4), (4, 9)]
    # The calling thread runs the first share itself, and a new thread the second.
    assert threads[0] == threading.get_ident()
    assert threads[4] != threading.get_ident()


def test_group_ranges_cover_range():
    assert list(shares.group_ranges(3, 12, 4)) == [(3, 7), (7, 11), (11, 12)]
    assert list(shares.group_ranges(5, 5, 4)) == []


def test_interrupt_stops_other_shares(two_shares):
    before = blas_threads()
    done = []

    def work(n0, n1):
        for g0, _ in shares.group_ranges(n0, n1, 1):
            if n0 == 0 and g0 == 2:
                # What a Ctrl-C does: KeyboardInterrupt in the calling thread.
                raise KeyboardInterrupt
            time.sleep(0.01)
            done.append(g0)

    with pytest.raises(KeyboardInterrupt):
        shares.run_shares(work, 400)
    # The second share, samples 200 .. 399, stopped long before its end.
    assert len([g0 for g0 in done if g0 >= 200]) < 50
    assert_blas_restored(before)


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
    # The parent has run shares before it forks, and the child must still run them.
    in_parent = queue.Queue()
    conv_in_child(in_parent)
    expected = in_parent.get()

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


def test_shares_never_run_beside_multithreaded_blas(two_shares):
    # Another thread inside a threadpoolctl limit of its own may keep
    # BLAS at two threads (threadpoolctl 3.8 ignores the other threads' limits
    # then). The work must then run in one share, never in two beside a
    # multithreaded BLAS.
    holding, release = threading.Event(), threading.Event()

    def hold_limit():
        with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
            holding.set()
            release.wait(timeout=30)

    holder = threading.Thread(target=hold_limit)
    holder.start()
    try:
        assert holding.wait(timeout=30)
        calls = shares.run_shares(lambda n0, n1: ((n0, n1), max(blas_threads().values())), 8)
    finally:
        release.set()
        holder.join()

    if len(calls) == 1:
        assert calls[0][0] == (0, 8)
    else:
        assert all(threads == 1 for _, threads in calls), calls


def test_forked_child_gets_blas_threads_back(two_shares):
    # A fork while another thread runs shares copies BLAS's limit of one thread.
    before = blas_threads()
    inside, release = threading.Event(), threading.Event()

    def work(n0, n1):
        inside.set()
        release.wait(timeout=30)

    runner = threading.Thread(target=shares.run_shares, args=(work, 4))
    runner.start()
    try:
        assert inside.wait(timeout=30)
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        child = context.Process(target=lambda: results.put(blas_threads()))
        child.start()
        child.join(timeout=60)
        assert child.exitcode == 0
        assert results.get(timeout=5) == before
    finally:
        release.set()
        runner.join()


INTERRUPTED_CHILD = """
import json, time
import numpy as np
import threadpoolctl
from tinymbm.kernels import conv, shares

def blas():
    return {p["filepath"]: p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"}

x = np.random.default_rng(0).standard_normal((64, 32, 64, 64)).astype(np.float32)
weight = np.random.default_rng(1).standard_normal((32, 32, 5, 5)).astype(np.float32)
before = blas()
print("shares", shares.share_count(64), flush=True)
try:
    while True:
        conv.conv2d_forward(x, weight, None, (1, 1), (2, 2))
except KeyboardInterrupt:
    interrupted = time.perf_counter()
after = blas()
small = conv.conv2d_forward(x[:4, :, :8, :8], weight, None, (1, 1), (2, 2))
print(json.dumps({"before": before, "after": after, "small_seconds": time.perf_counter() - interrupted}))
"""


def test_ctrl_c_ends_convolution_promptly(tmp_path):
    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED_CHILD)
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "shares 2"
        time.sleep(1.0)
        child.send_signal(signal.SIGINT)
        sent = time.perf_counter()
        stdout, stderr = child.communicate(timeout=60)
    finally:
        child.kill()
    waited = time.perf_counter() - sent

    assert child.returncode == 0, stderr
    report = json.loads(stdout.strip().splitlines()[-1])
    assert {path: report["after"][path] for path in report["before"]} == report["before"]
    # One forward pass takes about 0.2 s on 2 cores, so a few seconds is generous.
    assert waited < 10, f"the child took {waited:.1f} s to finish after Ctrl-C"


SHUTDOWN_CHILD = """
import atexit, threading, time
import numpy as np
from tinymbm.kernels import conv

x = np.random.default_rng(0).standard_normal((8, 3, 12, 12))
weight = np.random.default_rng(1).standard_normal((4, 3, 3, 3))
expected = conv.reference_conv2d_forward(x, weight, None, (1, 1), (1, 1))

def check(label):
    y = conv.conv2d_forward(x, weight, None, (1, 1), (1, 1))
    assert np.allclose(y, expected), label
    print(label, "ok", flush=True)

def late_loop():
    time.sleep(0.5)
    for _ in range(20):
        check("thread after main")

atexit.register(check, "atexit")
threading.Thread(target=late_loop).start()
"""


def test_convolution_during_interpreter_shutdown(tmp_path):
    script = tmp_path / "shutdown.py"
    script.write_text(SHUTDOWN_CHILD)
    completed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.count("thread after main ok") == 20
    assert "atexit ok" in completed.stdout


# Sends SIGINT at random moments, 10 µs to 2 ms apart, for argv[2] seconds
# while small convolutions run, the way a user hammering Ctrl-C would. Between
# bursts it checks that every BLAS library has its thread count back.
SIGINT_STORM_CHILD = """
import tinymbm  # noqa: F401
import faulthandler, os, random, signal, sys, threading, time
import numpy as np
import threadpoolctl
from tinymbm.kernels import conv as K
def blas():
    return {p["filepath"]: p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"}
x = np.random.default_rng(0).random((2, 1, 4, 4)); w = np.ones((1, 1, 3, 3))
xb = np.random.default_rng(0).random((16, 8, 16, 16)); wb = np.ones((8, 8, 3, 3))
K.conv2d_forward(x, w, None, (1, 1), (0, 0)); K.conv2d_forward(xb, wb, None, (1, 1), (1, 1))
before = blas()
rng = random.Random(int(sys.argv[1])); seconds = float(sys.argv[2])
armed = False
def sender():
    while True:
        time.sleep(rng.uniform(1e-5, 2e-3))
        if armed:
            os.kill(os.getpid(), signal.SIGINT)
threading.Thread(target=sender, daemon=True).start()
interrupts = wrong = 0
deadline = time.monotonic() + seconds
faulthandler.dump_traceback_later(seconds + 30, exit=True)
def quiet():
    global armed
    armed = False
    while True:
        try:
            time.sleep(0.02)
            return
        except KeyboardInterrupt:
            pass
while time.monotonic() < deadline:
    try:
        armed = True
        while True:
            K.conv2d_forward(x, w, None, (1, 1), (0, 0))
            K.conv2d_backward_weight(np.ones((16, 8, 16, 16)), xb, wb.shape, (1, 1), (1, 1))
    except KeyboardInterrupt:
        interrupts += 1
    quiet()
    now = blas()
    if any(now[p] != before[p] for p in before):
        wrong += 1
        threadpoolctl.threadpool_limits(2, user_api="blas")
K.conv2d_forward(xb, wb, None, (1, 1), (1, 1))
print(f"interrupts={interrupts} wrong_blas={wrong}", flush=True)
"""


def test_ctrl_c_storm_leaves_no_hang(tmp_path):
    script = tmp_path / "storm.py"
    script.write_text(SIGINT_STORM_CHILD)
    completed = subprocess.run(
        [sys.executable, "-X", "faulthandler", str(script), "1", "3"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = completed.stdout.strip().splitlines()[-1]
    interrupts, wrong = (int(part.split("=")[1]) for part in summary.split())
    assert interrupts > 20, summary
    assert wrong == 0, summary


def interrupted_work(done):
    """Return a work function whose first share sends SIGINT to this process at its third group."""

    def work(n0, n1):
        for g0, _ in shares.group_ranges(n0, n1, 1):
            if g0 == 2:
                os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.002)
            done.append(g0)
        return n1 - n0

    return work


def test_sigint_default_handler_cancels(two_shares):
    done = []
    with pytest.raises(KeyboardInterrupt):
        shares.run_shares(interrupted_work(done), 200)
    assert len(done) < 150, "the shares ran on after SIGINT"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigint_own_handler_runs_once_after(two_shares):
    calls = []

    def own_handler(signum, frame):
        calls.append(signum)

    previous = signal.signal(signal.SIGINT, own_handler)
    try:
        done = []
        results = shares.run_shares(interrupted_work(done), 40)
        assert signal.getsignal(signal.SIGINT) is own_handler
    finally:
        signal.signal(signal.SIGINT, previous)
    # The program's own handler does not cancel: every group ran, and it was called once.
    assert results == [20, 20]
    assert sorted(done) == list(range(40))
    assert calls == [signal.SIGINT]


def test_sigint_ignored_changes_nothing(two_shares):
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        done = []
        results = shares.run_shares(interrupted_work(done), 40)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    assert results == [20, 20]
    assert sorted(done) == list(range(40))


def test_nested_run_shares_runs_inline(two_shares, rng):
    # A convolution called from inside a share must not wait for the lock its caller holds.
    x = rng.standard_normal((4, 2, 6, 6))
    weight = rng.standard_normal((3, 2, 3, 3))
    expected = K.reference_conv2d_forward(x, weight, None, (1, 1), (1, 1))

    def work(n0, n1):
        return K.conv2d_forward(x, weight, None, (1, 1), (1, 1))

    finished = []
    runner = threading.Thread(target=lambda: finished.append(shares.run_shares(work, 4)), daemon=True)
    runner.start()
    runner.join(timeout=60)
    assert not runner.is_alive(), "nested run_shares deadlocked"
    for y in finished[0]:
        np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_user_limit_left_alone(two_shares):
    # The main thread limits BLAS, starts a worker's convolution and lifts its
    # limit while that runs. The worker must not set BLAS back to one thread.
    before = blas_threads()
    started, release = threading.Event(), threading.Event()

    def work(n0, n1):
        started.set()
        release.wait(timeout=30)

    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        worker = threading.Thread(target=shares.run_shares, args=(work, 4))
        worker.start()
        assert started.wait(timeout=30)
    release.set()
    worker.join(timeout=60)
    assert_blas_restored(before)


PARALLEL_KERNELS_CHILD = """
import threading
import numpy as np
from tinymbm.kernels import optim, pool

x = np.random.default_rng(0).standard_normal((8, 16, 28, 28)).astype(np.float32)
param = np.zeros(100_000, dtype=np.float32)
errors = []

def loop():
    try:
        moments = [np.zeros_like(param), np.zeros_like(param)]
        for step in range(1, 41):
            y, indices = pool.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0))
            pool.max_pool2d_backward(y, indices, x.shape)
            optim.adam_update(param.copy(), np.ones_like(param), *moments, step, 1e-3, 0.9, 0.999, 1e-8, 0.0)
    except BaseException as error:
        errors.append(error)

threads = [threading.Thread(target=loop) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("errors", len(errors))
"""


def test_parallel_kernels_from_several_threads(tmp_path):
    # Without the lock, Numba's workqueue layer aborted the process (SIGABRT) here.
    script = tmp_path / "parallel_kernels.py"
    script.write_text(PARALLEL_KERNELS_CHILD)
    completed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip().endswith("errors 0")
