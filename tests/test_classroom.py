"""The classroom kit: exercise regions, student copies, and the subprocess grader."""

import json
import os
import subprocess
import sys

import pytest

from tinymbm.classroom import EXERCISES, checks
from tinymbm.classroom.assignment import project_root
from tinymbm.classroom.regions import (
    RegionError,
    blank_text,
    find_regions,
    parse_regions,
    replace_bodies,
)

ROOT = project_root()
BLANKED = ["topological_sort", "conv_forward", "maxpool_backward"]
FULL_MARKS = sum(check.points for items in checks.CHECKS.values() for check in items)


def classroom(*args, timeout=300):
    """Run ``python -m tinymbm.classroom ARGS`` from the project root; return the finished process."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-m", "tinymbm.classroom", *map(str, args)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )


def report_entries(path):
    return {entry["id"]: entry for entry in json.loads(path.read_text(encoding="utf-8"))["exercises"]}


# ------------------------------------------------------------------ regions

SAMPLE = '''def area(width, height):
    """Return width · height."""
    # BEGIN EXERCISE area: implement the product
    result = width * height
    return result
    # END EXERCISE area


class Box:
    def volume(self):
        """Return the product of the sides."""
        # BEGIN EXERCISE volume: implement it
        return 1
        # END EXERCISE volume
'''


def test_regions_parse_sample():
    regions = parse_regions(SAMPLE, "sample.py")
    assert [(r.exercise, r.function, r.indent) for r in regions] == [
        ("area", "area", "    "),
        ("volume", "Box.volume", "        "),
    ]


def test_regions_blank_keeps_docstring():
    text, removed = blank_text(SAMPLE, "sample.py", ["area"])
    assert '"""Return width · height."""' in text
    assert '    raise NotImplementedError("exercise area: implement the product (see the docstring above)")\n' in text
    assert "result = width * height" not in text
    assert "# END EXERCISE area" in text
    assert "        return 1\n" in text, "an exercise that was not chosen keeps its solution"
    assert removed[0].body == "    result = width * height\n    return result\n"


def test_regions_blank_then_fill_roundtrip():
    text, removed = blank_text(SAMPLE, "sample.py", ["area", "volume"])
    compile(text, "sample.py", "exec")
    filled = replace_bodies(text, "sample.py", {(r.exercise, 0): r.body for r in removed})
    assert filled == SAMPLE


BAD_MARKERS = [
    ("end without begin", "x = 1\n# END EXERCISE a\n"),
    ("unclosed", "# BEGIN EXERCISE a: do it\nx = 1\n"),
    ("nested", "# BEGIN EXERCISE a: do it\n# BEGIN EXERCISE b: do it\n# END EXERCISE b\n# END EXERCISE a\n"),
    ("mismatched end", "# BEGIN EXERCISE a: do it\nx = 1\n# END EXERCISE b\n"),
]


@pytest.mark.parametrize(("case", "text"), BAD_MARKERS, ids=[case for case, _ in BAD_MARKERS])
def test_regions_bad_markers(case, text):
    with pytest.raises(RegionError, match="bad.py:"):
        parse_regions(text, "bad.py")


def test_regions_match_registry():
    found = {region.exercise for region in find_regions(ROOT)}
    assert found == set(EXERCISES), f"regions {sorted(found)} vs exercises {sorted(EXERCISES)}"
    assert set(checks.CHECKS) == set(EXERCISES)
    for region in find_regions(ROOT):
        assert region.path == EXERCISES[region.exercise].path, region.location
        assert region.body.strip(), f"{region.location} is empty"


@pytest.mark.parametrize("exercise", ["topological_sort", "cross_entropy_backward"])
def test_standins_pass_their_checks(exercise, monkeypatch):
    from tinymbm import autograd
    from tinymbm import functional as F
    from tinymbm.classroom import standins

    monkeypatch.setattr(autograd, "_topological_order", standins.topological_order)
    monkeypatch.setattr(F.CrossEntropy, "backward", staticmethod(standins.cross_entropy_backward))
    for check in checks.CHECKS[exercise]:
        result = checks.run_check(exercise, check)
        assert result["passed"], f"{exercise}/{check.name}: {result['message']}"


def test_exercises_worth_ten_points():
    for exercise, items in checks.CHECKS.items():
        assert sum(check.points for check in items) == 10, exercise


# ---------------------------------------------------------------- commands


def test_list_names_every_exercise():
    result = classroom("list")
    assert result.returncode == 0, result.stderr
    for exercise in EXERCISES.values():
        assert f"{exercise.id}  " in result.stdout
        assert exercise.description in result.stdout
    assert "no region found" not in result.stdout


def test_make_rejects_unknown_exercise(tmp_path):
    result = classroom("make", "--exercises", "conv_forward,conv_sideways", "--out", tmp_path / "copy")
    assert result.returncode == 2
    assert "conv_sideways" in result.stderr
    assert "conv_backward" in result.stderr, "the message lists the known ids"


def test_make_rejects_nonempty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    result = classroom("make", "--exercises", "adam_step", "--out", tmp_path)
    assert result.returncode == 2
    assert "not empty" in result.stderr


@pytest.fixture(scope="module")
def assignment(tmp_path_factory):
    """A student copy with BLANKED blanked, and the teacher's solutions folder."""
    base = tmp_path_factory.mktemp("classroom")
    copy, solutions = base / "student", base / "solutions"
    result = classroom("make", "--exercises", ",".join(BLANKED), "--out", copy, "--solutions", solutions)
    assert result.returncode == 0, result.stderr
    return copy, solutions


def test_copy_has_project_files(assignment):
    copy, _ = assignment
    for name in ("tinymbm/__init__.py", "tests/test_exercises.py", "lessons", "setup.cfg", "pyproject.toml",
                 "README.md", "README.zh-CN.md", "ASSIGNMENT.md"):
        assert (copy / name).exists(), name


def test_copy_leaves_out_caches(assignment):
    copy, _ = assignment
    for name in (".git", ".pytest_cache", "tinymbm.egg-info", "tests/test_classroom.py",
                 "tinymbm/classroom/standins.py"):
        assert not (copy / name).exists(), name
    assert not list(copy.rglob("__pycache__"))


def test_copy_blanks_chosen_regions(assignment):
    copy, _ = assignment
    for region in find_regions(copy):
        blank = region.body.strip().startswith(f'raise NotImplementedError("exercise {region.exercise}:')
        assert blank == (region.exercise in BLANKED), region.location


def test_copy_keeps_docstrings(assignment):
    copy, _ = assignment
    original = (ROOT / "tinymbm/kernels/conv.py").read_text(encoding="utf-8")
    blanked = (copy / "tinymbm/kernels/conv.py").read_text(encoding="utf-8")
    docstring = '    """Compute y = conv2d(x, w) + b with one loop per index of the formula.'
    assert docstring in original
    assert docstring in blanked


def test_copy_imports(assignment):
    copy, _ = assignment
    code = "import tinymbm, tinymbm.functional, tinymbm.kernels.conv, tinymbm.kernels.pool, tinymbm.kernels.lstm"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=copy, env=dict(os.environ, PYTHONPATH=str(copy)),
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr


def test_solutions_written(assignment):
    _, solutions = assignment
    document = json.loads((solutions / "solutions.json").read_text(encoding="utf-8"))
    assert sorted(document["exercises"]) == sorted(BLANKED)
    for exercise in BLANKED:
        assert (solutions / f"{exercise}.py").is_file(), exercise


def test_grade_blanked_then_filled(assignment, tmp_path):
    copy, solutions = assignment
    blanked_json = tmp_path / "blanked.json"

    result = classroom("grade", "--path", copy, "--json", blanked_json, "--jobs", "2")

    assert result.returncode == 1, result.stdout + result.stderr
    entries = report_entries(blanked_json)
    for exercise in EXERCISES:
        entry = entries[exercise]
        if exercise in BLANKED:
            assert entry["status"] == "failed", entry
            assert f"exercise {exercise}:" in entry["message"], entry["message"]
            assert f"exercise {exercise}:" in result.stdout
        else:
            assert entry["score"] == entry["max_score"], entry

    filled = classroom("fill", "--path", copy, "--solutions", solutions)
    assert filled.returncode == 0, filled.stderr
    full_json = tmp_path / "full.json"
    result = classroom("grade", "--path", copy, "--json", full_json, "--jobs", "2")

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(full_json.read_text(encoding="utf-8"))
    assert (report["score"], report["max_score"]) == (FULL_MARKS, FULL_MARKS)
    assert f"{FULL_MARKS}/{FULL_MARKS}" in result.stdout
    assert len(report["tests"]) == sum(len(items) for items in checks.CHECKS.values())


def test_grade_survives_crash_and_hang(tmp_path):
    copy = tmp_path / "student"
    made = classroom("make", "--exercises", "adam_step", "--out", copy)
    assert made.returncode == 0, made.stderr
    broken = {
        ("tinymbm/kernels/conv.py", "conv_forward"): "import os; os._exit(3)",
        ("tinymbm/kernels/optim.py", "adam_step"): "while True:\n    pass",
        ("tinymbm/kernels/pool.py", "maxpool_backward"): "return np.zeros(input_shape, dtype=grad_output.dtype)",
    }
    for (relative, exercise), code in broken.items():
        path = copy / relative
        text = path.read_text(encoding="utf-8")
        indent = next(r.indent for r in parse_regions(text, relative) if r.exercise == exercise)
        body = "".join(f"{indent}{line}\n" for line in code.splitlines())
        path.write_text(replace_bodies(text, relative, {(exercise, 0): body}), encoding="utf-8")
    report_path = tmp_path / "report.json"

    result = classroom("grade", "--path", copy, "--json", report_path, "--timeout", "20", "--jobs", "2",
                       "--exercises", "conv_forward,adam_step,maxpool_backward,cross_entropy_backward")

    assert result.returncode == 1, result.stdout + result.stderr
    entries = report_entries(report_path)
    assert entries["conv_forward"]["status"] == "crashed", entries["conv_forward"]
    assert "exited with code 3" in entries["conv_forward"]["message"]
    assert entries["adam_step"]["status"] == "timeout", entries["adam_step"]
    assert "timed out after 20 s" in entries["adam_step"]["message"]
    assert entries["maxpool_backward"]["status"] == "failed", entries["maxpool_backward"]
    assert 0 < entries["maxpool_backward"]["score"] < 10, "shape and dtype still earn their points"
    assert entries["cross_entropy_backward"]["score"] == 10, entries["cross_entropy_backward"]
