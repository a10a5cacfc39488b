"""Run the kernel benchmarks and print one table: ``python -m tinymbm.bench``.

Options: ``--only conv,pool,lstm`` picks the groups, ``--threads N`` sets the
thread count of Numba, BLAS and PyTorch, ``--repeat R`` the timed calls per
measurement, and ``--json PATH`` also writes the rows to a file.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import sys
import tempfile
from types import ModuleType

# Bench modules, as tinymbm.bench.<name>. A name whose module does not exist
# (yet) is skipped, so a new module needs only its name added here.
BENCH_MODULES = ["conv", "lstm"]

# (row key, column header, format) of the printed table.
COLUMNS = [
    ("case", "case", "{}"),
    ("kernel", "kernel", "{}"),
    ("numba_ms", "numba ms", "{:.2f}"),
    ("reference_ms", "reference ms", "{:.0f}"),
    ("speedup", "speedup", "{:.0f}x"),
    ("compile_s", "compile s", "{:.2f}"),
    ("gflops", "GFLOP/s", "{:.0f}"),
    ("blas_gflops", "BLAS GFLOP/s", "{:.0f}"),
    ("torch_ms", "torch ms", "{:.2f}"),
    ("torch_ratio", "vs torch", "{:.2f}x"),
]


def available_modules() -> dict[str, ModuleType]:
    """Import every bench module in BENCH_MODULES that exists; return them by name."""
    modules = {}
    for name in BENCH_MODULES:
        if importlib.util.find_spec(f"tinymbm.bench.{name}") is not None:
            modules[name] = importlib.import_module(f"tinymbm.bench.{name}")
    return modules


def module_groups(name: str, module: ModuleType) -> tuple[str, ...]:
    return tuple(getattr(module, "GROUPS", (name,)))


def parse_args(argv: list[str] | None, groups: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tinymbm.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(groups),
                        help=f"comma-separated groups to run (default: all of {','.join(groups)})")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for Numba, BLAS and PyTorch (default: each library's own default)")
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per measurement, after one warm-up call")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(args.only) - set(groups))
    if unknown:
        parser.error(f"--only: unknown group(s) {', '.join(unknown)}; expected some of {', '.join(groups)}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    return args


def restart_with_threads(threads: int) -> None:
    """Re-run this command with OMP_NUM_THREADS and NUMBA_NUM_THREADS set to ``threads``.

    OpenBLAS reads its thread count from the environment once, when NumPy
    loads it, and ``import tinymbm`` has loaded NumPy before this code runs,
    so the setting only takes effect in a new process. OpenBLAS takes
    OMP_NUM_THREADS unless OPENBLAS_NUM_THREADS is set, which wins.
    """
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads))
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "tinymbm.bench", *sys.argv[1:]], env)


def environment(args: argparse.Namespace) -> dict:
    import numba
    import numpy as np
    import threadpoolctl

    from tinymbm.kernels.shares import share_count

    info = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "numba_threads": numba.get_num_threads(),
        "threads_requested": args.threads,
    }
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT"):
        info[variable] = os.environ.get(variable)
    # How many threads share a batch of 64 in the convolution: 1 means BLAS spreads each product instead.
    info["conv_shares_of_64"] = share_count(64)
    libraries = [pool for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]
    info["blas"] = "; ".join(
        f"{pool['internal_api']} {pool['version']} {pool['threading_layer']} ({pool['num_threads']} threads)"
        for pool in libraries
    )
    if importlib.util.find_spec("torch") is not None:
        import torch

        info["torch"] = torch.__version__
    return info


def format_table(rows: list[dict]) -> str:
    columns = [(key, header, fmt) for key, header, fmt in COLUMNS if any(key in row for row in rows)]
    cells = [[header for _, header, _ in columns]]
    for row in rows:
        cells.append([fmt.format(row[key]) if row.get(key) is not None else "" for key, _, fmt in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]

    lines = []
    for index, line in enumerate(cells):
        padded = [text.ljust(width) if i < 2 else text.rjust(width) for i, (text, width) in enumerate(zip(line, widths))]
        lines.append("  ".join(padded).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def write_json(path: str, payload: dict) -> None:
    """Write ``payload`` to a temporary file beside ``path``, then move it into place."""
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".bench-", suffix=".json", dir=directory)
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(payload, stream, indent=2)
            stream.write("\n")
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def main(argv: list[str] | None = None) -> None:
    modules = available_modules()
    groups = [group for name, module in modules.items() for group in module_groups(name, module)]
    args = parse_args(argv, groups)

    if args.threads is not None and os.environ.get("OMP_NUM_THREADS") != str(args.threads):
        restart_with_threads(args.threads)
    if args.threads is not None:
        import numba

        numba.set_num_threads(args.threads)
        blas_override = os.environ.get("OPENBLAS_NUM_THREADS")
        if blas_override not in (None, str(args.threads)):
            print(f"warning: OPENBLAS_NUM_THREADS={blas_override} is set and overrides --threads for BLAS")

    rows: list[dict] = []
    for name, module in modules.items():
        if set(module_groups(name, module)) & set(args.only):
            rows.extend(module.run(args))

    info = environment(args)
    print(", ".join(f"{key}={value}" for key, value in info.items() if value is not None))
    print()
    print(format_table(rows))
    notes = sorted({row["reference_note"] for row in rows if row.get("reference_note")})
    for note in notes:
        print(f"reference: {note}")

    if args.json:
        write_json(args.json, {"environment": info, "rows": rows})
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
