"""Strategies defined outside ``domain``, loaded by dotted path in the loader tests."""

from collections.abc import Mapping, Sequence
from typing import Any

from domain.models import Instrument, Signal


class AlwaysNothing:
    """A valid user strategy that never signals."""

    name = "always_nothing"

    def __init__(
        self,
        params: Mapping[str, Any],
        bias_timeframes: Sequence[str],
        entry_timeframes: Sequence[str],
    ) -> None:
        self.params = dict(params)
        self.timeframes = tuple(entry_timeframes)

    def analyze(self, data: Mapping[str, Any], instrument: Instrument) -> Signal | None:
        return None


class NoAnalyze:
    name = "broken"
    timeframes = ("15m",)

    def __init__(self, **kwargs: Any) -> None:
        pass


class WrongTimeframes(AlwaysNothing):
    def __init__(self, **kwargs: Any) -> None:
        self.timeframes = ("7m",)


class NoArgs:
    name = "no_args"
    timeframes = ("15m",)

    def analyze(self, data: Mapping[str, Any], instrument: Instrument) -> None:
        return None


NOT_CALLABLE = 42
