"""Strategies: from closed bars per timeframe to at most one signal per symbol.

Public entry points: :class:`Strategy` (the interface), :class:`Bars` (the data it reads),
:func:`load_strategy` (built-in name or ``package.module:Class`` from the config).
"""

from domain.strategy.base import (
    TIMEFRAME_MS,
    Bars,
    Strategy,
    StrategyConfigError,
    StrategyError,
    StrategyLoadError,
    as_bars,
)
from domain.strategy.loader import BUILT_IN, load_strategy, validate_strategy

__all__ = [
    "BUILT_IN",
    "TIMEFRAME_MS",
    "Bars",
    "Strategy",
    "StrategyConfigError",
    "StrategyError",
    "StrategyLoadError",
    "as_bars",
    "load_strategy",
    "validate_strategy",
]
