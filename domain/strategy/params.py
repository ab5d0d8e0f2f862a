"""Building frozen parameter dataclasses from a config mapping (``strategy.params``).

Unknown keys are refused (a misspelt parameter must not be silently ignored); values are
converted to the field's declared type (``int``, ``float``, ``bool``, ``str``) and the dataclass's
own ``__post_init__`` checks ranges. Errors are :class:`StrategyConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from domain.strategy.base import StrategyConfigError

T = TypeVar("T")

_CONVERTERS: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}


def _convert(name: str, type_name: str, value: Any) -> Any:
    kind = _CONVERTERS.get(type_name)
    if kind is None:
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise StrategyConfigError(f"parameter {name!r} must be true or false, got {value!r}")
        return value
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise StrategyConfigError(f"parameter {name!r} must be an integer, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise StrategyConfigError(f"parameter {name!r} must be a {type_name}, got {value!r}")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise StrategyConfigError(
            f"parameter {name!r} must be a {type_name}, got {value!r}"
        ) from None


def params_from_mapping(cls: type[T], values: Mapping[str, Any], what: str) -> T:
    """An instance of dataclass ``cls`` from ``values``; defaults fill the missing keys."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise StrategyConfigError(f"{what}: unknown parameters {unknown}; known: {sorted(fields)}")
    kwargs = {k: _convert(k, str(fields[k].type), v) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise StrategyConfigError(f"{what}: {exc}") from None
