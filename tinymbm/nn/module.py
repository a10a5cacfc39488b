"""``Module`` and ``Parameter``: layers that own tensors, as in PyTorch.

Assigning a :class:`Parameter` or a :class:`Module` to an attribute of a
module registers it, so ``parameters()``, ``state_dict()`` and ``zero_grad()``
find every weight of a model, however deeply nested, under PyTorch's dotted
names (``features.0.weight``). That naming is what lets a PyTorch state dict,
converted to NumPy arrays, load into the same tinymbm model.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np

from tinymbm.autograd import is_grad_enabled
from tinymbm.nn.hooks import BackwardHookTracker
from tinymbm.tensor import RemovableHandle, Tensor


class Parameter(Tensor):
    """A tensor that a Module registers as one of its weights (requires grad by default)."""

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of every layer and model.

    Subclasses set their parameters and sub-modules as attributes in
    ``__init__`` and define ``forward``; calling the module runs ``forward``
    (with any registered hooks).
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_forward_hooks", [])
        object.__setattr__(self, "_backward_hooks", [])
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------ registration

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"cannot assign {name!r} before Module.__init__() is called; "
                f"call super().__init__() first in {type(self).__name__}.__init__"
            )
        for registry in (self._parameters, self._modules, self._buffers):
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails, i.e. for registered entries.
        for registry in ("_parameters", "_modules", "_buffers"):
            entries = self.__dict__.get(registry)
            if entries is not None and name in entries:
                return entries[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        for registry in (self._parameters, self._modules, self._buffers):
            if name in registry:
                del registry[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        if param is None:
            self._parameters.pop(name, None)
            object.__setattr__(self, name, None)
            return
        setattr(self, name, param)

    def register_buffer(self, name: str, value: Any) -> None:
        """Register a non-trainable array that belongs in the state dict."""
        self._buffers[name] = value if isinstance(value, Tensor) else Tensor(value)

    def add_module(self, name: str, module: Module | None) -> None:
        self._modules[name] = module

    # --------------------------------------------------------- traversal

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        seen: set[int] = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, param in module._parameters.items():
                if param is None or id(param) in seen:
                    continue
                seen.add(id(param))
                yield (f"{module_prefix}.{name}" if module_prefix else name), param

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        for module_prefix, module in self.named_modules(prefix):
            for name, buffer in module._buffers.items():
                yield (f"{module_prefix}.{name}" if module_prefix else name), buffer

    def named_children(self) -> Iterator[tuple[str, Module]]:
        for name, module in self._modules.items():
            if module is not None:
                yield name, module

    def children(self) -> Iterator[Module]:
        for _, module in self.named_children():
            yield module

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """Yield (dotted name, module) for this module and every descendant, depth first."""
        seen: set[int] = set()
        stack: list[tuple[str, Module]] = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{child_name}" if name else child_name, child)
                        for child_name, child in module.named_children()]
            stack.extend(reversed(children))

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    # ------------------------------------------------------------- modes

    def train(self, mode: bool = True) -> Module:
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of every parameter (to None, as PyTorch 2 does by default)."""
        for param in self.parameters():
            if set_to_none or param.grad is None:
                param.grad = None
            else:
                param.grad = np.zeros_like(param.data)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for param in self.parameters():
            param.requires_grad = requires_grad
        return self

    # ------------------------------------------------------------- dtype

    def to(self, dtype: Any) -> Module:
        """Convert every floating parameter and buffer to ``dtype`` in place.

        ``to("cpu")`` is accepted and changes nothing, so PyTorch code that moves a
        model to a device runs unchanged; tinymbm computes on the CPU only.
        """
        if isinstance(dtype, str) and dtype.split(":")[0] in ("cpu", "cuda", "mps"):
            if dtype.startswith("cpu"):
                return self
            raise ValueError(f"Module.to: tinymbm runs on the CPU only, so device {dtype!r} is not available")
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"Module.to: expected a floating dtype, got {dtype}")
        for param in self.parameters():
            param.data = param.data.astype(dtype)
            if param.grad is not None:
                param.grad = param.grad.astype(dtype)
        for _, buffer in self.named_buffers():
            if buffer.dtype.kind == "f":
                buffer.data = buffer.data.astype(dtype)
        return self

    def float(self) -> Module:
        return self.to(np.float32)

    def double(self) -> Module:
        return self.to(np.float64)

    # ------------------------------------------------------------ saving

    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Return a copy of every parameter and buffer as NumPy arrays, under PyTorch's names."""
        state: OrderedDict[str, np.ndarray] = OrderedDict()
        for name, param in self.named_parameters():
            state[name] = param.data.copy()
        for name, buffer in self.named_buffers():
            state[name] = buffer.data.copy()
        return state

    def load_state_dict(self, state_dict: Any, strict: bool = True) -> tuple[list, list]:
        """Copy arrays into the parameters and buffers of the same names.

        Values are cast to each parameter's dtype. With ``strict=True`` a
        missing or unexpected key raises; a shape mismatch always raises,
        naming the key and both shapes. Returns ``(missing_keys, unexpected_keys)``.
        """
        targets = dict(self.named_parameters())
        targets.update(self.named_buffers())
        incoming = {name: np.asarray(value.data if isinstance(value, Tensor) else value)
                    for name, value in state_dict.items()}

        missing = [name for name in targets if name not in incoming]
        unexpected = [name for name in incoming if name not in targets]
        mismatched = [
            f"{name}: checkpoint has shape {incoming[name].shape}, model has {targets[name].shape}"
            for name in targets if name in incoming and incoming[name].shape != targets[name].shape
        ]
        problems = []
        if mismatched:
            problems.append("size mismatch for " + "; ".join(mismatched))
        if strict and missing:
            problems.append(f"missing keys: {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {unexpected}")
        if problems:
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}: " + ". ".join(problems)
            )

        for name, tensor in targets.items():
            if name in incoming:
                tensor.data = incoming[name].astype(tensor.dtype, copy=True)
        return missing, unexpected

    # --------------------------------------------------------- calling

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        tracker = None
        if self._backward_hooks and is_grad_enabled():
            tracker = BackwardHookTracker(self)
            args = tracker.wrap_inputs(args)

        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks):
            result = hook(self, args, output)
            if result is not None:
                output = result

        if tracker is not None:
            output = tracker.wrap_output(output)
        return output

    def register_forward_hook(self, hook: Any) -> RemovableHandle:
        """Call ``hook(module, inputs, output)`` after every forward; it may return a new output."""
        self._forward_hooks.append(hook)
        return RemovableHandle(self._forward_hooks, hook)

    def register_full_backward_hook(self, hook: Any) -> RemovableHandle:
        """Call ``hook(module, grad_input, grad_output)`` when the gradients of this module's
        inputs are computed. ``grad_input`` and ``grad_output`` are tuples of Tensors (or None)."""
        self._backward_hooks.append(hook)
        return RemovableHandle(self._backward_hooks, hook)

    # ---------------------------------------------------------------- repr

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"({name}): " + repr(module).replace("\n", "\n  ") for name, module in self.named_children()]
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        body = "\n  ".join(([extra] if extra else []) + lines)
        return f"{type(self).__name__}(\n  {body}\n)"
