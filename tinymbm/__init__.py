"""tinymbm: a from-scratch deep-learning engine for teaching.

A small reverse-mode autograd core over NumPy, Numba kernels for the hot
loops, and the CNN, LSTM and summed-fusion (MBM) models, with PyTorch's names
and layouts::

    import tinymbm as tm
    from tinymbm import nn, optim
    import tinymbm.functional as F
"""

import os
import sys

# Numba's default OpenMP threads keep spinning after each parallel kernel and
# compete with OpenBLAS's threads for the cores, which made a training step
# several times slower on 2 cores. The workqueue layer's threads sleep instead.
# Both settings must be in place before Numba starts its threads, and an
# explicit choice by the user in the environment wins.
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# OpenBLAS's worker threads likewise spin for 2^28 CPU cycles (about a tenth of
# a second) after each product and slow down the parallel kernels that run
# next. With 2^4 cycles they sleep at once. OpenBLAS reads the setting when
# NumPy loads it, so it is set only if NumPy is not loaded yet, and the
# convolution checks it before it splits the batch over threads
# (tinymbm/kernels/shares.py).
if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from tinymbm import (
    autograd,
    functional,
    nn,
    optim,
)
from tinymbm.autograd import enable_grad, is_grad_enabled, no_grad
from tinymbm.random import manual_seed
from tinymbm.serialization import load, save
from tinymbm.tensor import (
    Tensor,
    arange,
    bool_,
    cat,
    float32,
    float64,
    full,
    int64,
    ones,
    ones_like,
    rand,
    randn,
    stack,
    tensor,
    zeros,
    zeros_like,
)

__version__ = "0.1.0"

__all__ = [
    "Tensor",
    "arange",
    "autograd",
    "bool_",
    "cat",
    "enable_grad",
    "float32",
    "float64",
    "full",
    "functional",
    "int64",
    "is_grad_enabled",
    "load",
    "manual_seed",
    "nn",
    "no_grad",
    "ones",
    "ones_like",
    "optim",
    "rand",
    "randn",
    "save",
    "stack",
    "tensor",
    "zeros",
    "zeros_like",
]
