"""The grader's own versions of two exercises, swapped in while other exercises are graded.

``topological_sort`` and ``cross_entropy_backward`` sit on code paths that
every other exercise's checks use (each ``backward()`` orders the graph, and
training runs use cross-entropy). :func:`tinymbm.classroom.checks.isolated`
puts these versions in their place, so a blank or a bug there costs points
only in its own exercise.

Student copies leave this file out, because it contains working solutions.
It imports only NumPy, so it runs against any copy of the engine.
"""

from typing import Any

import numpy as np


def topological_order(root: Any) -> list:
    """Order the graph from ``root`` with Kahn's algorithm: a node comes after all its consumers.

    The first pass counts, for every reachable node, the edges from its
    consumers. The second emits the root and then each node whose count
    drops to zero.
    """
    nodes: dict[int, Any] = {id(root): root}
    consumers: dict[int, int] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        for tensor in node.inputs:
            producer = None if tensor is None else tensor.grad_fn
            if producer is None:
                continue
            consumers[id(producer)] = consumers.get(id(producer), 0) + 1
            if id(producer) not in nodes:
                nodes[id(producer)] = producer
                stack.append(producer)

    order = []
    ready = [root]
    while ready:
        node = ready.pop()
        order.append(node)
        for tensor in node.inputs:
            producer = None if tensor is None else tensor.grad_fn
            if producer is None:
                continue
            consumers[id(producer)] -= 1
            if consumers[id(producer)] == 0:
                ready.append(producer)
    return order


def cross_entropy_backward(ctx: Any, g: np.ndarray) -> tuple:
    """Compute dx[n, c] = (softmax(x_n)_c - [c == t_n]) · dL/dloss_n from what CrossEntropy.forward saved.

    ``ctx.saved_tensors`` is (log_probs (N, C), target (N,)) and
    ``ctx.reduction`` is "mean", "sum" or "none".
    """
    log_probs, target = ctx.saved_tensors
    batch = log_probs.shape[0]
    one_hot = np.zeros_like(log_probs)
    one_hot[np.arange(batch), target] = 1

    if ctx.reduction == "mean":
        per_sample = np.full(batch, g / batch)
    elif ctx.reduction == "sum":
        per_sample = np.full(batch, g)
    else:
        per_sample = np.asarray(g)
    return (np.exp(log_probs) - one_hot) * per_sample.astype(log_probs.dtype)[:, None], None, None
