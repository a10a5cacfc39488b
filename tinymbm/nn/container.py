"""Containers that hold other modules."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

from tinymbm.nn.module import Module


class Sequential(Module):
    """Run modules one after another: ``Sequential(a, b)(x) == b(a(x))``.

    Children are named "0", "1", ... (or by the keys of an OrderedDict), so the
    state dict names match PyTorch's (``0.weight``).
    """

    def __init__(self, *modules: Any) -> None:
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, module in modules[0].items():
                self.add_module(name, _checked(module, name))
        else:
            for index, module in enumerate(modules):
                self.add_module(str(index), _checked(module, str(index)))

    def forward(self, x: Any) -> Any:
        for module in self._modules.values():
            x = module(x)
        return x

    def __getitem__(self, index: int | slice) -> Any:
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*modules[index])
        return modules[index]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> Sequential:
        self.add_module(str(len(self)), _checked(module, str(len(self))))
        return self


class ModuleList(Module):
    """A list of modules whose parameters are registered (named "0", "1", ...)."""

    def __init__(self, modules: Iterable[Module] = ()) -> None:
        super().__init__()
        for module in modules:
            self.append(module)

    def append(self, module: Module) -> ModuleList:
        self.add_module(str(len(self)), _checked(module, str(len(self))))
        return self

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())


def _checked(module: Any, name: str) -> Module:
    if not isinstance(module, Module):
        raise TypeError(f"entry {name} is a {type(module).__name__}, not a Module")
    return module
