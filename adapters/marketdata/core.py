"""The feed's logic without I/O: venue messages in, :mod:`events` out, repairs requested.

Decisions:

- **Candle clock = the venue's time as seen on the feed** (the largest ``time`` of heartbeats,
  tickers and trades), not the local clock. Messages on one connection arrive in order, so a
  minute is never closed by a local timer before its last trades were read, and local clock
  skew does not matter. The local clock (``now_ms``) drives staleness and retry timing only.
- **Subscriptions**: ``trade`` first, then ``ticker``, then ``heartbeat``. After a (re)connect
  every builder is suspended; once the ``trade`` subscription is acknowledged, a symbol resumes
  on its next own message, with ``live_from`` = the minute after the venue's time then (that
  minute is the first one seen whole). Trade snapshots are not built from (only a sign of life).
- **Gap repair**: a suspended-then-resumed symbol asks REST (the injected ``warmup``) for the
  minutes the venue has closed since the last candle emitted, in parts as the clock passes, up
  to ``live_from`` (see :mod:`candles`); the first repair is the start-up warm-up. A symbol that
  goes stale is suspended too, so a silenced symbol is repaired like a lost connection.
- Ticker messages give :class:`MarkPrice` and advance the clock; they never touch a candle.
- Every print counts toward candles, whatever its ``type`` (fill, liquidation, ...).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import structlog

from adapters.marketdata.candles import CandleBuilder
from adapters.marketdata.events import CandleClosed, FeedEvent, FeedFresh, FeedStale, MarkPrice
from adapters.marketdata.staleness import StalenessTracker
from adapters.marketdata.timeframes import floor_time, normalise_timeframes
from domain.models import Candle
from domain.timeframes import MINUTE_MS

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class FeedConfig:
    """Tunables. Times in ms unless named ``_s``."""

    close_grace_ms: int = 2_000  # a minute closes once the venue clock is this far past its end
    stale_after_ms: int = 10_000  # no message for a symbol this long: stale
    watchdog_ms: int = 30_000  # no message at all this long: reconnect
    warmup_bars: int = 300  # history per timeframe fetched at start
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    check_interval_s: float = 0.5  # staleness, watchdog and repair scheduling period
    repair_retry_s: float = 2.0  # wait after a failed REST repair
    open_timeout_s: float = 10.0
    ping_interval_s: float = 20.0  # websocket protocol pings (the venue wants one per 60 s)


@dataclass(frozen=True, slots=True)
class RepairRequest:
    """Fetch ``plan`` (``{timeframe: since_ms}``) for ``symbol``; valid for ``epoch`` only."""

    symbol: str
    epoch: int
    until: int
    plan: dict[str, int]


@dataclass(slots=True)
class FeedStats:
    messages: int = 0
    trades: int = 0
    tickers: int = 0
    heartbeats: int = 0
    connects: int = 0
    candles: int = 0
    repairs: int = 0
    repair_failures: int = 0
    late_trades: int = 0


class FeedCore:
    """Parses venue messages and keeps the per-symbol builders and staleness (module doc)."""

    def __init__(
        self,
        symbols: Mapping[str, str],
        timeframes: Iterable[str],
        emit: Callable[[FeedEvent], None],
        now_ms: Callable[[], int],
        config: FeedConfig | None = None,
    ) -> None:
        if not symbols:
            raise ValueError("no symbols to follow")
        self.config = config or FeedConfig()
        self.symbols = dict(symbols)
        self.timeframes = normalise_timeframes(tuple(timeframes))
        self._by_product = {venue: unified for unified, venue in self.symbols.items()}
        self._emit = emit
        self._now_ms = now_ms
        grace = self.config.close_grace_ms
        self.builders = {s: CandleBuilder(s, self.timeframes, grace) for s in self.symbols}
        for builder in self.builders.values():
            builder.suspend()
        self.staleness = StalenessTracker(self.symbols, self.config.stale_after_ms)
        self.stats = FeedStats()
        self.clock = 0  # venue time seen on the feed
        self._closed_until = 0  # the venue has closed every minute before this
        self._trade_acked = False
        self._in_flight: dict[str, int] = {}
        self._not_before: dict[str, int] = {}

    # ------------------------------------------------------------------ connection
    def subscriptions(self) -> list[dict[str, Any]]:
        products = list(self.symbols.values())
        return [
            {"event": "subscribe", "feed": "trade", "product_ids": products},
            {"event": "subscribe", "feed": "ticker", "product_ids": products},
            {"event": "subscribe", "feed": "heartbeat"},
        ]

    def on_connected(self) -> None:
        """A new connection: nothing is live until re-subscribed and resumed."""
        self.stats.connects += 1
        self._trade_acked = False
        for builder in self.builders.values():
            builder.suspend()

    # ------------------------------------------------------------------ messages
    def on_message(self, raw: str | bytes) -> None:
        self.stats.messages += 1
        try:
            message = json.loads(raw)
            feed = message.get("feed")
        except (ValueError, AttributeError):
            log.warning("feed_message_unreadable", raw=str(raw)[:200])
            return
        try:
            if "event" in message:
                self._on_event(message)
            elif feed == "trade":
                self._on_trade(message)
            elif feed == "ticker":
                self._on_ticker(message)
            elif feed == "heartbeat":
                self.stats.heartbeats += 1
                self._advance_clock(int(message["time"]))
            elif feed == "trade_snapshot":
                symbol = self._by_product.get(message.get("product_id"))
                if symbol is not None:
                    self._seen(symbol)
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            log.warning("feed_message_malformed", feed=feed, error=repr(exc))

    def _on_event(self, message: dict[str, Any]) -> None:
        event = str(message["event"])
        if event == "subscribed":
            log.info("feed_subscribed", feed=message.get("feed"))
            if message.get("feed") == "trade":
                self._trade_acked = True
        elif event in ("alert", "error") or event.endswith("_failed"):
            log.warning("feed_rejected_request", venue_event=event, message=message.get("message"))

    def _on_trade(self, message: dict[str, Any]) -> None:
        symbol = self._by_product.get(message.get("product_id"))
        if symbol is None:
            return
        self.stats.trades += 1
        ts = int(message["time"])
        self._seen(symbol)
        self._maybe_resume(symbol, ts)
        builder = self.builders[symbol]
        late = builder.late_trades
        closed = builder.on_trade(ts, float(message["price"]), float(message["qty"]))
        if builder.late_trades != late:
            self.stats.late_trades += 1
            log.warning("late_trade_dropped", symbol=symbol, ts=ts, closed_until=builder.watermark)
        if closed:
            self._deliver(closed)
        self._advance_clock(ts)

    def _on_ticker(self, message: dict[str, Any]) -> None:
        symbol = self._by_product.get(message.get("product_id"))
        if symbol is None:
            return
        self.stats.tickers += 1
        ts = int(message["time"])
        self._seen(symbol)
        self._maybe_resume(symbol, ts)
        mark = message.get("markPrice")
        if mark is not None:
            self._emit_event(MarkPrice(symbol, Decimal(repr(mark)), ts))
        self._advance_clock(ts)

    def _seen(self, symbol: str) -> None:
        """A message about ``symbol`` (sign of life)."""
        if self.staleness.touch(symbol, self._now_ms()):
            log.info("symbol_fresh", symbol=symbol)
            self._emit_event(FeedFresh(symbol))

    def _maybe_resume(self, symbol: str, ts: int) -> None:
        """Resume a suspended symbol on its first timed message after the trade ack: that
        message's time is at or after the subscription took effect."""
        builder = self.builders[symbol]
        if builder.suspended and self._trade_acked:
            venue_now = max(self.clock, ts)
            builder.resume(floor_time(venue_now, MINUTE_MS) + MINUTE_MS)
            log.info("candles_resumed", symbol=symbol, live_from=builder.live_from)

    def _advance_clock(self, ts: int) -> None:
        if ts <= self.clock:
            return
        self.clock = ts
        closed_until = floor_time(ts - self.config.close_grace_ms, MINUTE_MS)
        if closed_until <= self._closed_until:
            return
        self._closed_until = closed_until
        for builder in self.builders.values():
            closed = builder.on_clock(ts)
            if closed:
                self._deliver(closed)

    # ------------------------------------------------------------------ timers
    def on_tick(self) -> None:
        """Periodic: report symbols gone stale and suspend their candles."""
        for symbol, since in self.staleness.expired(self._now_ms()):
            log.warning("symbol_stale", symbol=symbol, since_ms=since)
            self.builders[symbol].suspend()
            self._emit_event(FeedStale(symbol, since))

    def stale(self, symbol: str) -> bool:
        return self.staleness.stale(symbol, self._now_ms())

    # ------------------------------------------------------------------ repairs
    def repairs_due(self) -> list[RepairRequest]:
        """Repairs to run now (each marked in flight until applied or failed)."""
        until = self._closed_until
        if until <= 0:
            return []
        now = self._now_ms()
        out: list[RepairRequest] = []
        for symbol, builder in self.builders.items():
            if self._in_flight.get(symbol) == builder.epoch or not builder.repair_due(until):
                continue
            if self._not_before.get(symbol, 0) > now:
                continue
            plan = builder.repair_plan(self.config.warmup_bars, until)
            self._in_flight[symbol] = builder.epoch
            out.append(RepairRequest(symbol, builder.epoch, until, plan))
        return out

    def apply_repair(self, request: RepairRequest, history: Mapping[str, list[Candle]]) -> None:
        self._done(request)
        builder = self.builders[request.symbol]
        if builder.epoch != request.epoch:
            log.info("gap_repair_outdated", symbol=request.symbol)
            return
        self.stats.repairs += 1
        closed = builder.complete_repair(history, request.until)
        log.info(
            "gap_repaired",
            symbol=request.symbol,
            candles=len(closed),
            since_ms=request.plan.get("1m"),
            until_ms=min(request.until, builder.live_from or request.until),
            live=not builder.repair_pending,
        )
        self._deliver(closed)

    def repair_failed(self, request: RepairRequest) -> None:
        self.stats.repair_failures += 1
        self._done(request)
        retry_ms = int(self.config.repair_retry_s * 1000)
        self._not_before[request.symbol] = self._now_ms() + retry_ms

    def _done(self, request: RepairRequest) -> None:
        if self._in_flight.get(request.symbol) == request.epoch:
            del self._in_flight[request.symbol]

    # ------------------------------------------------------------------ output
    def _deliver(self, closed: list[CandleClosed]) -> None:
        for event in closed:
            self.stats.candles += 1
            log.debug(
                "candle_closed",
                symbol=event.symbol,
                timeframe=event.timeframe,
                open_time=event.candle.open_time,
                source=event.source,
            )
            self._emit_event(event)

    def _emit_event(self, event: FeedEvent) -> None:
        try:
            self._emit(event)
        except Exception:  # a consumer's bug must not stop the feed
            log.exception("feed_consumer_failed", event_type=type(event).__name__)
