"""WebSocket v1 endpoint ``/ws/v1``: sessions on the ``websockets`` sans-I/O protocol, and the hub
that turns engine changes into feed messages.

The HTTP server reads the upgrade request itself (it also serves REST on the port), so each
session drives a :class:`websockets.server.ServerProtocol` directly: protocol pings are answered
by the protocol (ccxt.pro pings every 30 s), ``{"event":"ping"}`` gets ``{"event":"pong"}``.

Public feeds: ``ticker`` (snapshot on subscribe, then on every price change and every
``ticker_interval`` wall seconds), ``trade`` (``trade_snapshot`` newest first, then prints),
``book`` (one-level snapshot around the last price, then a fresh snapshot on each change),
``heartbeat`` (every ``heartbeat_interval`` seconds of the venue's clock). Private feeds after
challenge auth: ``open_orders`` (and ``open_orders_verbose``), ``fills``, ``open_positions``. A
``stale_feed`` fault silences a symbol's public feeds.

Time: what a message is dated with is the venue's clock (``Venue.now_ms``), and the clock is
brought up to date (:meth:`Venue.tick`) before the periodic messages go out, so every minute that
closed by a message's time was played and printed before it. A client that closes minutes on the
venue's time (our feed) therefore closes each minute soon after its end, before the next one is
played, as it does against the venue.

Market prints: each 1m bar played from a candle is printed on the ``trade`` feed along the
engine's path (open, the two extremes, close at the engine's leg times, the bar's volume split
in four), so trades rebuilt into 1m candles equal the charts API's candles. A ``/_sim/price``
move prints one trade at the new price (that minute's bar is later replaced by the played
candle, so the charts do not carry it); account fills are printed too but add no bar volume.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import deque
from decimal import ROUND_DOWN, Decimal
from typing import Any

import structlog
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from adapters.sim.matching import _LEG_OFFSETS_MS, candle_path
from adapters.sim.models import Bar, SimFill, SimOrder, deterministic_uuid
from adapters.sim.server import wsfeeds
from adapters.sim.server.httpio import HttpRequest
from adapters.sim.server.market import MINUTE_MS
from adapters.sim.server.venue import Venue

log = structlog.get_logger(__name__)

PUBLIC_FEEDS = frozenset({"ticker", "ticker_lite", "trade", "book"})
PRIVATE_FEEDS = frozenset({"open_orders", "open_orders_verbose", "fills", "open_positions"})
TRADE_HISTORY = 100
_QTY_STEP = Decimal("0.00000001")


class Session:
    def __init__(
        self, hub: Hub, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.hub = hub
        self.reader = reader
        self.writer = writer
        self.protocol = ServerProtocol(max_size=2**20)
        self.public: dict[str, set[str]] = {}
        self.heartbeat = False
        self.private: set[str] = set()
        self.account: str | None = None
        self.challenges: dict[str, str] = {}

    # ------------------------------------------------------------------ io
    def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.writer.write(data)
            else:
                self.writer.close()

    def send(self, message: dict[str, Any]) -> None:
        if self.protocol.state is not State.OPEN:
            return
        self.protocol.send_text(json.dumps(message, separators=(",", ":")).encode())
        self._flush()

    def drop(self, abort: bool) -> None:
        if abort:
            self.writer.transport.abort()
        else:
            self.protocol.send_close(1012, "service restart")
            self._flush()
            self.writer.close()

    async def run(self, request: HttpRequest) -> None:
        self.protocol.receive_data(request.raw_head)
        events = self.protocol.events_received()
        if not events or not isinstance(events[0], Request):
            return
        response = self.protocol.accept(events[0])
        self.protocol.send_response(response)
        self._flush()
        if response.status_code != 101:
            return
        self.send({"event": "info", "version": 1})
        buffer: list[bytes] = []
        while self.protocol.state is not State.CLOSED:
            data = await self.reader.read(65536)
            if data:
                self.protocol.receive_data(data)
            else:
                self.protocol.receive_eof()
            for event in self.protocol.events_received():
                if not isinstance(event, Frame):
                    continue
                if event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                    buffer.append(event.data)
                    if event.fin:
                        self._on_message(b"".join(buffer))
                        buffer.clear()
            self._flush()
            if not data or self.protocol.close_expected():
                break

    # ------------------------------------------------------------------ requests
    def _on_message(self, raw: bytes) -> None:
        try:
            message = json.loads(raw)
            event = message["event"]
        except (ValueError, KeyError, TypeError):
            self.send({"event": "error", "message": "Json Error"})
            return
        if event == "ping":
            self.send({"event": "pong"})
        elif event == "challenge":
            self._challenge(str(message.get("api_key", "")))
        elif event in ("subscribe", "unsubscribe"):
            self._subscription(event, message)
        else:
            self.send({"event": "error", "message": f"Unknown event {event}"})

    def _challenge(self, api_key: str) -> None:
        if api_key not in self.hub.venue.auth.keys:
            self.send(
                {"event": "alert", "message": "Failed to generate challenge: unknown api key"}
            )
            return
        challenge = str(uuid.uuid4())
        self.challenges[challenge] = api_key
        self.send({"event": "challenge", "message": challenge})

    def _subscription(self, event: str, message: dict[str, Any]) -> None:
        feed = str(message.get("feed", ""))
        done = "subscribed" if event == "subscribe" else "unsubscribed"
        if feed == "heartbeat":
            self.heartbeat = event == "subscribe"
            self.send({"event": done, "feed": feed})
        elif feed in PUBLIC_FEEDS:
            products = [str(p) for p in message.get("product_ids") or []]
            unknown = [p for p in products if p not in self.hub.venue.engine.instruments]
            if unknown or not products:
                self.send(
                    {
                        "event": "alert",
                        "message": f"Couldn't subscribe to invalid product {', '.join(unknown)}",
                    }
                )
                return
            subscribed = self.public.setdefault(feed, set())
            if event == "subscribe":
                subscribed.update(products)
            else:
                subscribed.difference_update(products)
            self.send({"event": done, "feed": feed, "product_ids": products})
            if event == "subscribe":
                for product in products:
                    self.hub.snapshot_public(self, feed, product)
        elif feed in PRIVATE_FEEDS:
            api_key = str(message.get("api_key", ""))
            challenge = str(message.get("original_challenge", ""))
            signed = str(message.get("signed_challenge", ""))
            key = None
            if self.challenges.get(challenge) == api_key:
                key = self.hub.venue.auth.verify_challenge(api_key, challenge, signed)
            if key is None or (self.account is not None and self.account != key.account_id):
                self.send(
                    {"event": "alert", "message": "Failed to subscribe to authenticated feed"}
                )
                return
            self.account = key.account_id
            ack = {k: message.get(k) for k in ("api_key", "original_challenge", "signed_challenge")}
            self.send({"event": done, "feed": feed, **ack})
            if event == "subscribe":
                self.private.add(feed)
                self.hub.snapshot_private(self, feed)
            else:
                self.private.discard(feed)
        else:
            self.send({"event": f"{event}_failed", "feed": feed})


class Hub:
    """All sessions; publishes what changed in the engine since the last publish."""

    def __init__(self, venue: Venue, ticker_interval: float = 1.0, heartbeat: float = 5.0) -> None:
        self.venue = venue
        self.sessions: set[Session] = set()
        self.ticker_interval = ticker_interval
        self.heartbeat_interval = heartbeat
        self._seq = venue.engine.last_event_seq
        self._prices = self._current_prices()
        self._trades: dict[str, deque[dict[str, Any]]] = {}
        self._trade_seq = 0
        self._book_seq = 0
        self._printed_bar = {s: self._last_closed_bar_open(s) for s in venue.engine.instruments}
        venue.on_change = self.publish

    def _current_prices(self) -> dict[str, tuple[Decimal, Decimal]]:
        engine = self.venue.engine
        return {s: (engine.last_price(s), engine.mark_price(s)) for s in engine.instruments}

    async def serve(
        self, request: HttpRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        session = Session(self, reader, writer)
        self.sessions.add(session)
        log.debug("ws_connected", peer=request.peer)
        try:
            await session.run(request)
        finally:
            self.sessions.discard(session)
            log.debug("ws_disconnected", peer=request.peer)

    def drop_all(self, abort: bool) -> int:
        sessions = list(self.sessions)
        for session in sessions:
            with contextlib.suppress(Exception):
                session.drop(abort)
        return len(sessions)

    # ------------------------------------------------------------------ snapshots
    def snapshot_public(self, session: Session, feed: str, symbol: str) -> None:
        if symbol in self.venue.faults.stale_symbols():
            return
        engine, now = self.venue.engine, self.venue.now_ms
        if feed in ("ticker", "ticker_lite"):
            message = wsfeeds.ticker(engine, symbol, now)
            session.send(message if feed == "ticker" else {**message, "feed": "ticker_lite"})
        elif feed == "trade":
            trades = list(reversed(self._trades.get(symbol, ())))
            session.send({"feed": "trade_snapshot", "product_id": symbol, "trades": trades})
        elif feed == "book":
            self._book_seq += 1
            session.send(wsfeeds.book_snapshot(engine, symbol, self._book_seq, now))

    def snapshot_private(self, session: Session, feed: str) -> None:
        engine, account = self.venue.engine, session.account
        assert account is not None
        if feed.startswith("open_orders"):
            orders = [wsfeeds.order_row(o) for o in engine.open_orders(account)]
            session.send({"feed": f"{feed}_snapshot", "account": account, "orders": orders})
        elif feed == "fills":
            rows = [self._fill_row(f) for f in engine.fills(account)[-100:]]
            session.send({"feed": "fills_snapshot", "account": account, "fills": rows})
        elif feed == "open_positions":
            session.send(self._positions(account))

    def _fill_row(self, fill: SimFill) -> dict[str, Any]:
        return wsfeeds.fill_row(fill, wsfeeds.order_type_of(fill.order_kind))

    # ------------------------------------------------------------------ publishing
    def _public(self, feed: str, symbol: str, message: dict[str, Any]) -> None:
        for session in list(self.sessions):
            if symbol in session.public.get(feed, ()):
                session.send(message)

    def _record_trade(self, message: dict[str, Any]) -> None:
        history = self._trades.setdefault(message["product_id"], deque(maxlen=TRADE_HISTORY))
        history.append(message)

    def publish(self) -> None:
        """Send what changed: private events in order, then prices and trades per symbol."""
        engine = self.venue.engine
        events = engine.events_since(self._seq)
        self._seq = engine.last_event_seq
        stale = self.venue.faults.stale_symbols()
        positions_for: set[str] = set()
        for event in events:
            if event.account_id is None:
                continue
            if event.kind == "fill":
                fill = SimFill.from_dict(event.data)
                self._private(fill.account_id, "fills", self._fills_message(fill))
                self._trade_seq += 1
                taker = fill.side.value if not fill.maker else _other(fill.side.value)
                print_ = wsfeeds.trade(
                    fill.symbol,
                    uid=fill.fill_id,
                    side=taker,
                    seq=self._trade_seq,
                    ts=fill.ts,
                    qty=fill.qty,
                    price=fill.price,
                )
                self._record_trade(print_)
                if fill.symbol not in stale:
                    self._public("trade", fill.symbol, print_)
            elif event.kind == "position":
                positions_for.add(event.account_id)
            elif event.kind == "order_cancelled":
                order = SimOrder.from_dict(event.data)
                message = {
                    "feed": "open_orders",
                    "order_id": order.order_id,
                    "is_cancel": True,
                    "reason": order.reason,
                }
                self._private(order.account_id, "open_orders", message)
            elif event.kind in (
                "order_accepted",
                "order_edited",
                "order_updated",
                "order_triggered",
                "order_reduced",
            ):
                order = SimOrder.from_dict(event.data)
                full = not order.is_open
                message = {
                    "feed": "open_orders",
                    "order": wsfeeds.order_row(order),
                    "is_cancel": full,
                    "reason": order.reason,
                }
                self._private(order.account_id, "open_orders", message)
        for account in positions_for:
            self._private(account, "open_positions", self._positions(account))
        self._publish_bar_prints(stale)
        self._publish_prices(stale)

    def _closed_bars_since(self, symbol: str, after: int) -> list[Bar]:
        """Bars that opened after ``after`` and whose minute is over, oldest first."""
        bars = self.venue.engine._bars[symbol]  # newest last; walk back only over the new ones
        now = self.venue.now_ms
        out: list[Bar] = []
        for bar in reversed(bars):
            if bar.open_time <= after:
                break
            if bar.open_time + MINUTE_MS <= now:
                out.append(bar)
        out.reverse()
        return out

    def _last_closed_bar_open(self, symbol: str) -> int:
        closed = self._closed_bars_since(symbol, -1)
        return closed[-1].open_time if closed else -1

    def _publish_bar_prints(self, stale: set[str]) -> None:
        """Print each newly closed bar along its path (module docstring); the last print stands
        for the current last price, so no extra market print follows for it."""
        engine = self.venue.engine
        for symbol in engine.instruments:
            bars = self._closed_bars_since(symbol, self._printed_bar[symbol])
            if not bars:
                continue
            self._printed_bar[symbol] = bars[-1].open_time
            for bar in bars:
                for print_ in self._bar_prints(symbol, bar):
                    self._record_trade(print_)
                    if symbol not in stale:
                        self._public("trade", symbol, print_)
            last = engine.last_price(symbol)
            if bars[-1].volume > 0 and bars[-1].close == last:
                self._prices[symbol] = (last, self._prices.get(symbol, (last, last))[1])

    def _bar_prints(self, symbol: str, bar: Bar) -> list[dict[str, Any]]:
        if bar.volume <= 0:
            return []  # no trades: nothing to print (and no candle to rebuild)
        path = candle_path(bar.open, bar.high, bar.low, bar.close)
        part = (bar.volume / 4).quantize(_QTY_STEP, rounding=ROUND_DOWN)
        sizes = [part, part, part, bar.volume - 3 * part]
        seed = self.venue.engine.seed
        prints = []
        for offset, price, qty in zip(_LEG_OFFSETS_MS, path, sizes, strict=True):
            self._trade_seq += 1
            prints.append(
                wsfeeds.trade(
                    symbol,
                    uid=deterministic_uuid(seed, f"print-{symbol}", self._trade_seq),
                    side="buy" if price >= bar.open else "sell",
                    seq=self._trade_seq,
                    ts=bar.open_time + offset,
                    qty=qty,
                    price=price,
                )
            )
        return prints

    def _positions(self, account: str) -> dict[str, Any]:
        engine = self.venue.engine
        return wsfeeds.positions_message(engine, account, engine.last_event_seq, self.venue.now_ms)

    def _fills_message(self, fill: SimFill) -> dict[str, Any]:
        return {"feed": "fills", "username": fill.account_id, "fills": [self._fill_row(fill)]}

    def _private(self, account: str, feed: str, message: dict[str, Any]) -> None:
        for session in list(self.sessions):
            if session.account == account and (
                feed in session.private or f"{feed}_verbose" in session.private
            ):
                session.send(message)

    def _publish_prices(self, stale: set[str]) -> None:
        engine, now = self.venue.engine, self.venue.now_ms
        current = self._current_prices()
        for symbol, (last, mark) in current.items():
            prev_last, prev_mark = self._prices.get(symbol, (last, mark))
            if (last, mark) == (prev_last, prev_mark):
                continue
            self._prices[symbol] = (last, mark)
            if last != prev_last:
                self._trade_seq += 1
                print_ = wsfeeds.market_trade(engine, symbol, prev_last, self._trade_seq)
                self._record_trade(print_)
            if symbol in stale:
                continue
            if last != prev_last:
                self._public("trade", symbol, print_)
            self._public("ticker", symbol, wsfeeds.ticker(engine, symbol, now))
            self._book_seq += 1
            book = wsfeeds.book_snapshot(engine, symbol, self._book_seq, now)
            self._public("book", symbol, book)

    def periodic_tickers(self) -> None:
        stale = self.venue.faults.stale_symbols()
        engine, now = self.venue.engine, self.venue.now_ms
        for symbol in engine.instruments:
            if symbol not in stale:
                self._public("ticker", symbol, wsfeeds.ticker(engine, symbol, now))

    def heartbeat_period_s(self) -> float:
        """Wall seconds between heartbeats: ``heartbeat_interval`` is in the venue's seconds (the
        venue's own heartbeat comes every few seconds of its clock), so a faster clock beats
        faster; at speed 0 (time moved by the admin API) it is taken as wall seconds."""
        speed = self.venue.config.speed
        return self.heartbeat_interval / speed if speed > 0 else self.heartbeat_interval

    def heartbeat(self) -> None:
        message = {"feed": "heartbeat", "time": self.venue.now_ms}
        for session in list(self.sessions):
            if session.heartbeat:
                session.send(message)


def _other(side: str) -> str:
    return "sell" if side == "buy" else "buy"
