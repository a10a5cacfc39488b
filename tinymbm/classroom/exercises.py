"""The exercises a teacher can hand out: id, one-line description, and where the code sits.

The regions themselves are marked in the source (see :mod:`tinymbm.classroom.regions`);
this table gives each exercise its description for ``list`` and the file to
open. The checks that grade an exercise are in
:mod:`tinymbm.classroom.checks`, under the same id.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Exercise:
    """An exercise id, its one-line description and the file its regions are in."""

    id: str
    description: str
    path: str


EXERCISES: dict[str, Exercise] = {
    exercise.id: exercise
    for exercise in [
        Exercise(
            "topological_sort",
            "order the graph for backward: every consumer before its producers, with an explicit stack",
            "tinymbm/autograd.py",
        ),
        Exercise(
            "cross_entropy_backward",
            "the gradient of cross-entropy: softmax minus the one-hot target, scaled by the reduction",
            "tinymbm/functional.py",
        ),
        Exercise(
            "conv_forward",
            "the reference conv2d forward pass, one loop per index of the cross-correlation sum",
            "tinymbm/kernels/conv.py",
        ),
        Exercise(
            "conv_backward",
            "the reference conv2d gradients dx, dw and db, written from the forward sum",
            "tinymbm/kernels/conv.py",
        ),
        Exercise(
            "maxpool_backward",
            "the reference max-pool backward: each window's gradient goes to its maximum",
            "tinymbm/kernels/pool.py",
        ),
        Exercise(
            "lstm_cell_backward",
            "the reference LSTM cell backward: gate pre-activation and cell-state gradients",
            "tinymbm/kernels/lstm.py",
        ),
        Exercise(
            "adam_step",
            "the reference Adam update, element by element, in place",
            "tinymbm/kernels/optim.py",
        ),
    ]
}


def parse_ids(text: str) -> list[str]:
    """Parse ``ID[,ID...]`` (or ``all``) into known exercise ids, in the table's order.

    Raises:
        ValueError: an empty list or an unknown id; the message lists the known ids.
    """
    if text.strip() == "all":
        return list(EXERCISES)

    requested = [part.strip() for part in text.split(",") if part.strip()]
    if not requested:
        raise ValueError(f"no exercise ids given; expected a comma-separated list of {', '.join(EXERCISES)}")
    unknown = [name for name in requested if name not in EXERCISES]
    if unknown:
        raise ValueError(f"unknown exercise id(s) {', '.join(unknown)}; known ids: {', '.join(EXERCISES)}")
    return [name for name in EXERCISES if name in requested]
