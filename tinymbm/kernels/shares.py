"""Run a kernel on several threads, each with its own share of the batch.

A kernel that alternates compiled gathers with BLAS products (the convolution)
runs fastest when each core gathers and multiplies its own samples. So BLAS is
held to one thread, and one Python thread per core takes a contiguous share of
the batch. Spreading every product over all cores instead moves each matrix
from one core's cache to the other's between the gather and the product, and
on a 2-core machine those transfers cost more than the gathers themselves.

The scheme needs the cores to be free. After each product OpenBLAS keeps its
worker threads spinning, by default for 2^28 CPU cycles (about a tenth of a
second), so a share started soon after a multithreaded product elsewhere (a
linear layer, say) shares its core with a spinning thread and the whole op
runs at the speed of that share. ``tinymbm/__init__.py`` therefore asks
OpenBLAS to put its threads to sleep at once (OPENBLAS_THREAD_TIMEOUT=4, that
is 2^4 cycles). OpenBLAS reads that setting only when NumPy loads it, so it
takes effect when tinymbm is imported before NumPy, or when the environment
sets it. :func:`share_count` uses shares only where that holds, or where BLAS
runs one thread anyway; elsewhere a kernel runs in the calling thread and
BLAS spreads each product over the cores.
"""

import concurrent.futures
import itertools
import os
import threading
from collections.abc import Callable
from typing import TypeVar

import numba
from threadpoolctl import ThreadpoolController

T = TypeVar("T")

# The largest OPENBLAS_THREAD_TIMEOUT (the exponent of a power of two of CPU
# cycles) with which BLAS threads stop spinning soon enough for shares. 2^16
# cycles take about 25 µs at 2.5 GHz.
MAX_THREAD_TIMEOUT = 16

_lock = threading.Lock()
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_workers = 0
_blas: ThreadpoolController | None = None
_blas_allows_shares: bool | None = None


def _forget_threads_after_fork() -> None:
    """Drop the parent's thread pool and lock in a forked child, where its threads do not exist."""
    global _lock, _pool, _pool_workers
    _lock = threading.Lock()
    _pool = None
    _pool_workers = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads_after_fork)


def _controller() -> ThreadpoolController:
    global _blas
    if _blas is None:
        _blas = ThreadpoolController()
    return _blas


def blas_allows_shares() -> bool:
    """Return whether NumPy's BLAS leaves the cores free between products, so that shares pay off.

    True when every BLAS library in the process runs one thread, or when all of
    them are OpenBLAS with its own (pthreads) threads and a thread timeout of
    at most 2^MAX_THREAD_TIMEOUT cycles was in force when they loaded.
    """
    global _blas_allows_shares
    if _blas_allows_shares is None:
        libraries = _controller().select(user_api="blas").lib_controllers
        if all(library.num_threads == 1 for library in libraries):
            _blas_allows_shares = True
        else:
            is_openblas = all(
                library.internal_api == "openblas" and library.threading_layer == "pthreads"
                for library in libraries
            )
            # tinymbm/__init__.py sets this variable only while OpenBLAS is
            # not loaded yet, so a value found here is the one OpenBLAS read.
            timeout = os.environ.get("OPENBLAS_THREAD_TIMEOUT", "")
            short = timeout.strip().isdigit() and int(timeout) <= MAX_THREAD_TIMEOUT
            _blas_allows_shares = is_openblas and short
    return _blas_allows_shares


def share_count(n_batch: int) -> int:
    """Return how many shares a batch of n_batch samples is split into.

    That is numba.get_num_threads(), capped by the batch size, or 1 where
    :func:`blas_allows_shares` is False.
    """
    if not blas_allows_shares():
        return 1
    return max(1, min(numba.get_num_threads(), n_batch))


def split_batch(n_batch: int) -> list[tuple[int, int]]:
    """Split samples 0 .. n_batch-1 into share_count(n_batch) contiguous ranges (n0, n1) of near-equal size."""
    count = share_count(n_batch)
    bounds = [n_batch * k // count for k in range(count + 1)]
    return list(itertools.pairwise(bounds))


def run_shares(work: Callable[[int, int], T], n_batch: int) -> list[T]:
    """Run work(n0, n1) for every range of split_batch(n_batch), in parallel; return the results in range order.

    With a single range the work runs in the calling thread and BLAS keeps
    all its threads. Otherwise BLAS runs one thread until every range is done.
    ``work`` must release the GIL for its heavy parts (NumPy's products and
    ``@njit(nogil=True)`` kernels do), or the threads take turns.
    """
    global _pool, _pool_workers
    shares = split_batch(n_batch)
    if len(shares) == 1:
        return [work(*shares[0])]

    # One caller at a time, because the BLAS limit is process-wide. A second
    # caller that entered while it was set would later restore the limited count.
    with _lock:
        if _pool is None or _pool_workers < len(shares):
            _pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(shares), thread_name_prefix="tinymbm-share")
            _pool_workers = len(shares)
        with _controller().limit(limits=1, user_api="blas"):
            futures = [_pool.submit(work, n0, n1) for n0, n1 in shares]
            # Wait for every share, even after one fails, so that none still
            # runs when the limit is lifted or the next caller starts.
            concurrent.futures.wait(futures)
            return [future.result() for future in futures]
