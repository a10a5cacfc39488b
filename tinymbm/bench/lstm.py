"""Benchmarks of the LSTM at the shapes of the MNIST RNN.

The RNN reads a 28×28 image as a sequence of T = 28 rows of I = 28 features,
through L = 2 layers of H = 128 hidden units, in batches of N = 64, float32.
This module times:

- ``nn.LSTM(28, 128, num_layers=2)`` on (T, N, I) = (28, 64, 28): forward, and
  forward+backward (backward from a random gradient of the output, parameter
  gradients cleared before each call);
- ``nn.LSTMCell(28, 128)``, one step at N = 64: forward, and forward+backward;
- the two fused kernels alone at N = 64, H = 128: forward and backward.

Each case runs through the same autograd ops twice, once with the Numba
kernels (numba_ms) and once with the NumPy reference kernels (reference_ms).
When PyTorch is installed, its CPU time for the same module is measured too
(torch_ms), in a subprocess of its own so that its thread pool and BLAS's do
not compete inside one process. Other jobs on the machine change both times,
so the measurement runs ``ROUNDS`` times, alternating PyTorch and tinymbm, and
every reported time is the lowest median over the rounds. The ratios compare
times measured in the same run.

Run ``python -m tinymbm.bench.lstm torch`` or ``... compile`` to see one
worker's raw JSON output.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

GROUPS = ("lstm",)

STEPS, BATCH, INPUT_SIZE, HIDDEN, LAYERS = 28, 64, 28, 128, 2
LSTM_CASE = f"LSTM {INPUT_SIZE}->{HIDDEN} x{LAYERS} layers, T={STEPS}, N={BATCH}"
CELL_CASE = f"LSTMCell {INPUT_SIZE}->{HIDDEN}, one step, N={BATCH}"
KERNEL_CASE = f"cell kernels, N={BATCH}, H={HIDDEN}"

ROUNDS = 3
SEED = 0


def module_arrays() -> dict[str, np.ndarray]:
    """Return the float32 inputs and upstream gradients of the LSTM and LSTMCell cases."""
    rng = np.random.default_rng(SEED)
    return {
        "x": rng.standard_normal((STEPS, BATCH, INPUT_SIZE)).astype(np.float32),
        "grad_output": rng.standard_normal((STEPS, BATCH, HIDDEN)).astype(np.float32),
        "x_step": rng.standard_normal((BATCH, INPUT_SIZE)).astype(np.float32),
        "h": rng.standard_normal((BATCH, HIDDEN)).astype(np.float32),
        "c": rng.standard_normal((BATCH, HIDDEN)).astype(np.float32),
        "grad_h": rng.standard_normal((BATCH, HIDDEN)).astype(np.float32),
    }


def kernel_arrays() -> dict[str, np.ndarray]:
    """Return float32 gates, c and upstream gradients for the kernels alone."""
    rng = np.random.default_rng(SEED)
    return {
        "gates": (3 * rng.standard_normal((BATCH, 4 * HIDDEN))).astype(np.float32),
        "c": rng.standard_normal((BATCH, HIDDEN)).astype(np.float32),
        "grad_h": rng.standard_normal((BATCH, HIDDEN)).astype(np.float32),
        "grad_c": rng.standard_normal((BATCH, HIDDEN)).astype(np.float32),
    }


# ------------------------------------------------------------------ tinymbm


def tinymbm_calls() -> dict[tuple[str, str], Callable[[], object]]:
    """Return one zero-argument call per (case, kernel) row, running tinymbm's modules."""
    import tinymbm as tm
    from tinymbm import nn

    a = module_arrays()
    tm.manual_seed(SEED)
    lstm = nn.LSTM(INPUT_SIZE, HIDDEN, num_layers=LAYERS)
    cell = nn.LSTMCell(INPUT_SIZE, HIDDEN)
    x, grad_output = tm.tensor(a["x"]), a["grad_output"]
    x_step, hx, grad_h = tm.tensor(a["x_step"]), (tm.tensor(a["h"]), tm.tensor(a["c"])), a["grad_h"]

    def lstm_forward() -> None:
        with tm.no_grad():
            lstm(x)

    def lstm_step() -> None:
        lstm.zero_grad()
        output, _ = lstm(x)
        output.backward(grad_output)

    def cell_forward() -> None:
        with tm.no_grad():
            cell(x_step, hx)

    def cell_step() -> None:
        cell.zero_grad()
        h_next, _ = cell(x_step, hx)
        h_next.backward(grad_h)

    return {
        (LSTM_CASE, "forward"): lstm_forward,
        (LSTM_CASE, "forward+backward"): lstm_step,
        (CELL_CASE, "forward"): cell_forward,
        (CELL_CASE, "forward+backward"): cell_step,
    }


def kernel_calls(kernels) -> dict[tuple[str, str], Callable[[], object]]:
    """Return the forward and backward calls of one kernel backend, on kernel_arrays()."""
    a = kernel_arrays()
    _, _, activations, tanh_c_next = kernels.forward(a["gates"], a["c"])

    def forward() -> None:
        kernels.forward(a["gates"], a["c"])

    def backward() -> None:
        kernels.backward(a["grad_h"], a["grad_c"], a["c"], activations, tanh_c_next)

    return {(KERNEL_CASE, "forward"): forward, (KERNEL_CASE, "backward"): backward}


def tinymbm_times(repeat: int) -> dict[tuple[str, str], dict[str, float]]:
    """Return {(case, kernel): {"numba": ms, "numba_min": ms, "reference": ms}}.

    Each time is the median (or minimum) of ``repeat`` calls after a warm-up call.
    """
    from tinymbm.bench import time_call
    from tinymbm.kernels import lstm as lstm_kernels

    times: dict[tuple[str, str], dict[str, float]] = {}
    calls = tinymbm_calls()
    for key, call in calls.items():
        timing = time_call(call, repeat)
        times[key] = {"numba": timing["median_ms"], "numba_min": timing["min_ms"]}

    # The module-level backend switch sends the same ops through the reference kernels.
    previous = lstm_kernels.backend
    lstm_kernels.backend = "reference"
    try:
        for key, call in calls.items():
            times[key]["reference"] = time_call(call, repeat)["median_ms"]
    finally:
        lstm_kernels.backend = previous

    numba_kernels = kernel_calls(lstm_kernels.select("numba"))
    reference_kernels = kernel_calls(lstm_kernels.select("reference"))
    for key in numba_kernels:
        timing = time_call(numba_kernels[key], repeat)
        times[key] = {"numba": timing["median_ms"], "numba_min": timing["min_ms"],
                      "reference": time_call(reference_kernels[key], repeat)["median_ms"]}
    return times


# ------------------------------------------------------------------ workers


def torch_worker(threads: int | None, repeat: int) -> dict:
    """Return {case: {kernel: median ms}} for PyTorch's CPU modules on the same float32 inputs."""
    import torch

    from tinymbm.bench import time_call

    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    a = {key: torch.from_numpy(value) for key, value in module_arrays().items()}
    lstm = torch.nn.LSTM(INPUT_SIZE, HIDDEN, num_layers=LAYERS)
    cell = torch.nn.LSTMCell(INPUT_SIZE, HIDDEN)
    hx = (a["h"], a["c"])

    def lstm_forward() -> None:
        with torch.no_grad():
            lstm(a["x"])

    def lstm_step() -> None:
        lstm.zero_grad(set_to_none=True)
        output, _ = lstm(a["x"])
        output.backward(a["grad_output"])

    def cell_forward() -> None:
        with torch.no_grad():
            cell(a["x_step"], hx)

    def cell_step() -> None:
        cell.zero_grad(set_to_none=True)
        h_next, _ = cell(a["x_step"], hx)
        h_next.backward(a["grad_h"])

    return {
        LSTM_CASE: {"forward": time_call(lstm_forward, repeat)["median_ms"],
                    "forward+backward": time_call(lstm_step, repeat)["median_ms"]},
        CELL_CASE: {"forward": time_call(cell_forward, repeat)["median_ms"],
                    "forward+backward": time_call(cell_step, repeat)["median_ms"]},
    }


def compile_seconds(call: Callable[[], object]) -> float:
    """Return the time of a first call minus that of a second, warm call."""
    start = time.perf_counter()
    call()
    first = time.perf_counter() - start
    start = time.perf_counter()
    call()
    return first - (time.perf_counter() - start)


def compile_worker() -> dict:
    """Return {kernel: seconds}: each float32 kernel's compile time, in this process.

    The LSTM ops also call the kernels with ``out=``, a second compiled version
    per kernel that this worker does not time.
    """
    from tinymbm.kernels import lstm as lstm_kernels

    a = kernel_arrays()

    def forward() -> tuple:
        return lstm_kernels.lstm_cell_forward(a["gates"], a["c"])

    results = {"forward": compile_seconds(forward)}
    _, _, activations, tanh_c_next = forward()

    def backward() -> tuple:
        return lstm_kernels.lstm_cell_backward(
            a["grad_h"], a["grad_c"], a["c"], activations, tanh_c_next
        )

    results["backward"] = compile_seconds(backward)
    return results


def run_worker(name: str, args: argparse.Namespace, env: dict[str, str] | None = None) -> dict:
    """Run ``python -m tinymbm.bench.lstm name`` and return the JSON it prints."""
    command = [sys.executable, "-m", "tinymbm.bench.lstm", name, "--repeat", str(args.repeat)]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def measure_compile_times(args: argparse.Namespace) -> dict:
    # An empty cache directory makes every @njit(cache=True) kernel compile again.
    with tempfile.TemporaryDirectory(prefix="tinymbm-numba-cache-") as cache_dir:
        return run_worker("compile", args, env=dict(os.environ, NUMBA_CACHE_DIR=cache_dir))


# ------------------------------------------------------------------ rows


def lowest(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return min(present) if present else None


def run(args: argparse.Namespace) -> list[dict]:
    """Measure the LSTM cases if ``args.only`` names "lstm"; return one row per case and kernel."""
    if "lstm" not in args.only:
        return []

    has_torch = importlib.util.find_spec("torch") is not None
    torch_rounds, tinymbm_rounds = [], []
    for _ in range(ROUNDS):
        if has_torch:
            torch_rounds.append(run_worker("torch", args))
        tinymbm_rounds.append(tinymbm_times(args.repeat))
    compile_times = measure_compile_times(args)

    rows = []
    for case, kernel in tinymbm_rounds[0]:
        key = (case, kernel)
        row = {
            "group": "lstm", "case": case, "kernel": kernel, "rounds": ROUNDS,
            "numba_ms": lowest([times[key]["numba"] for times in tinymbm_rounds]),
            "numba_min_ms": lowest([times[key]["numba_min"] for times in tinymbm_rounds]),
            "reference_ms": lowest([times[key]["reference"] for times in tinymbm_rounds]),
        }
        row["speedup"] = row["reference_ms"] / row["numba_ms"]
        if case == KERNEL_CASE:
            row["compile_s"] = compile_times.get(kernel)
        torch_ms = lowest([times.get(case, {}).get(kernel) for times in torch_rounds])
        if torch_ms is not None:
            row["torch_ms"] = torch_ms
            row["torch_ratio"] = row["numba_ms"] / torch_ms
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tinymbm.bench.lstm",
        description="Run one measurement worker and print its result as JSON.",
    )
    parser.add_argument("worker", choices=("compile", "torch"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)

    if args.worker == "compile":
        result = compile_worker()
    else:
        result = torch_worker(args.threads, args.repeat)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
