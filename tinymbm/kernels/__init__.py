"""Kernels: the hot loops of the engine, on plain NumPy arrays.

A kernel takes and returns ``numpy.ndarray`` objects plus plain Python numbers
and tuples, and never sees a ``Tensor`` or the autograd graph.
``tinymbm.functional`` wraps each one in a differentiable op. There is one module per op family, and
every kernel in it comes twice behind one signature: a reference version
written as literally as its formula (plain loops, slow, meant to be read) and a
Numba version (``@njit(cache=True)``) that the engine runs. Tests hold the two
equal. Setting ``NUMBA_DISABLE_JIT=1`` runs the Numba versions as plain
Python, so a debugger can step through them.
"""
