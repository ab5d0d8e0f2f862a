"""Trades to closed candles, per symbol; pure (no I/O, no clock of its own).

Decisions:

- **Only trades make candles.** Tickers never touch a candle; a minute without trades yields no
  candle (nothing is fabricated, not even a flat one).
- **Minute close rule.** The builder keeps a *watermark*: every minute before it is final. A
  trade of a later minute moves the watermark to that minute; the clock moves it to
  ``floor(now - grace)``, i.e. minute ``m`` closes once ``now >= m + 60 s + grace``. A trade
  for a minute before the watermark is late and dropped (counted in ``late_trades``): a candle
  is never emitted twice.
- Within the open minute trades may arrive out of order: open is the earliest trade by time,
  close the latest (ties: arrival order).
- **Higher timeframes** (5m ... 1d) aggregate closed 1m candles into buckets aligned to UTC
  (epoch) boundaries. A bucket closes when a 1m candle of a later bucket arrives or when the
  watermark passes its end. A bucket is emitted only if the builder saw it from its start
  (``coverage``): a partial first bucket is never emitted.
- **Repair.** :meth:`suspend` (connection lost, symbol stale) forgets the open minute and stops
  building. :meth:`resume` gives ``live_from``, the first minute the live feed covers whole;
  closed live minutes are then held while REST candles fill the minutes before ``live_from``
  (the first repair is also the start-up warm-up). A repair may come in parts: each
  :meth:`complete_repair` covers the minutes before ``until`` (those the venue has closed);
  the one that reaches ``live_from`` releases the held live candles. Every timeframe thus
  stays in order, without gaps or duplicates (each remembers the last open time it emitted).
- Aggregated history starts at ``coverage``, the bucket of the largest timeframe holding the
  first repair's ``until``: REST gives the higher-timeframe candles before it (all closed),
  1m candles from it on are aggregated here.
- **Order.** Live candles come out in the order of their closes, and candles that close at the
  same moment longest timeframe first (the 4h bar, then the 15m, then the 1m at 12:00), so an
  analysis at a bar's close sees every bar that closed with it, as a backtest's does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from adapters.marketdata.events import CandleClosed, CandleSource
from adapters.marketdata.timeframes import (
    floor_time,
    normalise_timeframes,
    timeframe_ms,
)
from domain.models import Candle
from domain.timeframes import MINUTE_MS


class _OpenMinute:
    """The 1m candle being built."""

    __slots__ = ("close", "first_ts", "high", "last_ts", "low", "open", "open_time", "volume")

    def __init__(self, open_time: int, ts: int, price: float, qty: float) -> None:
        self.open_time = open_time
        self.first_ts = self.last_ts = ts
        self.open = self.high = self.low = self.close = price
        self.volume = qty

    def add(self, ts: int, price: float, qty: float) -> None:
        if ts < self.first_ts:
            self.first_ts, self.open = ts, price
        if ts >= self.last_ts:
            self.last_ts, self.close = ts, price
        if price > self.high:
            self.high = price
        elif price < self.low:
            self.low = price
        self.volume += qty

    def candle(self, symbol: str) -> Candle:
        return Candle(
            symbol, "1m", self.open_time, self.open, self.high, self.low, self.close, self.volume
        )


@dataclass(slots=True)
class _Bucket:
    open_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    live: bool


class TimeframeAggregator:
    """Closed candles of a shorter timeframe (1m live) into one longer timeframe."""

    def __init__(self, symbol: str, timeframe: str) -> None:
        self.symbol = symbol
        self.timeframe = timeframe
        self.step = timeframe_ms(timeframe)
        self.start: int | None = None  # first bucket seen whole
        self.bucket: _Bucket | None = None

    def add(self, candle: Candle, live: bool) -> list[tuple[Candle, bool]]:
        """Add a closed 1m candle (in order); returns the bucket it closed, if any."""
        open_time = floor_time(candle.open_time, self.step)
        if self.start is None:
            self.start = open_time if open_time == candle.open_time else open_time + self.step
        if open_time < self.start:
            return []
        out = self.advance(open_time)
        b = self.bucket
        if b is None:
            self.bucket = _Bucket(
                open_time,
                candle.open,
                candle.high,
                candle.low,
                candle.close,
                candle.volume,
                live,
            )
        else:
            b.high = max(b.high, candle.high)
            b.low = min(b.low, candle.low)
            b.close = candle.close
            b.volume += candle.volume
            b.live = b.live and live
        return out

    def add_closed(self, candle: Candle, watermark: int) -> list[tuple[Candle, bool]]:
        """Add a closed candle, then close the bucket if ``watermark`` (the time now) ends it:
        a replay knows a bar's candles are final at its close."""
        return self.add(candle, True) + self.advance(watermark)

    def advance(self, watermark: int) -> list[tuple[Candle, bool]]:
        """Close the bucket if every minute of it is final (its end <= ``watermark``)."""
        b = self.bucket
        if b is None or b.open_time + self.step > watermark:
            return []
        self.bucket = None
        candle = Candle(
            self.symbol, self.timeframe, b.open_time, b.open, b.high, b.low, b.close, b.volume
        )
        return [(candle, b.live)]


class CandleBuilder:
    """One symbol's trades into closed candles of ``timeframes`` (module docstring)."""

    def __init__(
        self, symbol: str, timeframes: Iterable[str] = ("1m",), grace_ms: int = 2_000
    ) -> None:
        self.symbol = symbol
        self.timeframes = normalise_timeframes(tuple(timeframes))
        self.grace_ms = grace_ms
        self._largest_step = timeframe_ms(self.timeframes[-1])
        self._aggs = [TimeframeAggregator(symbol, tf) for tf in self.timeframes[1:]]
        self._minute: _OpenMinute | None = None
        self._watermark = 0
        self._last: dict[str, int] = {}
        self._live_from: int | None = 0  # None: suspended
        self._pending = False
        self._held: list[Candle] = []
        self._coverage: int | None = None
        self._repaired_until: int | None = None
        self.epoch = 0
        self.late_trades = 0
        self.duplicates = 0

    # ------------------------------------------------------------------ state
    @property
    def suspended(self) -> bool:
        return self._live_from is None

    @property
    def repair_pending(self) -> bool:
        return self._pending

    @property
    def live_from(self) -> int | None:
        return self._live_from

    @property
    def watermark(self) -> int:
        return self._watermark

    def last_emitted(self, timeframe: str) -> int | None:
        """Open time of the last candle emitted for ``timeframe``."""
        return self._last.get(timeframe)

    # ------------------------------------------------------------------ live input
    def on_trade(self, ts: int, price: float, qty: float) -> list[CandleClosed]:
        live_from = self._live_from
        if live_from is None or ts < live_from:
            return []
        minute = ts - ts % MINUTE_MS
        if minute < self._watermark:
            self.late_trades += 1
            return []
        out = self._advance(minute) if minute > self._watermark else []
        m = self._minute
        if m is None:
            self._minute = _OpenMinute(minute, ts, price, qty)
        else:
            m.add(ts, price, qty)
        return out

    def on_clock(self, now_ms: int) -> list[CandleClosed]:
        """The clock moved: close what ended at least ``grace_ms`` ago."""
        watermark = floor_time(now_ms - self.grace_ms, MINUTE_MS)
        return self._advance(watermark) if watermark > self._watermark else []

    def _advance(self, watermark: int) -> list[CandleClosed]:
        self._watermark = watermark
        out: list[CandleClosed] = []
        m = self._minute
        if m is not None and m.open_time < watermark:
            self._minute = None
            if self._pending:
                self._held.append(m.candle(self.symbol))
            else:
                self._emit_1m(m.candle(self.symbol), "live", out)
        if not self._pending and self._live_from is not None:  # suspended: 1m history has a hole
            for agg in self._aggs:
                self._emit_aggregated(agg.advance(watermark), out)
        return _in_close_order(out)

    # ------------------------------------------------------------------ repair
    def suspend(self) -> None:
        """Stop building: the open minute and held candles are lost (repair refetches them)."""
        self._live_from = None
        self._minute = None
        self._held.clear()
        self._pending = False
        self.epoch += 1

    def resume(self, live_from: int) -> None:
        """Build again from ``live_from`` (rounded up to a minute: a minute joined midway is not
        seen whole); output is held until the repair."""
        live_from = max(-(-live_from // MINUTE_MS) * MINUTE_MS, self._watermark)
        self._live_from = live_from
        self._watermark = live_from
        self._pending = True
        self._repaired_until = None
        self._minute = None
        self._held.clear()
        self.epoch += 1

    def repair_due(self, until: int) -> bool:
        """Whether a repair up to ``until`` (venue's closed minutes end there) has work."""
        if not self._pending or self._live_from is None:
            return False
        done = self._repaired_until
        return done is None or min(until, self._live_from) > done

    def repair_plan(self, warmup_bars: int, until: int) -> dict[str, int]:
        """``{timeframe: since_ms}`` to fetch for :meth:`complete_repair` up to ``until``."""
        if not self.repair_due(until) or self._live_from is None:
            return {}
        cutoff = min(until, self._live_from)
        last = self._last.get("1m")
        if self._repaired_until is not None:
            plan = {"1m": self._repaired_until}
        elif last is not None:
            plan = {"1m": last + MINUTE_MS}
        else:
            plan = {"1m": cutoff - warmup_bars * MINUTE_MS}
        fresh = [agg for agg in self._aggs if agg.start is None]
        if fresh:
            coverage = self._coverage
            if coverage is None:
                coverage = floor_time(cutoff, self._largest_step)
            plan["1m"] = min(plan["1m"], coverage)
            for agg in fresh:
                plan[agg.timeframe] = coverage - warmup_bars * agg.step
        return plan

    def complete_repair(
        self, history: Mapping[str, Iterable[Candle]], until: int
    ) -> list[CandleClosed]:
        """Emit the closed REST candles before ``min(until, live_from)``; when that reaches
        ``live_from``, release the held live candles and go live."""
        if not self._pending or self._live_from is None:
            return []
        cutoff = min(until, self._live_from)
        out: list[CandleClosed] = []
        if self._coverage is None:
            self._coverage = floor_time(cutoff, self._largest_step)
        coverage = self._coverage
        for agg in self._aggs:
            if agg.start is None:
                agg.start = coverage
                for candle in sorted(history.get(agg.timeframe, ()), key=_open_time):
                    if candle.open_time + agg.step <= coverage:
                        self._emit(self._normalise(candle, agg.timeframe), "rest", out)
        for candle in sorted(history.get("1m", ()), key=_open_time):
            if candle.open_time < cutoff:
                self._emit_1m(self._normalise(candle, "1m"), "rest", out)
        self._repaired_until = max(cutoff, self._repaired_until or cutoff)
        if cutoff < self._live_from:
            return out
        self._pending = False
        held, self._held = self._held, []
        released: list[CandleClosed] = []
        for candle in held:
            self._emit_1m(candle, "live", released)
        for agg in self._aggs:
            self._emit_aggregated(agg.advance(self._watermark), released)
        return out + _in_close_order(released)

    # ------------------------------------------------------------------ output
    def _normalise(self, candle: Candle, timeframe: str) -> Candle:
        if candle.symbol == self.symbol and candle.timeframe == timeframe and candle.closed:
            return candle
        return replace(candle, symbol=self.symbol, timeframe=timeframe, closed=True)

    def _emit_1m(self, candle: Candle, source: CandleSource, out: list[CandleClosed]) -> None:
        if not self._emit(candle, source, out):
            return
        live = source == "live"
        for agg in self._aggs:
            self._emit_aggregated(agg.add(candle, live), out)

    def _emit_aggregated(self, closed: list[tuple[Candle, bool]], out: list[CandleClosed]) -> None:
        for candle, live in closed:
            self._emit(candle, "live" if live else "rest", out)

    def _emit(self, candle: Candle, source: CandleSource, out: list[CandleClosed]) -> bool:
        last = self._last.get(candle.timeframe)
        if last is not None and candle.open_time <= last:
            self.duplicates += 1
            return False
        self._last[candle.timeframe] = candle.open_time
        out.append(CandleClosed(self.symbol, candle.timeframe, candle, source))
        return True


def _open_time(candle: Candle) -> int:
    return candle.open_time


def _in_close_order(events: list[CandleClosed]) -> list[CandleClosed]:
    """By close time; at the same close, the longest timeframe first (module docstring)."""

    def key(event: CandleClosed) -> tuple[int, int]:
        step = timeframe_ms(event.timeframe)
        return event.candle.open_time + step, -step

    return sorted(events, key=key) if len(events) > 1 else events
