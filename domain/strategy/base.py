"""The strategy interface and the bar arrays strategies read.

A strategy sees closed bars per timeframe for one symbol and returns at most one
:class:`~domain.models.Signal`. Decisions:

- Bars are numpy arrays (:class:`Bars`), not candle objects: analysis is vectorised. Anything
  with ``open_time/open/high/low/close[/volume]`` columns (a pandas DataFrame, a dict of arrays)
  or a sequence of :class:`~domain.models.Candle` converts through :func:`as_bars`.
- Only closed bars are passed; the last bar of a timeframe is the most recent closed one.
- Time is data: a bar's close time is ``open_time + timeframe length``; a signal's
  ``created_at`` is the close time of the bar it was computed on, never a clock reading.
- A strategy is built by a factory called with keyword arguments ``params`` (the
  ``strategy.params`` mapping of the config), ``bias_timeframes`` and ``entry_timeframes`` (from
  ``universe``); see :mod:`domain.strategy.loader`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from domain.errors import DomainError
from domain.models import Candle, Instrument, Signal
from domain.timeframes import TIMEFRAME_MS

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class StrategyError(DomainError):
    """A strategy cannot be built or used: bad parameters, data or interface."""


class StrategyConfigError(StrategyError):
    """``strategy.params`` (or the timeframes) do not fit the strategy."""


class StrategyLoadError(StrategyError):
    """A strategy named in the config cannot be imported or does not implement the interface."""


def timeframe_ms(timeframe: str) -> int:
    """Length of ``timeframe`` in ms; raises :class:`StrategyConfigError` if unknown."""
    try:
        return TIMEFRAME_MS[timeframe]
    except KeyError:
        raise StrategyConfigError(
            f"unknown timeframe {timeframe!r}; known: {list(TIMEFRAME_MS)}"
        ) from None


def _column(values: Any, dtype: type, name: str, timeframe: str) -> np.ndarray:
    array = np.ascontiguousarray(np.asarray(values, dtype=dtype))
    if array.ndim != 1:
        raise StrategyError(f"{timeframe}: column {name!r} must be one-dimensional")
    array.setflags(write=False)
    return array


@dataclass(frozen=True, slots=True, eq=False)
class Bars:
    """Closed OHLCV bars of one timeframe, oldest first, as read-only numpy arrays.

    ``open_time`` is int64 ms and strictly increasing (gaps are allowed); prices are float64.
    """

    timeframe: str
    open_time: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    def __post_init__(self) -> None:
        tf = self.timeframe
        timeframe_ms(tf)
        set_ = object.__setattr__
        set_(self, "open_time", _column(self.open_time, np.int64, "open_time", tf))
        for name in ("open", "high", "low", "close", "volume"):
            set_(self, name, _column(getattr(self, name), np.float64, name, tf))
        n = len(self.open_time)
        if any(len(getattr(self, c)) != n for c in ("open", "high", "low", "close", "volume")):
            raise StrategyError(f"{tf}: columns have different lengths")
        if n > 1 and not bool(np.all(np.diff(self.open_time) > 0)):
            raise StrategyError(f"{tf}: open_time must be strictly increasing")

    def __len__(self) -> int:
        return len(self.open_time)

    @classmethod
    def unchecked(  # noqa: PLR0917 - the columns, in their usual order
        cls,
        timeframe: str,
        open_time: IntArray,
        open_: FloatArray,
        high: FloatArray,
        low: FloatArray,
        close: FloatArray,
        volume: FloatArray,
    ) -> Bars:
        """Bars over columns their owner keeps valid, without checks or copies: read-only
        one-dimensional int64/float64 arrays of one length, open times strictly increasing.
        For a candle buffer handing out its views on every bar, where the checks would cost
        more than the analysis."""
        bars = object.__new__(cls)
        set_ = object.__setattr__
        set_(bars, "timeframe", timeframe)
        set_(bars, "open_time", open_time)
        set_(bars, "open", open_)
        set_(bars, "high", high)
        set_(bars, "low", low)
        set_(bars, "close", close)
        set_(bars, "volume", volume)
        return bars

    @property
    def tf_ms(self) -> int:
        return TIMEFRAME_MS[self.timeframe]

    @property
    def close_time(self) -> IntArray:
        """Close time of each bar (ms): ``open_time + timeframe length``."""
        return self.open_time + self.tf_ms

    def head(self, count: int) -> Bars:
        """The first ``count`` bars (views, no copy)."""
        return Bars(
            self.timeframe,
            self.open_time[:count],
            self.open[:count],
            self.high[:count],
            self.low[:count],
            self.close[:count],
            self.volume[:count],
        )

    def closed_by(self, at_ms: int) -> Bars:
        """The bars whose close time is at or before ``at_ms``."""
        count = int(np.searchsorted(self.close_time, at_ms, side="right"))
        return self.head(count)

    @classmethod
    def from_candles(cls, candles: Sequence[Candle], timeframe: str | None = None) -> Bars:
        """Bars from candle objects (all of one timeframe)."""
        if timeframe is None:
            if not candles:
                raise StrategyError("cannot infer the timeframe of an empty candle list")
            timeframe = candles[0].timeframe
        return cls(
            timeframe,
            np.fromiter((c.open_time for c in candles), np.int64, len(candles)),
            np.fromiter((c.open for c in candles), np.float64, len(candles)),
            np.fromiter((c.high for c in candles), np.float64, len(candles)),
            np.fromiter((c.low for c in candles), np.float64, len(candles)),
            np.fromiter((c.close for c in candles), np.float64, len(candles)),
            np.fromiter((c.volume for c in candles), np.float64, len(candles)),
        )

    @classmethod
    def from_columns(cls, frame: Any, timeframe: str) -> Bars:
        """Bars from anything indexable by column name (pandas DataFrame, dict of arrays).

        ``volume`` may be missing (zeros are used).
        """
        try:
            volume = frame["volume"]
        except KeyError:
            volume = np.zeros(len(frame["close"]))
        try:
            return cls(
                timeframe,
                frame["open_time"],
                frame["open"],
                frame["high"],
                frame["low"],
                frame["close"],
                volume,
            )
        except KeyError as exc:
            raise StrategyError(f"{timeframe}: missing column {exc}") from None


def as_bars(value: Any, timeframe: str) -> Bars:
    """Convert one timeframe's data to :class:`Bars` (identity for ``Bars``)."""
    if isinstance(value, Bars):
        if value.timeframe != timeframe:
            raise StrategyError(f"bars of {value.timeframe} given as {timeframe}")
        return value
    if isinstance(value, Sequence) and (not value or isinstance(value[0], Candle)):
        return Bars.from_candles(value, timeframe)
    return Bars.from_columns(value, timeframe)


def require_timeframes(data: Mapping[str, Any], timeframes: Sequence[str]) -> dict[str, Bars]:
    """``data`` converted to :class:`Bars` for each required timeframe; missing ones raise."""
    missing = [tf for tf in timeframes if tf not in data]
    if missing:
        raise StrategyError(f"missing bars for timeframes {missing}")
    return {tf: as_bars(data[tf], tf) for tf in timeframes}


@runtime_checkable
class Strategy(Protocol):
    """What every strategy, built in or user supplied, implements.

    ``name`` goes into ``Signal.strategy``; ``timeframes`` lists every timeframe ``analyze``
    reads (the analyzer keeps buffers for exactly these).
    """

    name: str
    timeframes: tuple[str, ...]

    def analyze(self, data: Mapping[str, Any], instrument: Instrument) -> Signal | None:
        """At most one signal from closed bars per timeframe (``{timeframe: Bars | frame}``)."""
        ...
