"""The graded exercise checks as pytest tests, one marker per exercise.

``python -m pytest tests/test_exercises.py -m conv_forward`` runs the checks
of one exercise: the same functions, seeds and isolation that
``python -m tinymbm.classroom grade`` runs, in this process instead of one
subprocess per exercise.
"""

import pytest

from tinymbm.classroom import checks

CASES = [
    pytest.param(exercise, check, id=f"{exercise}-{check.name}", marks=getattr(pytest.mark, exercise))
    for exercise, items in checks.CHECKS.items()
    for check in items
]


@pytest.mark.parametrize(("exercise", "check"), CASES)
def test_exercise_check(exercise, check):
    result = checks.run_check(exercise, check)
    assert result["passed"], f"{exercise}/{check.name} (seed {checks.check_seed(exercise, check.name)}): {result['message']}"
