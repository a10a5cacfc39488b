"""Run a kernel on several threads, each with its own share of the batch.

A kernel that alternates compiled gathers with BLAS products (the convolution)
runs fastest when each thread gathers and multiplies its own samples, because
the matrices then stay in the cache of the core that wrote them. So BLAS is
held to one thread, and each of several Python threads takes a contiguous
share of the batch. Spreading every product over all cores instead moves each
matrix from one core's cache to the other's between the gather and the
product, and on a 2-core machine those transfers cost more than the gathers.

The scheme needs the cores to be free. After each product OpenBLAS keeps its
worker threads spinning, by default for 2^28 CPU cycles (about a tenth of a
second). A share started soon after a multithreaded product elsewhere (a
linear layer, say) then shares its core with a spinning thread, and the whole
op runs at the speed of that share. ``tinymbm._environment`` therefore sets
OPENBLAS_THREAD_TIMEOUT=4, so that OpenBLAS puts its threads to sleep after
2^4 cycles. OpenBLAS reads that setting only when NumPy loads it, so it
takes effect when tinymbm is imported before NumPy, or when the environment
sets it. :func:`share_count` uses shares only where that holds, or where BLAS
runs one thread anyway. Elsewhere a kernel runs in the calling thread and
BLAS spreads each product over the cores.

The number of shares follows Numba's thread count (NUMBA_NUM_THREADS, or
numba.set_num_threads in the calling thread), as the parallel Numba kernels do.
"""

import contextlib
import functools
import itertools
import os
import re
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numba
from threadpoolctl import OpenBLASController, ThreadpoolController

from tinymbm import _environment

T = TypeVar("T")

# The largest exponent of OpenBLAS's thread timeout (2^exponent CPU cycles of
# spinning) with which shares are used: 2^16 cycles take about 25 µs at 2.5 GHz.
MAX_TIMEOUT_EXPONENT = 16

_lock = threading.Lock()
_local = threading.local()
_controller: ThreadpoolController | None = None
_timeout_is_short: bool | None = None
# The BLAS thread counts to restore while a limit is in force, else None.
_counts_before_limit: list[int] | None = None


# Numba's workqueue threading layer, the default that tinymbm._environment
# picks, aborts the whole process when two threads launch parallel kernels at
# the same time. Every parallel=True kernel runs under this lock.
_parallel_kernel_lock = threading.Lock()


def one_parallel_kernel_at_a_time(kernel: Callable[..., T]) -> Callable[..., T]:
    """Wrap a ``parallel=True`` Numba kernel so that only one thread at a time runs such kernels."""

    @functools.wraps(kernel)
    def locked(*args: Any) -> T:
        with _parallel_kernel_lock:
            return kernel(*args)

    return locked


def openblas_timeout_exponent(text: str | None) -> int:
    """Return e such that OpenBLAS threads spin 2^e cycles after a product, given OPENBLAS_THREAD_TIMEOUT=text.

    OpenBLAS 0.3 reads the variable's leading integer as C's atoi does, keeps
    its default of 28 for a missing value or one of 0 or less, and clamps the
    rest to 4 .. 30.
    """
    match = re.match(r"[ \t\n\v\f\r]*([+-]?[0-9]+)", text or "")
    value = int(match.group(1)) if match else 0
    if value <= 0:
        return 28
    return min(max(value, 4), 30)


def _blas_libraries() -> list:
    """Return threadpoolctl's controllers of the BLAS libraries loaded when this was first called."""
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller.select(user_api="blas").lib_controllers


def blas_allows_shares() -> bool:
    """Return whether the BLAS libraries leave the cores free between products, so that shares pay off.

    That needs at least one BLAS library that threadpoolctl finds. Then either
    every one of them runs one thread now, or all of them are OpenBLAS with its
    own (pthreads) threads, loaded with a thread timeout of at most
    2^MAX_TIMEOUT_EXPONENT cycles.
    """
    global _timeout_is_short
    libraries = _blas_libraries()
    if not libraries:
        # Without a BLAS library that threadpoolctl can see, nothing could hold BLAS to one thread.
        return False

    if _timeout_is_short is None:
        all_openblas = all(
            library.internal_api == "openblas" and library.threading_layer == "pthreads" for library in libraries
        )
        exponent = openblas_timeout_exponent(_environment.OPENBLAS_THREAD_TIMEOUT)
        _timeout_is_short = all_openblas and exponent <= MAX_TIMEOUT_EXPONENT
    return _timeout_is_short or all(library.num_threads == 1 for library in libraries)


def share_count(n_batch: int) -> int:
    """Return how many shares a batch of n_batch samples is split into.

    That is numba.get_num_threads(), capped by the batch size, or 1 where
    :func:`blas_allows_shares` is False.
    """
    if n_batch < 2 or not blas_allows_shares():
        return 1
    return max(1, min(numba.get_num_threads(), n_batch))


def split_batch(n_batch: int) -> list[tuple[int, int]]:
    """Split samples 0 .. n_batch-1 into share_count(n_batch) contiguous ranges (n0, n1) of near-equal size."""
    count = share_count(n_batch)
    bounds = [n_batch * k // count for k in range(count + 1)]
    return list(itertools.pairwise(bounds))


class _Run:
    """The state that the shares of one run_shares call have in common."""

    def __init__(self) -> None:
        # Set once any share fails or a Ctrl-C arrives. A plain attribute, so
        # that setting it from a signal handler can never wait on a lock.
        self.cancelled = False


def group_ranges(n0: int, n1: int, size: int) -> Iterator[tuple[int, int]]:
    """Yield (g0, g1) ranges of at most ``size`` samples covering n0 .. n1-1.

    Inside :func:`run_shares` the ranges stop early once another share has
    failed or a Ctrl-C arrived, so that every share ends within one group.
    :func:`run_shares` then raises, and the partial results are never used.
    """
    run = getattr(_local, "run", None)
    for g0 in range(n0, n1, size):
        if run is not None and run.cancelled:
            return
        yield g0, min(n1, g0 + size)


def run_shares(work: Callable[[int, int], T], n_batch: int) -> list[T]:
    """Run work(n0, n1) for every range of split_batch(n_batch), in parallel; return the results in range order.

    The calling thread runs the first range itself and one new thread runs
    each of the others, with BLAS held to one thread until all have finished.
    With a single range, or when another thread controls BLAS's thread count,
    everything runs in the calling thread and BLAS keeps its threads.
    ``work`` should loop over :func:`group_ranges` so that an error or a
    Ctrl-C stops every share within one group. A Ctrl-C (SIGINT) in the main
    thread raises KeyboardInterrupt once all shares have stopped and BLAS has
    its threads back. ``work`` must release the GIL for its heavy parts
    (NumPy's products and ``@njit(nogil=True)`` kernels do), or the threads
    take turns.
    """
    ranges = split_batch(n_batch)
    if len(ranges) == 1:
        return [work(*ranges[0])]
    if getattr(_local, "run", None) is not None:
        # Called from inside a share: the lock is taken, so run it as one
        # share in this thread, under the same cancellation.
        return [work(0, n_batch)]

    # One caller at a time, because the BLAS limit is process-wide. Waiting
    # for the lock can still be interrupted; the signal is held back only
    # once this call owns it.
    run = _Run()
    with _lock, _sigint_deferred(run):
        results = _limit_blas_and_run(work, ranges, run)
    if run.cancelled:
        # Only handlers that raise or end the process cancel a run, so this is
        # not reached. It keeps partial results from ever reaching the caller.
        raise KeyboardInterrupt
    return results


@contextlib.contextmanager
def _sigint_deferred(run: _Run) -> Iterator[None]:
    """Hold back SIGINT while the block runs and pass it on, once, at the end.

    A KeyboardInterrupt raised in the middle of starting a thread or of
    setting BLAS's thread count can leave a lock taken or BLAS at one thread.
    So while the block runs, the signal only marks ``run`` cancelled, and
    only when its handler is Python's default (which raises KeyboardInterrupt)
    or the system default (which ends the process). A handler of the
    program's own runs at the end, with the results complete. Python runs
    signal handlers in the main thread only, so elsewhere, or when SIGINT is
    ignored or its handler was not set from Python, the block runs unchanged.
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous in (None, signal.SIG_IGN):
        yield
        return
    cancels = previous in (signal.default_int_handler, signal.SIG_DFL)
    frames = []

    def hold(signum: int, frame: Any) -> None:
        if cancels:
            run.cancelled = True
        frames.append(frame)

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if frames:
            if previous == signal.SIG_DFL:
                signal.raise_signal(signal.SIGINT)
            else:
                # Python's default handler raises KeyboardInterrupt here.
                previous(signal.SIGINT, frames[0])


def _limit_blas_and_run(work: Callable[[int, int], T], ranges: list[tuple[int, int]], run: _Run) -> list[T]:
    global _counts_before_limit
    n_batch = ranges[-1][1]

    libraries = _blas_libraries()
    counts = [library.num_threads for library in libraries]
    if all(count == 1 for count in counts):
        # BLAS runs one thread already, perhaps under a limit that another
        # thread set and will lift. Setting and restoring a limit here would
        # put back that thread's count after it has restored its own.
        return _run_in_threads(work, ranges, run)

    # SIGINT is held back here in the main thread, and other threads get no
    # signals, so nothing can cut threadpoolctl's restore short.
    with _controller.limit(limits=1, user_api="blas"):
        # threadpoolctl ignores the limit when another thread controls
        # OpenBLAS, so then the work runs in this thread alone.
        if any(library.num_threads != 1 for library in libraries):
            return _run_in_threads(work, [(0, n_batch)], run)
        _counts_before_limit = counts
        try:
            return _run_in_threads(work, ranges, run)
        finally:
            _counts_before_limit = None


def _run_in_threads(work: Callable[[int, int], T], ranges: list[tuple[int, int]], run: _Run) -> list[T]:
    results: list = [None] * len(ranges)
    errors: list[BaseException | None] = [None] * len(ranges)

    def run_share(index: int) -> None:
        _local.run = run
        try:
            results[index] = work(*ranges[index])
        except BaseException as error:  # noqa: BLE001 - re-raised below once every share has ended
            errors[index] = error
            run.cancelled = True
        finally:
            _local.run = None

    threads = []
    inline = []
    finished = False
    try:
        for index in range(1, len(ranges)):
            thread = threading.Thread(target=run_share, args=(index,), name=f"tinymbm-share-{index}", daemon=True)
            try:
                thread.start()
            except RuntimeError:
                # No new threads during interpreter shutdown (atexit handlers,
                # threads still running after the main one ended): run it here.
                inline.append(index)
                continue
            threads.append(thread)

        run_share(0)
        for index in inline:
            run_share(index)
        finished = True
    finally:
        # Any exception that reaches this point stops the other shares at
        # their next group, and the caller lifts the BLAS limit only after
        # they end.
        if not finished:
            run.cancelled = True
        for thread in threads:
            thread.join()

    for error in errors:
        if error is not None:
            raise error
    return results


def _restore_after_fork() -> None:
    """Reset the locks in a forked child, and give BLAS back its threads if the parent was running shares."""
    global _lock, _parallel_kernel_lock, _counts_before_limit
    _lock = threading.Lock()
    _parallel_kernel_lock = threading.Lock()
    if _counts_before_limit is not None:
        for library, count in zip(_blas_libraries(), _counts_before_limit, strict=True):
            library.set_num_threads(count)
        _counts_before_limit = None
        if hasattr(OpenBLASController, "clear_controlling_thread"):
            # Setting a count made this thread the one that controls OpenBLAS
            # in threadpoolctl 3.8 and later; let other threads set limits again.
            OpenBLASController.clear_controlling_thread()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_restore_after_fork)
