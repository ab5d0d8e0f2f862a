"""The market-data feed wired to the actors: its events in the feed's order, and a ``Tick`` at
each bar close before the bar's candles.

The feed (:class:`adapters.marketdata.MarketDataFeed`) runs on a thread of its own that must
never block. Straight from it go the events whose order against candles does not matter: the
venue's time to the clock (a candle's close, a mark price's time), mark prices to protection,
candles to the history writer, stale reports to the operators' chats. Everything an analyzer
sees goes through :class:`FeedRelay`, which delivers it from its own thread in the feed's order:

- a live candle that closes a bar later than any before it (its close, ``open + timeframe``, is
  the venue's time of that bar close) first makes the bar close a beat of the clock: the
  timer-driven actors get a ``Tick``, and the candle waits until execution has handled its one.
  Execution then has applied the fills of the bar, protected new exposure, cancelled expired
  entries and, when its timer says so, read the account; what that tells allocator and risk is
  in their mailboxes before the signals the candle may raise. A backtest's clock beats the same
  way (:mod:`actors.backtest`: a ``Tick`` at each bar close, before the closed candles reach the
  analyzers), so paper and live decide on each bar with its positions as the bar left them.
  Execution's ``Tick`` is *told* (a failure in it fails the actor, as a timer beat does) and
  then a no-op is *asked* behind it; a slow or restarting execution delays the candles by at
  most ``close_tick_timeout_s``, never drops them;
- candles then go to their symbol's analyzer; stale and fresh reports to the analyzer and risk.

Candles from REST (warm-up, gap repair) are history: they beat nothing.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence

import pykka
import structlog

from actors.alerting import AlertRelay
from actors.core import EXECUTION, PROTECTION, RISK, analyzer
from actors.history import HistoryWriter
from actors.messages import CandleClosed, FeedFresh, FeedStale, MarkPrice, Tick
from actors.supervision_directory import ChildDown
from actors.supervisor import Directory
from adapters.marketdata import FeedEvent, MarketDataFeed
from domain.models import Candle
from domain.ports import ExchangePort
from domain.timeframes import TIMEFRAME_MS

log = structlog.get_logger(__name__)
CLOSE_TICK_TIMEOUT_S = 5.0


class FeedRelay(threading.Thread):
    """Delivers the feed's events to the analyzers and risk, with a ``Tick`` at each bar close
    first (module docstring); :meth:`put` from any thread, never blocks."""

    def __init__(
        self,
        directory: Directory,
        tick_targets: Iterable[str],
        *,
        barrier: object,
        close_tick_timeout_s: float = CLOSE_TICK_TIMEOUT_S,
    ) -> None:
        super().__init__(name="bastion-feed-relay", daemon=True)
        self._directory = directory
        self._others = tuple(name for name in tick_targets if name != EXECUTION)
        self._barrier = barrier  # a no-op for execution: answered once the Tick before it was
        self._timeout_s = close_tick_timeout_s
        self._queue: queue.SimpleQueue[FeedEvent | None] = queue.SimpleQueue()
        self.closed_until = 0  # the latest bar close the actors were beaten for

    def put(self, event: FeedEvent) -> None:
        self._queue.put(event)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued, then end (idempotent)."""
        self._queue.put(None)
        if self.is_alive():
            self.join(timeout_s)

    def run(self) -> None:
        while (event := self._queue.get()) is not None:
            try:
                self._deliver(event)
            except Exception:  # one bad event must not stop the candles
                log.exception("feed_relay_failed", event_type=type(event).__name__)

    def _deliver(self, event: FeedEvent) -> None:
        match event:
            case CandleClosed(symbol=symbol, timeframe=timeframe, candle=candle, source=source):
                if source == "live":
                    self._bar_closed(candle.open_time + TIMEFRAME_MS[timeframe])
                self._directory.tell(analyzer(symbol), event)
            case FeedStale(symbol=symbol) | FeedFresh(symbol=symbol):
                self._directory.tell(analyzer(symbol), event)
                self._directory.tell(RISK, event)

    def _bar_closed(self, close: int) -> None:
        if close <= self.closed_until:
            return
        self.closed_until = close
        tick = Tick(close)
        if self._directory.tell(EXECUTION, tick):
            try:
                self._directory.ask(EXECUTION, self._barrier, timeout_s=self._timeout_s)
            except (ChildDown, pykka.Timeout) as err:
                log.warning("bar_close_unanswered", actor=EXECUTION, close=close, error=str(err))
        for name in self._others:
            self._directory.tell(name, tick)


def start_feed(  # noqa: PLR0917 - one call site, every argument distinct
    ws_url: str,
    universe: Sequence[str],
    venue_ids: Mapping[str, str],
    timeframes: Sequence[str],
    port: ExchangePort,
    directory: Directory,
    observe: Callable[[int], None],
    sinks: tuple[HistoryWriter | None, AlertRelay | None],
    relay: FeedRelay,
) -> MarketDataFeed:
    """Start ``relay`` and the feed that hands it its events (module docstring); ``observe``
    takes the venue's time as the feed sees it (the runtime's clock)."""
    history, alerts = sinks

    def warmup(symbol: str, timeframe: str, since: int, until: int) -> list[Candle]:
        return port.ohlcv(symbol, timeframe, since, until)

    def on_event(event: FeedEvent) -> None:
        match event:
            case CandleClosed(timeframe=timeframe, candle=candle):
                observe(candle.open_time + TIMEFRAME_MS[timeframe])  # its close time
                relay.put(event)
                if history is not None:
                    history.tell(event)
            case MarkPrice(ts=ts):
                observe(ts)
                directory.tell(PROTECTION, event)  # a widened stop is priced off the mark
            case FeedStale() | FeedFresh():
                relay.put(event)
                if alerts is not None and isinstance(event, FeedStale):
                    alerts.tell(event)

    feed = MarketDataFeed(
        ws_url,
        {s: venue_ids[s] for s in universe},
        timeframes=sorted(set(timeframes) | {"1m"}),
        warmup=warmup,
        on_event=on_event,
    )
    relay.start()
    feed.start()
    return feed


__all__ = ["CLOSE_TICK_TIMEOUT_S", "FeedRelay", "start_feed"]
