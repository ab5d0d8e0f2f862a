"""Choosing and validating the configured strategy.

``strategy.name`` is a built-in name (``smc``, ``ema_cross``) or a dotted path
``package.module:Factory`` to a user strategy. The factory (usually a class) is called as
``Factory(params=<strategy.params>, bias_timeframes=<universe.bias_timeframes>,
entry_timeframes=<universe.entry_timeframes>)`` and the result is checked against the
:class:`~domain.strategy.base.Strategy` interface before anything trades, so a broken plug-in
fails at start with a :class:`StrategyLoadError` naming what is wrong.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from domain.strategy.base import TIMEFRAME_MS, Strategy, StrategyError, StrategyLoadError

BUILT_IN: dict[str, str] = {
    "smc": "domain.strategy.smc:SmcStrategy",
    "ema_cross": "domain.strategy.ema_cross:EmaCrossStrategy",
}


def _resolve(target: str) -> Any:
    module_name, _, attr_path = target.partition(":")
    if not module_name or not attr_path:
        raise StrategyLoadError(
            f"unknown strategy {target!r}; use one of {sorted(BUILT_IN)} or 'package.module:Class'"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise StrategyLoadError(f"{target}: cannot import {module_name!r}: {exc}") from None
    for attr in attr_path.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise StrategyLoadError(f"{target}: {module_name!r} has no {attr_path!r}") from None
    return obj


def validate_strategy(obj: Any, origin: str = "strategy") -> Strategy:
    """``obj`` if it implements the Strategy interface; otherwise a StrategyLoadError."""
    problems: list[str] = []
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        problems.append("'name' must be a non-empty string")
    timeframes = getattr(obj, "timeframes", None)
    if not isinstance(timeframes, tuple) or not timeframes:
        problems.append("'timeframes' must be a non-empty tuple of timeframe names")
    else:
        unknown = [tf for tf in timeframes if tf not in TIMEFRAME_MS]
        if unknown:
            problems.append(f"'timeframes' has unknown timeframes {unknown}")
    analyze = getattr(obj, "analyze", None)
    if not callable(analyze):
        problems.append("'analyze' must be a method analyze(data, instrument)")
    else:
        try:
            inspect.signature(analyze).bind({}, None)
        except TypeError:
            problems.append("'analyze' must accept (data, instrument)")
        except ValueError:
            pass  # no introspectable signature (a builtin); trust it
    if problems:
        raise StrategyLoadError(
            f"{origin} does not implement the Strategy interface: {'; '.join(problems)}"
        )
    return obj  # type: ignore[no-any-return]


def load_strategy(
    name: str,
    params: Mapping[str, Any] | None = None,
    bias_timeframes: Sequence[str] = ("4h",),
    entry_timeframes: Sequence[str] = ("15m",),
) -> Strategy:
    """Build and validate the strategy ``name`` (built-in or ``package.module:Factory``)."""
    target = BUILT_IN.get(name, name)
    factory = _resolve(target)
    if not callable(factory):
        raise StrategyLoadError(f"{target} is not callable")
    try:
        strategy = factory(
            params=dict(params or {}),
            bias_timeframes=tuple(bias_timeframes),
            entry_timeframes=tuple(entry_timeframes),
        )
    except StrategyError:
        raise
    except TypeError as exc:
        raise StrategyLoadError(
            f"{target} cannot be built as Factory(params=..., bias_timeframes=..., "
            f"entry_timeframes=...): {exc}"
        ) from None
    return validate_strategy(strategy, target)
