"""Optimizers: SGD with momentum and Adam, with PyTorch's update rules and state layout.

An optimizer holds references to tensors that require grad (the parameters p) and,
after ``loss.backward()`` has filled each ``p.grad``, ``step()`` updates ``p.data`` in
place. Gradients accumulate across ``backward()`` calls, so a training loop calls
``zero_grad()`` once per batch, before the backward pass.

Parameters can be split into groups with their own hyper-parameters, as in PyTorch::

    optim.SGD([{"params": model.fc.parameters(), "lr": 0.1},
               {"params": model.conv.parameters()}], lr=0.01, momentum=0.9)

``state_dict()`` returns the per-parameter state (momentum buffers, Adam moments and
step counts) as NumPy arrays and numbers, keyed by each parameter's position across
all groups, plus the groups' hyper-parameters. ``tinymbm.save`` can store it, and
``load_state_dict`` restores it into an optimizer built over the same parameters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from tinymbm.errors import DTypeError, ShapeError
from tinymbm.kernels.optim import adam_update
from tinymbm.tensor import Tensor

__all__ = ["SGD", "Adam", "Optimizer"]


def _check_number(owner: str, name: str, value: Any, low: float,
                  high: float = math.inf) -> float:
    """Return ``value`` as a float if it is finite and low <= value < high, else raise.

    Raises TypeError for a value that is not a real number (a bool counts as not a
    number) and ValueError for NaN, an infinity, or a value out of range.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r}")

    value = float(value)
    if not (math.isfinite(value) and low <= value < high):
        raise ValueError(
            f"{owner}: invalid {name} {value!r}, expected a finite value in [{low}, {high})"
        )
    return value


class Optimizer:
    """Base class: parameter groups, per-parameter state, ``zero_grad`` and state dicts.

    A subclass sets its hyper-parameter defaults, validates them in
    ``_check_group``, and implements ``step``.

    Attributes:
        param_groups: list of dicts, each with a ``"params"`` list of tensors and the
            group's hyper-parameters.
        params: every parameter of every group, in order. A parameter's index in
            this list is its key in ``state`` and in ``state_dict()["state"]``.
        state: dict from parameter index to that parameter's state dict.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], defaults: dict[str, Any]):
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.params: list[Tensor] = []
        self.state: dict[int, dict[str, Any]] = {}
        self._param_ids: set[int] = set()

        if isinstance(params, Tensor):
            raise TypeError(
                f"{self._name}: params must be an iterable of tensors or of dicts, "
                "got a single Tensor. Wrap it in a list"
            )
        groups = list(params)
        if not groups:
            raise ValueError(f"{self._name}: got an empty parameter list")

        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    @property
    def _name(self) -> str:
        return type(self).__name__

    def add_param_group(self, group: dict[str, Any]) -> None:
        """Add a group of parameters, filling missing hyper-parameters from the defaults.

        Raises:
            TypeError: an entry is not a Tensor, ``group`` is not a dict, or a
                hyper-parameter is not a real number.
            ValueError: a tensor does not require grad, is not a leaf, appears twice,
                or a hyper-parameter is out of range. The optimizer is unchanged.
        """
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(
                f"{self._name}: a parameter group must be a dict with a 'params' entry, "
                f"got {group!r}"
            )

        group_params = group["params"]
        group_params = [group_params] if isinstance(group_params, Tensor) else list(group_params)
        for index, param in enumerate(group_params):
            if not isinstance(param, Tensor):
                raise TypeError(
                    f"{self._name}: parameter {index} of group {len(self.param_groups)} is "
                    f"a {type(param).__name__}, expected a Tensor"
                )
            if not param.requires_grad:
                raise ValueError(
                    f"{self._name}: parameter {index} of group {len(self.param_groups)} "
                    f"(shape {tuple(param.shape)}) does not require grad, so it can never "
                    "be updated. Create it with requires_grad=True or leave it out"
                )
            if param.grad_fn is not None:
                raise ValueError(
                    f"{self._name}: parameter {index} of group {len(self.param_groups)} "
                    f"(shape {tuple(param.shape)}) is the result of an op, not a leaf "
                    "tensor, and an optimizer can only update leaf tensors"
                )
            if id(param) in self._param_ids or any(p is param for p in group_params[:index]):
                raise ValueError(
                    f"{self._name}: parameter {index} of group {len(self.param_groups)} "
                    f"(shape {tuple(param.shape)}) appears more than once"
                )

        new_group = {**self.defaults, **group, "params": group_params}
        self._check_group(new_group)

        self.param_groups.append(new_group)
        self.params.extend(group_params)
        self._param_ids.update(id(param) for param in group_params)

    def _check_group(self, group: dict[str, Any]) -> None:
        """Validate a group's hyper-parameters, converting them to floats in place."""

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradient of every parameter.

        With ``set_to_none=True`` (PyTorch 2.x's default) each ``p.grad`` becomes None,
        so ``step`` skips parameters that the next backward pass does not reach.
        Otherwise existing gradients are filled with zeros.
        """
        for param in self.params:
            if set_to_none:
                param.grad = None
            elif param.grad is not None:
                param.grad[...] = 0

    def step(self) -> None:
        """Update every parameter that has a gradient."""
        raise NotImplementedError(f"{self._name} does not implement step()")

    def _gradient(self, param: Tensor) -> np.ndarray | None:
        """Return ``param.grad`` in the parameter's dtype, or None if it has no gradient.

        Raises ShapeError if the gradient's shape differs from the parameter's, and
        DTypeError unless the parameter is float32 or float64.
        """
        grad = param.grad
        if grad is None:
            return None

        if param.data.dtype not in (np.float32, np.float64):
            raise DTypeError(
                f"{self._name}: parameter {self._index(param)} has dtype "
                f"{param.data.dtype}, expected float32 or float64"
            )
        grad = np.asarray(grad)
        if grad.shape != param.data.shape:
            raise ShapeError(
                f"{self._name}: parameter {self._index(param)} has shape "
                f"{param.data.shape} but its gradient has shape {grad.shape}"
            )
        return grad.astype(param.data.dtype, copy=False)

    def _indexed_params(self) -> Iterator[tuple[int, dict[str, Any], Tensor]]:
        """Yield (index in ``self.params``, its group, parameter) for every parameter."""
        index = 0
        for group in self.param_groups:
            for param in group["params"]:
                yield index, group, param
                index += 1

    def _index(self, param: Tensor) -> int:
        return next(i for i, known in enumerate(self.params) if known is param)

    # ------------------------------------------------------------ state dicts

    def state_dict(self) -> dict[str, Any]:
        """Return a copy of the optimizer's state as NumPy arrays and numbers.

        Layout (PyTorch's): ``{"state": {index: {name: value}}, "param_groups":
        [{hyper-parameter: value, ..., "params": [index, ...]}]}``. Arrays are
        copies, so later steps do not change a returned state dict.
        """
        state = {
            index: {
                name: value.copy() if isinstance(value, np.ndarray) else value
                for name, value in param_state.items()
            }
            for index, param_state in self.state.items()
        }

        param_groups = []
        position = 0
        for group in self.param_groups:
            saved = {key: value for key, value in group.items() if key != "params"}
            saved["params"] = list(range(position, position + len(group["params"])))
            position += len(group["params"])
            param_groups.append(saved)

        return {"state": state, "param_groups": param_groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyper-parameters and per-parameter state from ``state_dict``.

        The optimizer must have been built over the same parameters, in the same
        order, as the one that produced ``state_dict``. State arrays are copied and
        cast to each parameter's dtype.

        Raises:
            ValueError: the number of groups, the group sizes, the parameter indices,
                or a state array's shape differ from this optimizer's.
        """
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            keys = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict)
            raise ValueError(
                f"{self._name}.load_state_dict: expected a dict with the keys 'state' and "
                f"'param_groups', got {keys}"
            )

        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{self._name}.load_state_dict: the state dict has {len(saved_groups)} "
                f"parameter groups, this optimizer has {len(self.param_groups)}"
            )
        for group_index, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"{self._name}.load_state_dict: group {group_index} has "
                    f"{len(saved['params'])} parameters in the state dict and "
                    f"{len(group['params'])} in this optimizer"
                )

        new_state: dict[int, dict[str, Any]] = {}
        for key, saved_state in state_dict["state"].items():
            index = int(key)
            if not 0 <= index < len(self.params):
                raise ValueError(
                    f"{self._name}.load_state_dict: state for parameter {index}, but this "
                    f"optimizer has only {len(self.params)} parameters"
                )
            param = self.params[index]

            restored = {}
            for name, value in saved_state.items():
                if isinstance(value, np.ndarray):
                    if value.shape != param.data.shape:
                        raise ValueError(
                            f"{self._name}.load_state_dict: {name!r} of parameter {index} "
                            f"has shape {value.shape}, but the parameter has shape "
                            f"{param.data.shape}"
                        )
                    value = np.array(value, dtype=param.data.dtype, order="C", copy=True)
                restored[name] = value
            new_state[index] = restored

        # Check every group before changing any, so a failed load leaves the
        # optimizer as it was.
        new_groups = []
        for group, saved in zip(self.param_groups, saved_groups):
            new_group = {**group, **{k: v for k, v in saved.items() if k != "params"}}
            new_group["params"] = group["params"]
            self._check_group(new_group)
            new_groups.append(new_group)

        self.param_groups = new_groups
        self.state = new_state

    def __repr__(self) -> str:
        lines = [f"{self._name} ("]
        for index, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {index}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and L2 weight decay.

    For each parameter p with gradient grad, PyTorch's rule (dampening 0, no Nesterov)::

        g   = grad + weight_decay * p
        buf = g                          on the first step with momentum
        buf = momentum * buf + g         on later steps
        p   = p - lr * buf               (p - lr * g when momentum == 0)

    Args:
        params: tensors that require grad, or a list of parameter-group dicts.
        lr: learning rate, >= 0.
        momentum: momentum factor, >= 0.
        weight_decay: L2 penalty factor, >= 0.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float,
                 momentum: float = 0.0, weight_decay: float = 0.0):
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        group["lr"] = _check_number("SGD", "lr", group["lr"], 0.0)
        group["momentum"] = _check_number("SGD", "momentum", group["momentum"], 0.0)
        group["weight_decay"] = _check_number("SGD", "weight_decay", group["weight_decay"], 0.0)

    def step(self) -> None:
        """Update each parameter that has a gradient in place, skipping those without one."""
        for param_index, group, param in self._indexed_params():
            lr = group["lr"]
            momentum = group["momentum"]
            weight_decay = group["weight_decay"]
            grad = self._gradient(param)
            if grad is None:
                continue

            if weight_decay != 0.0:
                grad = grad + weight_decay * param.data

            if momentum != 0.0:
                state = self.state.setdefault(param_index, {})
                buffer = state.get("momentum_buffer")
                if buffer is None:
                    buffer = np.array(grad, order="C", copy=True)
                    state["momentum_buffer"] = buffer
                else:
                    buffer *= momentum
                    buffer += grad
                grad = buffer

            if not param.data.flags.writeable:
                param.data = param.data.copy()
            param.data -= lr * grad


class Adam(Optimizer):
    """Adam with PyTorch's update rule and L2 weight decay added to the gradient.

    For each parameter p with gradient grad, at step t (t = 1 on the first step)::

        g   = grad + weight_decay * p
        m   = beta1 * m + (1 - beta1) * g            (m starts at 0)
        v   = beta2 * v + (1 - beta2) * g * g        (v starts at 0)
        den = sqrt(v) / sqrt(1 - beta2 ** t) + eps
        p   = p - lr / (1 - beta1 ** t) * m / den

    Each parameter's update runs as one fused Numba pass over its elements
    (``tinymbm.kernels.optim.adam_update``). m and v are kept in the parameter's
    dtype, so float32 parameters keep float32 state.

    Args:
        params: tensors that require grad, or a list of parameter-group dicts.
        lr: learning rate, >= 0.
        betas: (beta1, beta2), each in [0, 1).
        eps: term added to the denominator for numerical stability, >= 0.
        weight_decay: L2 penalty factor, >= 0.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        group["lr"] = _check_number("Adam", "lr", group["lr"], 0.0)
        group["eps"] = _check_number("Adam", "eps", group["eps"], 0.0)
        group["weight_decay"] = _check_number("Adam", "weight_decay", group["weight_decay"], 0.0)

        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"Adam: betas must be a pair (beta1, beta2), got {betas!r}")
        group["betas"] = (
            _check_number("Adam", "beta1", betas[0], 0.0, 1.0),
            _check_number("Adam", "beta2", betas[1], 0.0, 1.0),
        )

    def step(self) -> None:
        """Update each parameter that has a gradient in place, skipping those without one."""
        for param_index, group, param in self._indexed_params():
            beta1, beta2 = group["betas"]
            grad = self._gradient(param)
            if grad is None:
                continue

            state = self.state.setdefault(param_index, {})
            if not state:
                state["step"] = 0
                state["exp_avg"] = np.zeros(param.data.shape, dtype=param.data.dtype)
                state["exp_avg_sq"] = np.zeros(param.data.shape, dtype=param.data.dtype)
            state["step"] += 1

            # The kernel updates flat 1-D views in place. reshape(-1) returns a view
            # only of a C-contiguous array, so a parameter stored otherwise is made
            # contiguous first.
            if not param.data.flags.c_contiguous or not param.data.flags.writeable:
                param.data = np.array(param.data, order="C", copy=True)
            if not grad.flags.c_contiguous or not grad.flags.writeable:
                # A read-only array would also make Numba compile a second version.
                grad = np.array(grad, order="C", copy=True)

            adam_update(
                param.data.reshape(-1),
                grad.reshape(-1),
                state["exp_avg"].reshape(-1),
                state["exp_avg_sq"].reshape(-1),
                state["step"],
                group["lr"],
                beta1,
                beta2,
                group["eps"],
                group["weight_decay"],
            )
