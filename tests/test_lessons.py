"""Every lesson runs in quick mode, prints its wall time and saves at least one plot."""

import os
import pathlib
import subprocess
import sys

import pytest

LESSONS = sorted((pathlib.Path(__file__).resolve().parents[1] / "lessons").glob("[0-9][0-9]_*.py"))
QUICK = ["--limit", "500", "--epochs", "1"]
# Each lesson carries the marker lesson_NN, so `pytest -m lesson_04` runs one lesson's tests.
LESSON_PARAMS = [
    pytest.param(path, id=path.stem, marks=getattr(pytest.mark, f"lesson_{path.name[:2]}")) for path in LESSONS
]


def test_lessons_exist():
    assert len(LESSONS) >= 10


@pytest.mark.parametrize("lesson", LESSON_PARAMS)
def test_lesson_quick_mode(lesson, tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg")
    result = subprocess.run(
        [sys.executable, str(lesson), *QUICK, "--out", str(tmp_path)],
        check=False, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{lesson.name} failed:\n{output[-4000:]}"
    assert "wall time:" in result.stdout, f"{lesson.name} did not print its wall time"
    assert list(tmp_path.rglob("*.png")), f"{lesson.name} saved no plot"


@pytest.mark.parametrize("lesson", LESSON_PARAMS)
def test_lesson_help(lesson):
    result = subprocess.run(
        [sys.executable, str(lesson), "--help"], check=False, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for option in ("--data-dir", "--epochs", "--limit", "--out"):
        assert option in result.stdout, f"{lesson.name} --help lacks {option}"


@pytest.mark.parametrize("lesson", LESSON_PARAMS)
def test_lesson_is_bilingual_percent_format(lesson):
    text = lesson.read_text(encoding="utf-8")
    assert "# %% [markdown]" in text
    assert "# %%\n" in text
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text), f"{lesson.name} has no Chinese text"
    assert "Exercises" in text, f"{lesson.name} has no exercises"
    assert "Summary" in text, f"{lesson.name} has no summary"
