"""Run one exercise's checks in this process and append one JSON line per check to a file.

The grader starts this file as a script, ``python worker.py EXERCISE RESULTS
[--seed N]``, with the student's copy as the working directory and as the
only PYTHONPATH entry. It loads ``checks.py`` from its own folder by file path,
so the checks are the grader's while ``import tinymbm`` finds the student's
copy. Each result line is written and flushed as soon as its check ends,
so the checks that finished still count when a later one crashes the process
or hangs until the grader kills it.
"""

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _load_checks():
    spec = importlib.util.spec_from_file_location("tinymbm_grader_checks", _HERE / "checks.py")
    module = importlib.util.module_from_spec(spec)
    # dataclasses looks the module up in sys.modules while it is being executed.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exercise", help="exercise id, e.g. conv_forward")
    parser.add_argument("results", type=Path, help="file to append one JSON line per check to")
    parser.add_argument("--seed", type=int, default=0, help="shifts the random inputs of every check")
    args = parser.parse_args()

    # Python puts the script's folder first on sys.path. Dropping it keeps the
    # grader's own package from shadowing a module of the student's copy.
    if sys.path and Path(sys.path[0]).resolve() == _HERE:
        sys.path.pop(0)

    import tinymbm

    expected_root = Path(os.environ.get("TINYMBM_GRADE_ROOT", Path.cwd())).resolve()
    found = Path(tinymbm.__file__).resolve().parent.parent
    if found != expected_root:
        print(f"grading imported tinymbm from {found}, expected the copy at {expected_root}", file=sys.stderr)
        return 4

    checks = _load_checks()
    with open(args.results, "a", encoding="utf-8") as results:
        for check in checks.CHECKS[args.exercise]:
            result = checks.run_check(args.exercise, check, args.seed)
            results.write(json.dumps(result) + "\n")
            results.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
