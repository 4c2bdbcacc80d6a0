"""Whether a value read from YAML can fill a dataclass field of a given type, and how to name that type.

    fits(1, float) -> True      fits("abc", int | None) -> False      describe(int | None) -> "int or None"

YAML gives None, bool, int, float, str, list and dict; recipes check each value of their `data:`,
`distill:` and `training:` sections against the annotations of DataSection, DistillSection and
`transformers.TrainingArguments` with these two functions. Cost: O(size of the value).
"""

from __future__ import annotations

import enum
import types
import typing
from typing import Any


def fits(value: Any, annotation: Any) -> bool:
    """Whether a YAML value can fill a field of this type.

    YAML gives None, bool, int, float, str, list and dict, so this covers the annotations the sections and
    `TrainingArguments` use: unions, Literal, list[X], dict[K, V], enums (which take their string values)
    and the scalars, where an int is accepted for a float ("learning_rate: 1").
    """
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return True
    if annotation is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, option) for option in args)
    if origin is typing.Literal:
        return any(type(value) is type(choice) and value == choice for choice in args)
    if origin is list:
        return isinstance(value, list) and all(fits(item, args[0]) for item in value)
    if origin is dict:
        return isinstance(value, dict) and all(fits(k, args[0]) and fits(v, args[1]) for k, v in value.items())
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is None and isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return isinstance(value, annotation) or any(value == member.value for member in annotation)
    return origin is None and isinstance(annotation, type) and isinstance(value, annotation)


def describe(annotation: Any) -> str:
    """A field type as an error message shows it: `int or None`, `one of ['linear', ...] or str`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "None"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(option) for option in args)
    if origin is typing.Literal:
        return " or ".join(repr(choice) for choice in args)
    if origin is None and isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return f"one of {[member.value for member in annotation]}"
        return annotation.__name__
    return str(annotation)  # list[str], dict[str, typing.Any]
