"""The engine's single source of randomness.

Every random draw of tinymbm (initial weights, ``randn``/``rand``, shuffling
without an explicit seed, synthetic data without an explicit seed) takes its
numbers from one ``numpy.random.Generator``, so ``manual_seed`` makes a whole
run repeatable.
"""

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the engine's generator and return it."""
    global _generator
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"manual_seed: seed must be an int, got {seed!r}")
    # Negative seeds are accepted, as in PyTorch, by wrapping them to 64 bits.
    _generator = np.random.default_rng(int(seed) % 2**64)
    return _generator


def generator() -> np.random.Generator:
    """Return the generator that every random draw of the engine uses."""
    return _generator


def get_state() -> dict:
    """Return the generator's state, for checkpoints."""
    return _generator.bit_generator.state


def set_state(state: dict) -> None:
    """Restore a state returned by :func:`get_state`."""
    _generator.bit_generator.state = state
