"""Named component registries: the encoder picks embeddings, attention and feed-forward by string.

Adding a variant is one class, one `@REGISTRY.register("name")` line, and its tests; the encoder
does not change. A component class is built as `cls(config)` and may override the classmethod
`validate_config(config)` to check its own parameters. `own_fields` names the config fields that only
that component reads, so that a config's other components' fields are known to have no effect on the
model (`fields_without_effect`; `leanbert search` uses it to find two names for one model).
"""

from __future__ import annotations

import importlib
from typing import Callable, TypeVar

T = TypeVar("T", bound=type)


class Registry:
    """A mapping from selector value to component class, for one config field."""

    def __init__(self, field: str):
        self.field = field
        self._classes: dict[str, type] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(cls: T) -> T:
            if name in self._classes and self._classes[name] is not cls:
                raise ValueError(f"{self.field} {name!r} is registered twice")
            self._classes[name] = cls
            return cls

        return add

    def names(self) -> list[str]:
        _import_components()
        return sorted(self._classes)

    def __contains__(self, name: object) -> bool:
        _import_components()
        return name in self._classes

    def get(self, name: str) -> type:
        _import_components()
        if name not in self._classes:
            raise ValueError(f"unknown {self.field} {name!r}; allowed: {sorted(self._classes)}")
        return self._classes[name]


EMBEDDINGS = Registry("embedding_type")
ATTENTION = Registry("attention_type")
FFN = Registry("ffn_type")
REGISTRIES = {"embedding_type": EMBEDDINGS, "attention_type": ATTENTION, "ffn_type": FFN}

# The modules whose import registers components. A new variant adds its module here.
COMPONENT_MODULES = (
    "leanbert.modeling.embeddings",
    "leanbert.modeling.attention.full",
    "leanbert.modeling.attention.mega",
    "leanbert.modeling.attention.sparse",
    "leanbert.modeling.ffn.dense",
    "leanbert.modeling.ffn.fff_component",
)


def fields_without_effect(config) -> set[str]:
    """The config fields owned (`own_fields`) by components this config does not select."""
    _import_components()
    unused, used = set(), set()
    for field, registry in REGISTRIES.items():
        for name, cls in registry._classes.items():
            (used if name == getattr(config, field) else unused).update(getattr(cls, "own_fields", ()))
    return unused - used


def _import_components() -> None:
    for module in COMPONENT_MODULES:
        importlib.import_module(module)
