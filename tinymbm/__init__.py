"""tinymbm: a from-scratch deep-learning engine for teaching.

A small reverse-mode autograd core over NumPy, Numba kernels for the hot
loops, and the CNN, LSTM and summed-fusion (MBM) models, with PyTorch's names
and layouts::

    import tinymbm as tm
    from tinymbm import nn, optim
    import tinymbm.functional as F
"""

from tinymbm import autograd, functional
from tinymbm.autograd import enable_grad, is_grad_enabled, no_grad
from tinymbm.random import manual_seed
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
from tinymbm import nn  # noqa: E402  (nn builds on the names above)
from tinymbm import optim  # noqa: E402
from tinymbm.serialization import load, save  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Tensor", "tensor", "zeros", "ones", "full", "arange", "zeros_like", "ones_like", "randn", "rand",
    "stack", "cat", "manual_seed", "no_grad", "enable_grad", "is_grad_enabled", "autograd", "functional",
    "nn", "optim", "save", "load", "float32", "float64", "int64", "bool_",
]
