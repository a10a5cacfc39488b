"""The fused Adam update: one pass over each parameter updates m, v and p in place.

Legend, for one parameter flattened to n elements at step t (t = 1 on the first step):

    p   parameter        (n,)   updated in place
    g   its gradient     (n,)   read only
    m   first moment     (n,)   ``exp_avg``, updated in place
    v   second moment    (n,)   ``exp_avg_sq``, updated in place

The formula, element by element (PyTorch's Adam with L2 weight decay):

    g    = grad + weight_decay * p
    m    = beta1 * m + (1 - beta1) * g
    v    = beta2 * v + (1 - beta2) * g * g
    bc1  = 1 - beta1 ** t
    bc2  = 1 - beta2 ** t
    den  = sqrt(v) / sqrt(bc2) + eps
    p    = p - (lr / bc1) * m / den

Written as NumPy array expressions, those lines make eight or more passes over the full
arrays, and most of them allocate a temporary array. The Numba kernel reads each element
of p, g, m and v once and writes p, m and v back in the same pass.

Both versions below compute each element in float64 and store m, v and p in the arrays'
own dtype. The update of p uses m and v as stored, so a float32 run rounds m and v to
float32 before using them, as PyTorch does. Under those rules the two versions give
bitwise-equal results, which the tests check.
"""

import math

import numpy as np
from numba import njit, prange

from tinymbm.kernels.shares import one_parallel_kernel_at_a_time


def adam_update_reference(
    param: np.ndarray,
    grad: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> None:
    """Apply one Adam step to ``param``, ``exp_avg`` and ``exp_avg_sq`` in place.

    A plain loop written as literally as the formula in the module docstring. All four
    arrays are 1-D with the same length n, and ``step`` is t, counted from 1.
    """
    # BEGIN EXERCISE adam_step: implement the module docstring's formula, one element at a time, in float64
    t = float(step)
    bias_correction1 = 1.0 - beta1**t
    bias_correction2 = 1.0 - beta2**t

    for i in range(param.shape[0]):
        g = float(grad[i]) + weight_decay * float(param[i])

        exp_avg[i] = beta1 * float(exp_avg[i]) + (1.0 - beta1) * g
        exp_avg_sq[i] = beta2 * float(exp_avg_sq[i]) + (1.0 - beta2) * g * g

        denom = math.sqrt(float(exp_avg_sq[i])) / math.sqrt(bias_correction2) + eps
        param[i] = float(param[i]) - (lr / bias_correction1) * float(exp_avg[i]) / denom
    # END EXERCISE adam_step


@one_parallel_kernel_at_a_time
@njit(cache=True, parallel=True)
def adam_update(
    param: np.ndarray,
    grad: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> None:
    """Apply one Adam step in place, compiled: the same arguments and result as
    :func:`adam_update_reference`.

    Parallel over elements: each element's update reads and writes only index i, so no
    two threads write the same element and the result does not depend on the thread count.
    """
    # A float exponent makes Numba call the C library's pow, as Python does. An integer
    # exponent would take a repeated-multiplication path that can differ in the last bit.
    t = float(step)
    bias_correction1 = 1.0 - beta1**t
    bias_correction2_sqrt = math.sqrt(1.0 - beta2**t)
    step_size = lr / bias_correction1

    for i in prange(param.shape[0]):
        p = np.float64(param[i])
        g = np.float64(grad[i]) + weight_decay * p

        exp_avg[i] = beta1 * np.float64(exp_avg[i]) + (1.0 - beta1) * g
        exp_avg_sq[i] = beta2 * np.float64(exp_avg_sq[i]) + (1.0 - beta2) * g * g

        denom = math.sqrt(np.float64(exp_avg_sq[i])) / bias_correction2_sqrt + eps
        param[i] = p - step_size * np.float64(exp_avg[i]) / denom
