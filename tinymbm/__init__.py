"""tinymbm: a from-scratch deep-learning engine for teaching.

A small reverse-mode autograd core over NumPy, Numba kernels for the hot
loops, and the CNN, LSTM and summed-fusion (MBM) models, with PyTorch's names
and layouts::

    import tinymbm as tm
    from tinymbm import nn, optim
    import tinymbm.functional as F
"""

# _environment comes first: it sets thread defaults that Numba and NumPy read when they load.
from tinymbm import (
    _environment,  # noqa: F401
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
