"""Grade a student copy: each exercise's checks in their own subprocess, with a time limit.

The subprocess runs ``worker.py`` from this folder with the student's copy as
its working directory and only PYTHONPATH entry, so ``import tinymbm`` loads
the student's code and the checks come from the grader's copy. By default it
also sets ``NUMBA_DISABLE_JIT=1``: a fresh copy has no Numba cache, and
compiling every kernel would take tens of seconds per exercise, while the
checks use shapes small enough for the Numba kernels to run as Python.

An exercise whose process crashes or times out keeps the points of the
checks that finished before it. Its other checks score 0, with the reason.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tinymbm.classroom.exercises import EXERCISES
from tinymbm.classroom.regions import write_text_atomic

WORKER = Path(__file__).resolve().parent / "worker.py"

# Output of a failed exercise process kept in the report, in characters.
_OUTPUT_TAIL = 2000


def _check_table() -> dict[str, list[tuple[str, int]]]:
    """Return {exercise: [(check name, points), ...]} from the grader's checks."""
    from tinymbm.classroom import checks

    return {exercise: [(check.name, check.points) for check in items] for exercise, items in checks.CHECKS.items()}


def _worker_environment(root: Path, jit: bool) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root)
    env["TINYMBM_GRADE_ROOT"] = str(root)
    env["MPLBACKEND"] = "Agg"
    # Keep the student's folder free of .pyc files the grader would leave behind.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if jit:
        env.pop("NUMBA_DISABLE_JIT", None)
    else:
        env["NUMBA_DISABLE_JIT"] = "1"
    return env


def _stop(process: subprocess.Popen) -> None:
    """Kill a timed-out worker and anything it started (it leads its own process group on POSIX)."""
    if hasattr(os, "killpg"):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    else:
        process.kill()


def _exit_reason(returncode: int, stderr: str) -> str:
    last_line = next((line for line in reversed(stderr.strip().splitlines()) if line.strip()), "")
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        reason = f"the exercise process was killed by {name}"
    else:
        reason = f"the exercise process exited with code {returncode}"
    return f"{reason}: {last_line}" if last_line else reason


def grade_exercise(root: Path, exercise: str, timeout: float, seed: int = 0, jit: bool = False) -> dict[str, Any]:
    """Run one exercise's checks against the copy at ``root``; return its report entry.

    Keys: id, description, score, max_score, status ("passed", "failed",
    "crashed" or "timeout"), message, seconds, checks (one dict per check)
    and output (the tail of the process's stderr when it did not pass).
    """
    expected = _check_table()[exercise]
    start = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="tinymbm-grade-") as scratch:
        results_path = Path(scratch) / "results.jsonl"
        results_path.touch()
        command = [sys.executable, str(WORKER), exercise, str(results_path), "--seed", str(seed)]
        process = subprocess.Popen(
            command, cwd=root, env=_worker_environment(root, jit), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        timed_out = False
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop(process)
            stdout, stderr = process.communicate()
        reported = {}
        for line in results_path.read_text(encoding="utf-8").splitlines():
            result = json.loads(line)
            reported[result["check"]] = result

    if timed_out:
        status, reason = "timeout", f"timed out after {timeout:g} s"
    elif process.returncode != 0:
        status, reason = "crashed", _exit_reason(process.returncode, stderr)
    else:
        status, reason = "passed", ""

    results = []
    for name, points in expected:
        if name in reported:
            results.append(reported[name])
        else:
            results.append({
                "check": name, "points": 0, "max_points": points, "passed": False,
                "message": f"not run: {reason or 'the exercise process reported no result for it'}",
                "seconds": 0.0,
            })

    if status == "passed" and not all(result["passed"] for result in results):
        status = "failed"
    first_failure = next((result for result in results if not result["passed"]), None)
    message = reason or (f"{first_failure['check']}: {first_failure['message']}" if first_failure else "")

    return {
        "id": exercise,
        "description": EXERCISES[exercise].description,
        "score": sum(result["points"] for result in results),
        "max_score": sum(points for _, points in expected),
        "status": status,
        "message": message,
        "seconds": round(time.perf_counter() - start, 2),
        "checks": results,
        "output": "" if status == "passed" else (stdout + stderr)[-_OUTPUT_TAIL:],
    }


def grade(
    root: Path,
    exercises: list[str],
    timeout: float,
    jobs: int = 1,
    seed: int = 0,
    jit: bool = False,
) -> dict[str, Any]:
    """Grade ``exercises`` of the copy at ``root``; return the whole report.

    Keys of the report:

    - ``path``, ``score``, ``max_score``, and ``passed`` (True for full marks);
    - ``exercises``: one entry per exercise, as :func:`grade_exercise` returns it;
    - ``tests``: a flat list with one entry per check, with ``name``
      ("exercise/check"), ``score``, ``max_score``, ``status`` ("passed" or
      "failed") and ``output`` (the failure message).
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(grade_exercise, root, exercise, timeout, seed, jit) for exercise in exercises]
        entries = [future.result() for future in futures]

    tests = [
        {
            "name": f"{entry['id']}/{result['check']}",
            "score": result["points"],
            "max_score": result["max_points"],
            "status": "passed" if result["passed"] else "failed",
            "output": result["message"],
        }
        for entry in entries
        for result in entry["checks"]
    ]
    score = sum(entry["score"] for entry in entries)
    max_score = sum(entry["max_score"] for entry in entries)
    return {
        "path": str(root),
        "score": score,
        "max_score": max_score,
        "passed": score == max_score,
        "exercises": entries,
        "tests": tests,
    }


def format_table(report: dict[str, Any]) -> str:
    """Return the report as a plain-text table: one row per exercise, then the total."""
    width = max([len("exercise")] + [len(entry["id"]) for entry in report["exercises"]])
    lines = [f"{'exercise':<{width}}  {'points':>7}  {'status':<8}  {'seconds':>7}  first problem"]
    for entry in report["exercises"]:
        points = f"{entry['score']}/{entry['max_score']}"
        message = entry["message"].replace("\n", " ")
        if len(message) > 220:
            message = message[:217] + "..."
        lines.append(f"{entry['id']:<{width}}  {points:>7}  {entry['status']:<8}  {entry['seconds']:>7.1f}  {message}")
    total = f"{report['score']}/{report['max_score']}"
    lines.append(f"{'total':<{width}}  {total:>7}")
    return "\n".join(lines)


def write_report(report: dict[str, Any], path: Path) -> None:
    """Write the report as indented JSON, through a temporary file."""
    write_text_atomic(path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
