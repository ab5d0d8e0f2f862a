"""The market-data feed on ``websockets``: connection, back-off, watchdog, repairs, thread.

Decisions:

- One connection for all symbols. On any loss (error, close, watchdog) it reconnects after an
  exponential back-off with full jitter, ``uniform(0.5, 1) * min(max, initial * 2**n)``; ``n``
  goes back to 0 once a connection has delivered market data (a ticker or a trade).
- Watchdog: no message at all (heartbeats included) for ``watchdog_ms`` on the local clock
  closes the connection and reconnects. Protocol pings keep idle links open.
- REST repairs call the injected ``warmup`` in worker threads (it may block, e.g. ccxt sync);
  their results are applied on the feed's loop, so the core is only touched from one thread.
- Events go to ``on_event`` on the feed's loop thread: it must not block (``queue.put``,
  ``actor.tell``, or ``loop.call_soon_threadsafe`` into another loop).
- An unexpected error in a session is logged (``feed_failed``) and treated like a lost
  connection: the feed keeps trying; stale reports tell the consumer meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from adapters.marketdata.core import FeedConfig, FeedCore, FeedStats, RepairRequest
from adapters.marketdata.events import FeedEvent
from domain.models import Candle

log = structlog.get_logger(__name__)

WarmupFn = Callable[[str, str, int, int], list[Candle]]
"""``warmup(unified_symbol, timeframe, since_ms, until_ms)``: every candle that opened at or after
``since_ms`` and closed by ``until_ms`` (the venue has closed every minute before it), oldest
first; paging is its job. A later candle (one still forming) may be included: it is ignored.
``until_ms`` is what tells a closed candle from a forming one: the newest candle the venue
returns is not always the forming one (a venue that has no trade yet in the current minute
returns none for it)."""


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class MarketDataFeed:
    """Ticker and trade feeds for ``symbols`` (``{unified: venue product id}``), candles of
    ``timeframes``, staleness; see :mod:`adapters.marketdata.core` for the rules."""

    def __init__(
        self,
        ws_url: str,
        symbols: Mapping[str, str],
        *,
        timeframes: Iterable[str],
        warmup: WarmupFn,
        on_event: Callable[[FeedEvent], None],
        config: FeedConfig | None = None,
        now_ms: Callable[[], int] = wall_ms,
        rng: random.Random | None = None,
    ) -> None:
        self.ws_url = ws_url
        self.config = config or FeedConfig()
        self._warmup = warmup
        self._now_ms = now_ms
        self._rng = rng or random.Random()
        self.core = FeedCore(symbols, timeframes, on_event, now_ms, self.config)
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._repairs: set[asyncio.Task[None]] = set()
        self._last_message_ms = 0

    # ------------------------------------------------------------------ queries
    def stale(self, symbol: str) -> bool:
        """Whether ``symbol`` is stale now (callable from any thread)."""
        return self.core.stale(symbol)

    @property
    def stats(self) -> FeedStats:
        return self.core.stats

    # ------------------------------------------------------------------ thread mode
    def start(self) -> None:
        """Run the feed on its own event-loop thread; returns once the loop runs."""
        if self._thread is not None:
            raise RuntimeError("feed already started")
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self.run()), name="marketdata-feed", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("market-data feed loop did not start")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop and join the feed thread (safe from any thread, idempotent)."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closed meanwhile
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("feed_stop_timeout", timeout_s=timeout)

    # ------------------------------------------------------------------ asyncio mode
    async def run(self) -> None:
        """Connect, read and reconnect until :meth:`stop` (or cancellation)."""
        self._loop = asyncio.get_running_loop()
        self._stop = stop = asyncio.Event()
        self._ready.set()
        ticker = asyncio.create_task(self._tick_loop())
        attempt = 0
        try:
            while not stop.is_set():
                data_before = self.core.stats.trades + self.core.stats.tickers
                try:
                    await self._connect_once()
                except (OSError, TimeoutError, WebSocketException) as exc:
                    log.warning("feed_disconnected", error=repr(exc))
                except Exception:  # a bug must not end the feed silently: log, back off, retry
                    log.exception("feed_failed")
                if self.core.stats.trades + self.core.stats.tickers > data_before:
                    attempt = 0  # the connection delivered market data: start the back-off over
                if stop.is_set():
                    break
                delay = self._backoff(attempt)
                attempt += 1
                log.info("feed_reconnecting", delay_s=round(delay, 3), attempt=attempt)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            ticker.cancel()
            for task in list(self._repairs):
                task.cancel()
            await asyncio.gather(ticker, *self._repairs, return_exceptions=True)
            log.info("feed_stopped")

    def _backoff(self, attempt: int) -> float:
        cfg = self.config
        ceiling = min(cfg.backoff_max_s, cfg.backoff_initial_s * 2 ** min(attempt, 30))
        return ceiling * self._rng.uniform(0.5, 1.0)

    async def _connect_once(self) -> None:
        cfg = self.config
        async with connect(
            self.ws_url,
            open_timeout=cfg.open_timeout_s,
            ping_interval=cfg.ping_interval_s,
            ping_timeout=cfg.ping_interval_s,
            close_timeout=2,
            max_size=2**22,
        ) as ws:
            self.core.on_connected()
            self._last_message_ms = self._now_ms()
            log.info("feed_connected", url=self.ws_url, connects=self.core.stats.connects)
            for message in self.core.subscriptions():
                await ws.send(json.dumps(message))
            await self._session(ws)

    async def _session(self, ws: ClientConnection) -> None:
        assert self._stop is not None
        reader = asyncio.create_task(self._read(ws))
        watchdog = asyncio.create_task(self._watchdog())
        stopper = asyncio.create_task(self._stop.wait())
        tasks = {reader, watchdog, stopper}
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if reader.done() and not reader.cancelled():
            reader.result()  # re-raise what ended the connection
            log.warning("feed_disconnected", error="closed by the venue")

    async def _read(self, ws: ClientConnection) -> None:
        async for raw in ws:
            self._last_message_ms = self._now_ms()
            self.core.on_message(raw)
            self._schedule_repairs()

    async def _watchdog(self) -> None:
        limit = self.config.watchdog_ms
        while True:
            await asyncio.sleep(self.config.check_interval_s)
            silent = self._now_ms() - self._last_message_ms
            if silent > limit:
                log.warning("feed_watchdog_fired", silent_ms=silent, limit_ms=limit)
                return

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.check_interval_s)
            try:
                self.core.on_tick()
                self._schedule_repairs()
            except Exception:  # staleness checks must outlive a bug in one round
                log.exception("feed_tick_failed")

    # ------------------------------------------------------------------ repairs
    def _schedule_repairs(self) -> None:
        for request in self.core.repairs_due():
            task = asyncio.create_task(self._repair(request))
            self._repairs.add(task)
            task.add_done_callback(self._repairs.discard)

    async def _repair(self, request: RepairRequest) -> None:
        history: dict[str, list[Candle]] = {}
        try:
            for timeframe, since in request.plan.items():
                history[timeframe] = await asyncio.to_thread(
                    self._warmup, request.symbol, timeframe, since, request.until
                )
        except Exception as exc:  # any REST failure: retry later, candles stay held
            log.warning("gap_repair_failed", symbol=request.symbol, error=repr(exc))
            self.core.repair_failed(request)
            return
        self.core.apply_repair(request, history)
        self._schedule_repairs()
