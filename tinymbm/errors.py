"""Exception types of the engine.

Each one also derives from the built-in type that PyTorch raises in the same
situation, so code written as ``except RuntimeError`` or ``except ValueError``
catches it either way.
"""


class ShapeError(ValueError, RuntimeError):
    """An operand's shape does not fit the operation (both shapes are in the message)."""


class DTypeError(TypeError, RuntimeError):
    """An operand has a dtype the operation cannot use (for example an integer image)."""
