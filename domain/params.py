"""Building frozen parameter objects from configuration mappings."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def params_from_mapping(
    cls: type[T], values: Mapping[str, Any], error: type[Exception], what: str
) -> T:
    """``cls(**values)``, refusing keys ``cls`` does not have (a typo must never pass silently)."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise error(f"unknown {what} parameters {unknown}")
    return cls(**values)
