"""Command line of the classroom kit: ``python -m tinymbm.classroom list|make|grade|fill``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tinymbm.classroom.exercises import EXERCISES, parse_ids
from tinymbm.classroom.regions import RegionError


def _exercise_list(text: str) -> list[str]:
    try:
        return parse_ids(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid time limit {text!r}; expected a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"invalid time limit {text!r}; expected a positive number of seconds")
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tinymbm.classroom",
        description="Hand out parts of tinymbm as exercises and grade the students' copies.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    list_parser = commands.add_parser("list", help="list the exercises with a one-line description")
    list_parser.add_argument("--source", type=Path, default=None, help="project folder to scan (default: this one)")

    make = commands.add_parser("make", help="write a student copy with the chosen exercises blanked")
    make.add_argument("--exercises", type=_exercise_list, required=True,
                      help="comma-separated exercise ids, or 'all'")
    make.add_argument("--out", type=Path, required=True, help="new folder for the student copy")
    make.add_argument("--solutions", type=Path, default=None,
                      help="folder to write the removed code to, for the teacher")
    make.add_argument("--source", type=Path, default=None, help="project folder to copy (default: this one)")

    grade = commands.add_parser("grade", help="run each exercise's checks against a copy and print the points")
    grade.add_argument("--path", type=Path, default=Path("."), help="the copy to grade (default: the current folder)")
    grade.add_argument("--json", type=Path, default=None, help="also write the report as JSON to this file")
    grade.add_argument("--timeout", type=_positive_seconds, default=120.0,
                       help="time limit per exercise, in seconds (default: 120)")
    grade.add_argument("--exercises", type=_exercise_list, default=list(EXERCISES),
                       help="comma-separated exercise ids to grade (default: all)")
    grade.add_argument("--jobs", type=int, default=1, help="exercises graded at the same time (default: 1)")
    grade.add_argument("--seed", type=int, default=0, help="shifts the random inputs of every check (default: 0)")
    grade.add_argument("--jit", action="store_true",
                       help="compile the Numba kernels instead of running them as Python (slower on a fresh copy)")

    fill = commands.add_parser("fill", help="put solutions written by 'make --solutions' back into a copy")
    fill.add_argument("--solutions", type=Path, required=True, help="folder that contains solutions.json")
    fill.add_argument("--path", type=Path, default=Path("."), help="the copy to fill (default: the current folder)")
    fill.add_argument("--exercises", type=_exercise_list, default=None,
                      help="comma-separated exercise ids (default: every exercise in solutions.json)")
    return parser


def _list(source: Path | None) -> int:
    from tinymbm.classroom.assignment import project_root
    from tinymbm.classroom.regions import find_regions

    root = project_root() if source is None else source
    found: dict[str, list[str]] = {}
    for region in find_regions(root):
        found.setdefault(region.exercise, []).append(region.function)

    width = max(len(exercise) for exercise in EXERCISES)
    for exercise in EXERCISES.values():
        functions = ", ".join(found.get(exercise.id, [])) or "no region found"
        print(f"{exercise.id:<{width}}  {exercise.description}  [{exercise.path}: {functions}]")
    for unknown in sorted(set(found) - set(EXERCISES)):
        print(f"{unknown:<{width}}  region without an entry in tinymbm/classroom/exercises.py")
    return 0


def _make(args: argparse.Namespace) -> int:
    from tinymbm.classroom.assignment import make_assignment

    out = args.out.resolve()
    removed = make_assignment(out, args.exercises, args.solutions, args.source)
    print(f"wrote the student copy to {out}")
    for region in removed:
        print(f"  blanked {region.exercise:<24} {region.location}")
    if args.solutions is not None:
        print(f"wrote the removed code to {args.solutions.resolve()}")
    return 0


def _grade(args: argparse.Namespace) -> int:
    from tinymbm.classroom.grading import format_table, grade, write_report

    root = args.path.resolve()
    if not (root / "tinymbm" / "__init__.py").is_file():
        print(f"error: {root} is not a tinymbm copy (tinymbm/__init__.py not found)", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"error: --jobs must be at least 1, got {args.jobs}", file=sys.stderr)
        return 2

    report = grade(root, args.exercises, args.timeout, jobs=args.jobs, seed=args.seed, jit=args.jit)
    print(format_table(report))
    if args.json is not None:
        write_report(report, args.json)
    return 0 if report["passed"] else 1


def _fill(args: argparse.Namespace) -> int:
    from tinymbm.classroom.assignment import fill_solutions

    filled = fill_solutions(args.path.resolve(), args.solutions, args.exercises)
    print(f"filled {', '.join(filled)} in {args.path.resolve()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one command; return the exit code (1 when grading finds a failing exercise, 2 on bad input)."""
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "list":
            return _list(args.source)
        if args.command == "make":
            return _make(args)
        if args.command == "grade":
            return _grade(args)
        return _fill(args)
    except (FileExistsError, FileNotFoundError, RegionError, ValueError, SyntaxError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
