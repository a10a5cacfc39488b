"""Kernel benchmarks, run as ``python -m tinymbm.bench``.

Every bench module in this package (``conv``, ``lstm``, ...) exposes:

- ``GROUPS``: the names it answers to in ``--only`` (for example
  ``("conv", "pool")``); without it, the module's own name.
- ``run(args) -> list[dict]``: it measures the groups in ``args.only`` that it
  owns and returns one dict per table row.

A row has ``group``, ``case`` (the shapes) and ``kernel`` (for example
"forward" or "forward+backward"). Any of these measured fields may follow,
in milliseconds for a whole batch unless named otherwise: ``numba_ms`` (median),
``numba_min_ms``, ``reference_ms``, ``reference_note`` (how the reference time
was scaled), ``speedup`` (reference_ms / numba_ms), ``compile_s`` (first call
in a fresh process with an empty Numba cache, minus a warm call), ``gflops``,
``blas_gflops`` (numpy matmul of the same matrix sizes), ``torch_ms`` and
``torch_ratio`` (numba_ms / torch_ms). A module may add more fields; they go
to the JSON file but not to the printed table.
"""

import statistics
import time
from collections.abc import Callable


def time_call(fn: Callable[[], object], repeat: int) -> dict[str, float]:
    """Call ``fn`` once to warm up, then ``repeat`` times; return the median and minimum in milliseconds."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times)}
