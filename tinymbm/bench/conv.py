"""Benchmarks of the convolution and max-pooling kernels at the MNIST CNN's shapes.

The CNN runs batches of 64 through conv 1->64 on 28×28 and conv 64->128 on
14×14 (both 3×3, stride 1, padding 1), each followed by a 2×2 max-pool. For
each of those four layers this module times every kernel of tinymbm (float32),
the same kernels' reference versions, the first-call compile time, and, when
PyTorch is installed, PyTorch's CPU time for the same layer.

Two measurements run in subprocesses of their own: the compile times, which
need an empty Numba cache, and PyTorch, whose thread pool would otherwise run
beside Numba's in this process. Run ``python -m tinymbm.bench.conv compile``
or ``... torch`` to see one worker's raw JSON output.
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

from tinymbm.bench import time_call
from tinymbm.kernels import conv as conv_kernels
from tinymbm.kernels import pool as pool_kernels

GROUPS = ("conv", "pool")

BATCH = 64
# (case, input channels C, output channels F, input size H = W); kernel 3×3, stride 1, padding 1.
CONV_LAYERS = [("conv 1->64, 28x28", 1, 64, 28), ("conv 64->128, 14x14", 64, 128, 14)]
# (case, channels C, input size H = W); window 2×2, stride 2, no padding.
POOL_LAYERS = [("pool 64ch, 28x28", 64, 28), ("pool 128ch, 14x14", 128, 14)]

KERNEL_SIZE, STRIDE, PADDING = (3, 3), (1, 1), (1, 1)
WINDOW = (2, 2)
CONV_KERNELS = ("forward", "backward_input", "backward_weight", "backward_bias")
POOL_KERNELS = ("forward", "backward")

# The reference loops cost about a microsecond per innermost step (measured on
# a 2-core x86 VM), so they run on a slice of the batch and, for convolution,
# of the filters. Every loop nest is linear in N and in F, so the time scales up
# linearly.
REFERENCE_BATCH = 1
REFERENCE_FILTERS = 16
REFERENCE_POOL_BATCH = 4

ROUNDS = 3
SEED = 0


# ------------------------------------------------------------------- inputs


def conv_arrays(channels: int, filters: int, size: int, batch: int = BATCH) -> dict[str, np.ndarray]:
    """Return float32 x, weight, bias and an upstream gradient dy for one convolution layer."""
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((batch, channels, size, size)).astype(np.float32)
    weight = rng.standard_normal((filters, channels, *KERNEL_SIZE)).astype(np.float32)
    bias = rng.standard_normal(filters).astype(np.float32)
    # Padding 1 with a 3×3 kernel at stride 1 keeps the size.
    dy = rng.standard_normal((batch, filters, size, size)).astype(np.float32)
    return {"x": x, "weight": weight, "bias": bias, "dy": dy}


def pool_arrays(channels: int, size: int, batch: int = BATCH) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((batch, channels, size, size)).astype(np.float32)
    dy = rng.standard_normal((batch, channels, size // 2, size // 2)).astype(np.float32)
    return {"x": x, "dy": dy}


def conv_calls(kernels, a: dict[str, np.ndarray]) -> dict[str, Callable[[], object]]:
    """Return one zero-argument call per conv kernel of ``kernels`` on the arrays ``a``."""
    x, weight, bias, dy = a["x"], a["weight"], a["bias"], a["dy"]
    return {
        "forward": lambda: kernels.forward(x, weight, bias, STRIDE, PADDING),
        "backward_input": lambda: kernels.backward_input(dy, weight, x.shape, STRIDE, PADDING),
        "backward_weight": lambda: kernels.backward_weight(dy, x, weight.shape, STRIDE, PADDING),
        "backward_bias": lambda: kernels.backward_bias(dy),
    }


def pool_calls(kernels, a: dict[str, np.ndarray]) -> dict[str, Callable[[], object]]:
    x, dy = a["x"], a["dy"]
    _, indices = kernels.forward(x, WINDOW, WINDOW, (0, 0))
    return {
        "forward": lambda: kernels.forward(x, WINDOW, WINDOW, (0, 0)),
        "backward": lambda: kernels.backward(dy, indices, x.shape),
    }


def run_all(calls: dict[str, Callable[[], object]]) -> Callable[[], None]:
    """Return a call that runs every kernel in order, as one training step does."""

    def step() -> None:
        for call in calls.values():
            call()

    return step


# ------------------------------------------------------------------ workers


def compile_seconds(call: Callable[[], object]) -> float:
    """Return the time of a first call of ``call`` minus that of a second, warm call."""
    start = time.perf_counter()
    call()
    first = time.perf_counter() - start
    start = time.perf_counter()
    call()
    return first - (time.perf_counter() - start)


def compile_worker() -> dict:
    """Return {group: {kernel: seconds}}: each float32 kernel's compile time, in this process.

    Numba compiles one version per argument type, not per shape, so the first
    layer of each group at batch 2 compiles everything the benchmark runs.
    """
    _, channels, filters, size = CONV_LAYERS[0]
    conv = conv_calls(conv_kernels.select("numba"), conv_arrays(channels, filters, size, batch=2))
    results = {"conv": {kernel: compile_seconds(call) for kernel, call in conv.items()}}

    # The pool's backward needs the forward's indices, so the forward runs first, by hand.
    _, channels, size = POOL_LAYERS[0]
    pool = pool_arrays(channels, size, batch=2)
    x, dy = pool["x"], pool["dy"]
    forward_seconds = compile_seconds(lambda: pool_kernels.max_pool2d_forward(x, WINDOW, WINDOW, (0, 0)))
    _, indices = pool_kernels.max_pool2d_forward(x, WINDOW, WINDOW, (0, 0))
    backward_seconds = compile_seconds(lambda: pool_kernels.max_pool2d_backward(dy, indices, x.shape))
    results["pool"] = {"forward": forward_seconds, "backward": backward_seconds}
    return results


def torch_conv_times(torch, arrays: dict[str, np.ndarray], repeat: int) -> dict[str, float]:
    """Return PyTorch's median forward and forward+backward times (ms) for one convolution layer."""
    functional = torch.nn.functional
    x, weight, bias = (torch.from_numpy(arrays[key]).requires_grad_() for key in ("x", "weight", "bias"))
    dy = torch.from_numpy(arrays["dy"])

    def forward() -> None:
        with torch.no_grad():
            functional.conv2d(x, weight, bias, stride=STRIDE, padding=PADDING)

    def step() -> None:
        functional.conv2d(x, weight, bias, stride=STRIDE, padding=PADDING).backward(dy)

    return {"forward": time_call(forward, repeat)["median_ms"],
            "forward+backward": time_call(step, repeat)["median_ms"]}


def torch_pool_times(torch, arrays: dict[str, np.ndarray], repeat: int) -> dict[str, float]:
    """Return PyTorch's median forward and forward+backward times (ms) for one max-pool layer."""
    functional = torch.nn.functional
    x = torch.from_numpy(arrays["x"]).requires_grad_()
    dy = torch.from_numpy(arrays["dy"])

    def forward() -> None:
        with torch.no_grad():
            functional.max_pool2d(x, WINDOW)

    def step() -> None:
        functional.max_pool2d(x, WINDOW).backward(dy)

    return {"forward": time_call(forward, repeat)["median_ms"],
            "forward+backward": time_call(step, repeat)["median_ms"]}


def torch_worker(threads: int | None, repeat: int) -> dict:
    """Return {case: {"forward": ms, "forward+backward": ms}} for PyTorch's CPU kernels, float32.

    Every input requires grad, so PyTorch's backward computes the same three
    gradients as tinymbm's kernels.
    """
    import torch

    if threads is not None:
        torch.set_num_threads(threads)

    results = {}
    for case, channels, filters, size in CONV_LAYERS:
        results[case] = torch_conv_times(torch, conv_arrays(channels, filters, size), repeat)
    for case, channels, size in POOL_LAYERS:
        results[case] = torch_pool_times(torch, pool_arrays(channels, size), repeat)
    return results


def run_worker(name: str, args: argparse.Namespace, env: dict[str, str] | None = None) -> dict:
    """Run ``python -m tinymbm.bench.conv name`` and return the JSON it prints."""
    command = [sys.executable, "-m", "tinymbm.bench.conv", name, "--repeat", str(args.repeat)]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def measure_compile_times(args: argparse.Namespace) -> dict:
    # An empty cache directory makes every @njit(cache=True) kernel compile again.
    with tempfile.TemporaryDirectory(prefix="tinymbm-numba-cache-") as cache_dir:
        return run_worker("compile", args, env=dict(os.environ, NUMBA_CACHE_DIR=cache_dir))


# ------------------------------------------------------------------ rows


def conv_flops(channels: int, filters: int, size: int) -> float:
    """Return 2·N·F·(C·KH·KW)·(OH·OW), the multiply-adds of one of the three products, counted as 2 each."""
    return 2.0 * BATCH * filters * channels * KERNEL_SIZE[0] * KERNEL_SIZE[1] * size * size


def blas_gflops(channels: int, filters: int, size: int, repeat: int) -> float:
    """Return numpy matmul's GFLOP/s over the three im2col products of a layer, float32, whole batch."""
    rng = np.random.default_rng(SEED)
    rows, columns = channels * KERNEL_SIZE[0] * KERNEL_SIZE[1], BATCH * size * size
    w2 = rng.standard_normal((filters, rows)).astype(np.float32)
    cols = rng.standard_normal((rows, columns)).astype(np.float32)
    dy2 = rng.standard_normal((filters, columns)).astype(np.float32)

    total_ms = 0.0
    for product in (lambda: w2 @ cols, lambda: w2.T @ dy2, lambda: dy2 @ cols.T):
        total_ms += time_call(product, repeat)["median_ms"]
    return 3 * conv_flops(channels, filters, size) / (total_ms * 1e6)


def selected_layers(groups: list[str]) -> list[tuple[str, str, dict[str, np.ndarray]]]:
    """Return (group, case, float32 arrays) of every layer of the selected groups."""
    layers = []
    if "conv" in groups:
        layers += [("conv", case, conv_arrays(c, f, s)) for case, c, f, s in CONV_LAYERS]
    if "pool" in groups:
        layers += [("pool", case, pool_arrays(c, s)) for case, c, s in POOL_LAYERS]
    return layers


def layer_calls(group: str, kernels, arrays: dict[str, np.ndarray]) -> dict[str, Callable[[], object]]:
    """Return one call per kernel of the layer, plus "forward+backward", which runs them all in order."""
    calls = conv_calls(kernels, arrays) if group == "conv" else pool_calls(kernels, arrays)
    return {**calls, "forward+backward": run_all(calls)}


def numba_times(groups: list[str], repeat: int) -> dict[tuple[str, str], dict[str, float]]:
    """Return {(case, kernel): {"median_ms", "min_ms"}} of the Numba kernels, whole batch."""
    times = {}
    for group, case, arrays in selected_layers(groups):
        kernels = conv_kernels.select("numba") if group == "conv" else pool_kernels.select("numba")
        for kernel, call in layer_calls(group, kernels, arrays).items():
            times[case, kernel] = time_call(call, repeat)
    return times


def reference_times(groups: list[str]) -> dict[tuple[str, str], tuple[float, str]]:
    """Return {(case, kernel): (ms scaled to the whole batch, how it was scaled)} of the reference kernels."""
    times = {}
    for group, case, arrays in selected_layers(groups):
        if group == "conv":
            filters = arrays["weight"].shape[0]
            kept = min(filters, REFERENCE_FILTERS)
            small = {
                "x": arrays["x"][:REFERENCE_BATCH],
                "weight": arrays["weight"][:kept],
                "bias": arrays["bias"][:kept],
                "dy": np.ascontiguousarray(arrays["dy"][:REFERENCE_BATCH, :kept]),
            }
            scale = (BATCH / REFERENCE_BATCH) * (filters / kept)
            note = f"{case}: timed on batch {REFERENCE_BATCH} of {BATCH} and {kept} of {filters} filters, scaled x{scale:.0f}"
            kernels = conv_kernels.select("reference")
        else:
            small = {key: value[:REFERENCE_POOL_BATCH] for key, value in arrays.items()}
            scale = BATCH / REFERENCE_POOL_BATCH
            note = f"{case}: timed on batch {REFERENCE_POOL_BATCH} of {BATCH}, scaled x{scale:.0f}"
            kernels = pool_kernels.select("reference")

        calls = conv_calls(kernels, small) if group == "conv" else pool_calls(kernels, small)
        for kernel, call in calls.items():
            # One call: the loops take seconds, and they do not vary enough to need more.
            start = time.perf_counter()
            call()
            times[case, kernel] = ((time.perf_counter() - start) * 1e3 * scale, note)
        times[case, "forward+backward"] = (sum(times[case, kernel][0] for kernel in calls), note)
    return times


def lowest(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return min(present) if present else None


def run(args: argparse.Namespace) -> list[dict]:
    """Measure the groups of GROUPS that ``args.only`` names; return one row per layer and kernel.

    Other jobs on the machine slow both libraries down, so the Numba kernels,
    numpy's matmul and PyTorch are measured ``ROUNDS`` times, taking turns, and
    each reported time is the lowest median over the rounds.
    """
    groups = [group for group in GROUPS if group in args.only]
    if not groups:
        return []
    has_torch = importlib.util.find_spec("torch") is not None

    compile_times = measure_compile_times(args)
    references = reference_times(groups)
    numba_rounds, torch_rounds, blas_rounds = [], [], []
    for _ in range(ROUNDS):
        if has_torch:
            torch_rounds.append(run_worker("torch", args))
        numba_rounds.append(numba_times(groups, args.repeat))
        if "conv" in groups:
            blas_rounds.append({case: blas_gflops(c, f, s, args.repeat) for case, c, f, s in CONV_LAYERS})

    rows = []
    for group, case, arrays in selected_layers(groups):
        kernels = CONV_KERNELS if group == "conv" else POOL_KERNELS
        for kernel in (*kernels, "forward+backward"):
            numba_ms = lowest([times[case, kernel]["median_ms"] for times in numba_rounds])
            reference_ms, note = references[case, kernel]
            row = {
                "group": group, "case": case, "kernel": kernel, "rounds": ROUNDS,
                "numba_ms": numba_ms,
                "numba_min_ms": lowest([times[case, kernel]["min_ms"] for times in numba_rounds]),
                "reference_ms": reference_ms, "reference_note": note, "speedup": reference_ms / numba_ms,
            }

            if kernel in kernels:
                row["compile_s"] = compile_times[group][kernel]
            else:
                row["compile_s"] = sum(compile_times[group][name] for name in kernels)

            if group == "conv" and kernel == "forward+backward":
                channels, filters, size = arrays["x"].shape[1], arrays["weight"].shape[0], arrays["x"].shape[2]
                row["gflops"] = 3 * conv_flops(channels, filters, size) / (numba_ms * 1e6)
                row["blas_gflops"] = max(rates[case] for rates in blas_rounds)

            torch_ms = lowest([times.get(case, {}).get(kernel) for times in torch_rounds])
            if torch_ms is not None:
                row["torch_ms"] = torch_ms
                row["torch_ratio"] = numba_ms / torch_ms
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tinymbm.bench.conv",
                                     description="Run one measurement worker and print its result as JSON.")
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
