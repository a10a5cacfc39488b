"""Environment defaults that must be in place before Numba and NumPy start their threads.

``tinymbm/__init__.py`` imports this module before anything else, so the
defaults apply when tinymbm is imported before NumPy. A value that the user
set in the environment always wins.
"""

import os
import sys

# Numba's default OpenMP threads keep spinning after each parallel kernel and
# compete with OpenBLAS's threads for the cores, which made a training step
# several times slower on 2 cores. The workqueue layer's threads sleep instead.
# Numba reads both settings when it starts its threads.
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# OpenBLAS's worker threads likewise spin for 2^28 CPU cycles (about a tenth of
# a second) after each product and slow down the parallel kernels that run
# next. With 2^4 cycles they sleep at once. OpenBLAS reads the setting only
# when NumPy loads it, so tinymbm sets it only while NumPy is not loaded yet.
if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

# The OPENBLAS_THREAD_TIMEOUT text that NumPy's OpenBLAS reads. It is exact
# when tinymbm comes before NumPy. Otherwise it is the environment's value at
# tinymbm's import, which is what OpenBLAS read unless the program changed the
# variable after loading NumPy.
OPENBLAS_THREAD_TIMEOUT = os.environ.get("OPENBLAS_THREAD_TIMEOUT")
