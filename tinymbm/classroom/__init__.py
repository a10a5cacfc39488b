"""The classroom kit: hand parts of the engine out as exercises, then grade them.

Parts of the engine sit between marker lines that name an exercise::

    # BEGIN EXERCISE conv_forward: implement y = conv2d(x, w) + b ...
    ...
    # END EXERCISE conv_forward

``python -m tinymbm.classroom list`` shows the exercises, ``make`` writes a
student copy with chosen regions replaced by ``raise NotImplementedError``
(docstrings and hints kept), ``grade`` runs each exercise's checks against
a copy in its own subprocess and prints the points, and ``fill`` puts
solutions back. How the checks exercise a blanked reference kernel is
described in :mod:`tinymbm.classroom.checks`.
"""

from tinymbm.classroom.exercises import EXERCISES, Exercise, parse_ids

__all__ = ["EXERCISES", "Exercise", "parse_ids"]
