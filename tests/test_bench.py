"""The benchmark command: it runs, prints its table and writes the same rows as JSON.

The numbers themselves depend on the machine, so these tests check only that
each measurement is there and positive, never how fast anything ran.
"""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def run_bench(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "tinymbm.bench", *args], check=False, cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_bench_pool_one_thread_writes_json(tmp_path):
    path = tmp_path / "bench.json"
    completed = run_bench("--only", "pool", "--repeat", "1", "--threads", "1", "--json", str(path), cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr

    assert "pool 64ch, 28x28" in completed.stdout
    assert f"wrote {path}" in completed.stdout
    payload = json.loads(path.read_text())
    environment = payload["environment"]
    assert environment["numba_threads"] == 1
    assert environment["threads_requested"] == 1
    # One thread leaves the convolution a single share of the batch.
    assert environment["conv_shares_of_64"] == 1

    rows = payload["rows"]
    assert {(row["case"], row["kernel"]) for row in rows} == {
        (case, kernel)
        for case in ("pool 64ch, 28x28", "pool 128ch, 14x14")
        for kernel in ("forward", "backward", "forward+backward")
    }
    for row in rows:
        label = f"{row['case']} {row['kernel']}"
        assert row["group"] == "pool", label
        for key in ("numba_ms", "numba_min_ms", "reference_ms", "speedup"):
            assert row[key] > 0, f"{label}: {key}={row[key]}"
        assert row["compile_s"] is not None, label
        assert "torch_ms" not in row or row["torch_ms"] > 0, label
    assert not list(tmp_path.glob(".bench-*")), "temporary JSON file left behind"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--only", "conv,nope"], "unknown group(s) nope"),
        (["--threads", "0"], "--threads must be at least 1, got 0"),
        (["--repeat", "0"], "--repeat must be at least 1, got 0"),
    ],
)
def test_bench_rejects_bad_options(tmp_path, args, message):
    completed = run_bench(*args, cwd=tmp_path)
    assert completed.returncode == 2
    assert message in completed.stderr
