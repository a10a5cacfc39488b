"""Make a student copy of the project with chosen exercises blanked, and fill blanks back in.

A student copy contains what a learner needs to run, test and read the engine:
the ``tinymbm`` package, ``tests/``, ``lessons/``, ``setup.cfg``,
``pyproject.toml`` and the top-level Markdown files. It leaves out version
control, caches, build output, data folders and ``LEFT_OUT_FILES``. It adds an
``ASSIGNMENT.md`` that lists the exercises and how to check them.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

from tinymbm.classroom.exercises import EXERCISES
from tinymbm.classroom.regions import (
    Region,
    blank_text,
    find_regions,
    replace_bodies,
    write_text_atomic,
)

COPIED_DIRECTORIES = ("tinymbm", "tests", "lessons")
COPIED_FILES = ("setup.cfg", "pyproject.toml", ".gitignore")
# The classroom test needs every solution in place, and the stand-ins are
# working solutions of two exercises.
LEFT_OUT_FILES = ("tests/test_classroom.py", "tinymbm/classroom/standins.py")
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", "*.nbi", "*.nbc", ".pytest_cache", "*.egg-info")

SOLUTIONS_FILE = "solutions.json"


def project_root() -> Path:
    """Return the folder that contains the ``tinymbm`` package this module belongs to."""
    return Path(__file__).resolve().parents[2]


def copy_project(source: Path, destination: Path) -> None:
    """Copy the files of a student copy from ``source`` to the new folder ``destination``.

    Raises:
        FileExistsError: ``destination`` exists and is not empty.
        FileNotFoundError: ``source`` has no ``tinymbm`` package.
    """
    if not (source / "tinymbm" / "__init__.py").is_file():
        raise FileNotFoundError(f"{source} has no tinymbm package (tinymbm/__init__.py not found)")
    if destination.exists() and any(destination.iterdir()):
        raise FileExistsError(f"output folder {destination} already exists and is not empty; choose a new folder")
    destination.mkdir(parents=True, exist_ok=True)

    for name in COPIED_DIRECTORIES:
        if (source / name).is_dir():
            shutil.copytree(source / name, destination / name, ignore=_IGNORED)
    for name in COPIED_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, destination / name)
    for markdown in sorted(source.glob("*.md")):
        shutil.copy2(markdown, destination / markdown.name)
    for relative in LEFT_OUT_FILES:
        (destination / relative).unlink(missing_ok=True)


def blank_exercises(root: Path, exercises: list[str]) -> list[Region]:
    """Blank the regions of ``exercises`` in the copy at ``root``, in place.

    Returns the removed regions (their ``body`` is the solution).

    Raises:
        ValueError: an exercise has no region in the copy.
        SyntaxError: a blanked file no longer compiles (a marker in the wrong place).
    """
    by_file: dict[str, list[str]] = defaultdict(list)
    present = {region.exercise: region.path for region in find_regions(root)}
    for exercise in exercises:
        if exercise not in present:
            raise ValueError(
                f"exercise {exercise} has no '# BEGIN EXERCISE {exercise}: ...' region under {root / 'tinymbm'}"
            )
    for region in find_regions(root):
        if region.exercise in exercises and region.exercise not in by_file[region.path]:
            by_file[region.path].append(region.exercise)

    removed: list[Region] = []
    for relative, chosen in by_file.items():
        path = root / relative
        text, blanked = blank_text(path.read_text(encoding="utf-8"), relative, chosen)
        compile(text, str(path), "exec")
        write_text_atomic(path, text)
        removed.extend(blanked)
    return removed


def write_solutions(regions: list[Region], destination: Path) -> None:
    """Write the removed code to ``destination``: one readable ``ID.py`` per exercise and ``solutions.json``.

    ``solutions.json`` is what :func:`fill_solutions` reads back.
    """
    destination.mkdir(parents=True, exist_ok=True)
    by_exercise: dict[str, list[Region]] = defaultdict(list)
    for region in regions:
        by_exercise[region.exercise].append(region)

    entries = {}
    for exercise, items in by_exercise.items():
        parts = [f"# Solution of exercise {exercise}: {EXERCISES[exercise].description}\n"]
        entries[exercise] = []
        index_in_file: dict[str, int] = defaultdict(int)
        for region in items:
            parts.append(f"\n# --- {region.location}\n{region.body}")
            entries[exercise].append({
                "path": region.path,
                "index": index_in_file[region.path],
                "function": region.function,
                "code": region.body,
            })
            index_in_file[region.path] += 1
        write_text_atomic(destination / f"{exercise}.py", "".join(parts))

    document = {"format": 1, "exercises": entries}
    write_text_atomic(destination / SOLUTIONS_FILE, json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def fill_solutions(root: Path, solutions: Path, exercises: list[str] | None = None) -> list[str]:
    """Put the solutions from ``solutions/solutions.json`` back into the copy at ``root``.

    Only the exercises in ``exercises`` are filled (all in the file when
    None). Returns the ids filled.

    Raises:
        FileNotFoundError: no solutions.json in ``solutions``.
        ValueError: an exercise is not in the file.
    """
    document = json.loads((solutions / SOLUTIONS_FILE).read_text(encoding="utf-8"))
    available = document["exercises"]
    chosen = list(available) if exercises is None else exercises
    missing = [exercise for exercise in chosen if exercise not in available]
    if missing:
        raise ValueError(f"{solutions / SOLUTIONS_FILE} has no solution for {', '.join(missing)}")

    by_file: dict[str, dict[tuple[str, int], str]] = defaultdict(dict)
    for exercise in chosen:
        for entry in available[exercise]:
            by_file[entry["path"]][(exercise, entry["index"])] = entry["code"]

    for relative, bodies in by_file.items():
        path = root / relative
        text = replace_bodies(path.read_text(encoding="utf-8"), relative, bodies)
        compile(text, str(path), "exec")
        write_text_atomic(path, text)
    return chosen


def write_assignment_sheet(root: Path, regions: list[Region]) -> None:
    """Write ``ASSIGNMENT.md`` in the copy: each exercise, where its blanks are, how to check it."""
    by_exercise: dict[str, list[Region]] = defaultdict(list)
    for region in regions:
        by_exercise[region.exercise].append(region)

    lines = [
        "# Assignment",
        "",
        "Replace each `raise NotImplementedError(\"exercise ...\")` line between the",
        "`# BEGIN EXERCISE` and `# END EXERCISE` markers with your code. The docstring",
        "above each blank states the formula. Keep the marker lines.",
        "",
    ]
    for exercise, items in by_exercise.items():
        lines.append(f"## {exercise}")
        lines.append("")
        description = EXERCISES[exercise].description
        lines.append(f"{description[0].upper()}{description[1:]}.")
        lines.append("")
        for region in items:
            lines.append(f"- `{region.path}`, in `{region.function}` (line {region.begin + 1})")
        lines.append("")
        lines.append(f"Check it: `python -m pytest tests/test_exercises.py -m {exercise}`")
        lines.append("")
    lines += [
        "## Grade everything",
        "",
        "`python -m tinymbm.classroom grade` prints your points per exercise.",
        "Other tests that compare a kernel with its reference twin fail until",
        "the blanks are filled.",
        "",
        "The first pytest run compiles the Numba kernels, which can take a minute",
        "or more. `NUMBA_DISABLE_JIT=1 python -m pytest tests/test_exercises.py`",
        "runs them as Python instead, which is quick at the checks' small shapes.",
        "",
    ]
    write_text_atomic(root / "ASSIGNMENT.md", "\n".join(lines))


def make_assignment(
    destination: Path, exercises: list[str], solutions: Path | None = None, source: Path | None = None
) -> list[Region]:
    """Write a student copy of ``source`` (default: this project) to ``destination`` with ``exercises`` blanked.

    Returns the removed regions. With ``solutions``, also writes the removed
    code there (see :func:`write_solutions`).
    """
    source = project_root() if source is None else source
    copy_project(source, destination)
    removed = blank_exercises(destination, exercises)
    write_assignment_sheet(destination, removed)
    if solutions is not None:
        write_solutions(removed, solutions)
    return removed
