"""The production exchange port on ccxt (``krakenfutures`` first, any ccxt id by config).

Two ccxt clients with their own HTTP sessions and locks: one for ordinary traffic and one for
urgent traffic (stops, flattening exits and the look-ups that resolve them), so protection
never waits behind a slow read. Both draw from one :class:`RequestBudget`, where urgent calls may
use a reserve. ccxt's own limiter is off: the budget replaces it.

Reads retry ``Temporary`` failures with back-off and jitter; writes are never retried here
(see :mod:`domain.ports`). Only linear perpetual swaps are offered as instruments.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import ccxt
import structlog

from adapters.crashpoints import crash_point
from adapters.exchange.budget import RequestBudget
from adapters.exchange.convert import (
    candle_from_row,
    dec,
    fill_from_trade,
    instrument_from_market,
    marked_equity,
    order_from_ccxt,
    order_from_status_row,
    snapshot_from_position,
)
from adapters.exchange.errors import translate
from adapters.retry import RateLimited, RetryPolicy, read_with_retry
from domain.errors import PrecisionError, Temporary
from domain.models import (
    AccountState,
    Candle,
    Fill,
    Instrument,
    Order,
    OrderRole,
    OrderStatus,
    OrderType,
    PositionSnapshot,
)
from domain.ports import check_order_grid, order_origin
from domain.timeframes import TIMEFRAME_MS

T = TypeVar("T")
log = structlog.get_logger(__name__)
URGENT_ROLES = frozenset({OrderRole.STOP, OrderRole.EXIT})
OHLCV_PAGE = 2000


def point_urls_at(urls: dict[str, Any], base_url: str) -> None:
    """Replace scheme and host of every REST url (keeping paths), e.g. for an emulator."""
    base = urlsplit(base_url)
    for key, value in list(urls.items()):
        if isinstance(value, str) and value.startswith("http"):
            parts = urlsplit(value)
            urls[key] = urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))


class CcxtExchange:
    """:class:`domain.ports.ExchangePort` over a ccxt exchange class."""

    def __init__(
        self,
        exchange_id: str,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        api_url: str | None = None,
        sandbox: bool = False,
        timeout_ms: int = 10_000,
        budget: RequestBudget | None = None,
        retry: RetryPolicy | None = None,
        stop_trigger: str = "last",
        client_factory: Callable[[dict[str, Any]], ccxt.Exchange] | None = None,
    ) -> None:
        if not hasattr(ccxt, exchange_id):
            raise ValueError(f"unknown ccxt exchange id {exchange_id!r}")
        self._id = exchange_id
        self._secrets = tuple(s for s in (api_key, api_secret) if s)
        options = {
            "apiKey": api_key or "",
            "secret": api_secret or "",
            "enableRateLimit": False,
            "timeout": timeout_ms,
        }
        factory = client_factory or getattr(ccxt, exchange_id)
        self._normal = factory(dict(options))
        self._urgent = factory(dict(options))
        for client in (self._normal, self._urgent):
            if sandbox:
                client.set_sandbox_mode(True)
            if api_url:
                point_urls_at(client.urls["api"], api_url)
        self._locks = {False: threading.Lock(), True: threading.Lock()}
        self._budget = budget or RequestBudget()
        self._retry = retry or RetryPolicy()
        self._stop_trigger = stop_trigger
        self._instruments: dict[str, Instrument] = {}

    @property
    def name(self) -> str:
        return self._id

    # ------------------------------------------------------------------ plumbing

    def _call(
        self, endpoint: str, fn: Callable[[ccxt.Exchange], T], *, urgent: bool, write: bool
    ) -> T:
        """One venue call: budget, the lane's lock, error translation."""
        waited = self._budget.acquire(endpoint, urgent=urgent)
        client = self._urgent if urgent else self._normal
        with self._locks[urgent]:
            started = time.perf_counter()
            try:
                result = fn(client)
            except Exception as err:
                translated = translate(err, write=write, secrets=self._secrets)
                if isinstance(translated, RateLimited):
                    self._budget.rate_limited()
                log.warning(
                    "exchange_call_failed",
                    endpoint=endpoint,
                    outcome=type(translated).__name__,
                    error=str(translated),
                )
                raise translated from None
            log.debug(
                "exchange_call",
                endpoint=endpoint,
                urgent=urgent,
                ms=round((time.perf_counter() - started) * 1000, 2),
                budget_wait_ms=round(waited * 1000, 2),
            )
            return result

    def _read(self, endpoint: str, fn: Callable[[ccxt.Exchange], T], *, urgent: bool = False) -> T:
        return read_with_retry(
            endpoint, lambda: self._call(endpoint, fn, urgent=urgent, write=False), self._retry
        )

    def _market_id(self, symbol: str) -> str:
        return str(self._normal.market(symbol)["id"])

    # ------------------------------------------------------------------ reference data

    def instruments(self) -> Mapping[str, Instrument]:
        if not self._instruments:
            markets = self._read("instruments", lambda c: c.load_markets())
            self._urgent.set_markets(self._normal.markets, self._normal.currencies)
            mode = self._normal.precisionMode
            self._instruments = {
                inst.symbol: inst
                for inst in (instrument_from_market(m, mode) for m in markets.values())
                if inst is not None
            }
            log.info("instruments_loaded", exchange=self._id, count=len(self._instruments))
            self._warm_urgent_lane(next(iter(self._instruments), None))
        return self._instruments

    def _warm_urgent_lane(self, symbol: str | None) -> None:
        """Open the urgent lane's connection now, so the first stop never pays for it."""
        if symbol is None:
            return
        try:
            self._call("tickers", lambda c: c.fetch_ticker(symbol), urgent=True, write=False)
        except Temporary as err:
            log.debug("urgent_lane_warmup_failed", error=str(err))

    def venue_ids(self) -> dict[str, str]:
        """Unified symbol -> the venue's own id (``BTC/USD:USD`` -> ``PF_XBTUSD``), for feeds."""
        return {symbol: self._market_id(symbol) for symbol in self.instruments()}

    def _instrument(self, symbol: str) -> Instrument:
        instruments = self.instruments()
        if symbol not in instruments:
            raise PrecisionError(f"{symbol} is not a tradable linear perpetual on {self._id}")
        return instruments[symbol]

    # ------------------------------------------------------------------ account

    def account(self) -> AccountState:
        balance = self._read("accounts", lambda c: c.fetch_balance())
        settle = next(
            (c for c in ("USD", "USDT", "USDC") if isinstance(balance.get(c), dict)), None
        )
        if settle is None:
            raise Temporary(f"{self._id}: balance has no USD-like settlement currency")
        row = balance[settle]
        equity, unrealized = marked_equity(balance, row)
        return AccountState(
            currency=settle,
            equity=equity,
            available_margin=dec(row.get("free")),
            used_margin=dec(row.get("used")),
            unrealized_pnl=unrealized,
            ts=int(balance.get("timestamp") or 0),
        )

    def positions(self) -> list[PositionSnapshot]:
        self.instruments()
        rows = self._read("openpositions", lambda c: c.fetch_positions())
        return [p for p in (snapshot_from_position(r) for r in rows) if p is not None]

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        self.instruments()
        rows = self._read("openorders", lambda c: c.fetch_open_orders(symbol))
        return [order_from_ccxt(r) for r in rows]

    def fills(self, *, since: int | None = None, symbol: str | None = None) -> list[Fill]:
        self.instruments()
        rows = self._read("fills", lambda c: c.fetch_my_trades(symbol, since))
        fills = [fill_from_trade(r) for r in rows]
        return sorted(
            (f for f in fills if since is None or f.ts >= since), key=lambda f: (f.ts, f.fill_id)
        )

    # ------------------------------------------------------------------ orders

    def place_order(self, order: Order) -> Order:
        inst = self._instrument(order.symbol)
        check_order_grid(order, inst)
        params: dict[str, Any] = {"clientOrderId": order.client_id}
        if order.reduce_only:
            params["reduceOnly"] = True
        kind = "limit" if order.type is OrderType.LIMIT else "market"
        price = float(order.price) if order.price is not None else None
        if order.trigger_price is not None:
            key = "triggerPrice" if order.type is OrderType.STOP else "takeProfitPrice"
            signal = order.trigger_signal or self._stop_trigger
            params.update({key: float(order.trigger_price), "triggerSignal": signal})
        urgent = order.role in URGENT_ROLES
        side = order.side.value
        amount = float(order.qty)
        crash_point(f"before_send:{order.role.value}")  # test hook, inert unless armed
        raw = self._call(
            "sendorder",
            lambda c: c.create_order(order.symbol, kind, side, amount, price, params),
            urgent=urgent,
            write=True,
        )
        crash_point(f"after_send:{order.role.value}")
        status = order_from_ccxt(raw).status
        log.info(
            "order_placed",
            client_id=order.client_id,
            exchange_id=raw.get("id"),
            symbol=order.symbol,
            role=order.role.value,
            status=status.value,
        )
        return Order(
            client_id=order.client_id,
            symbol=order.symbol,
            role=order.role,
            type=order.type,
            side=order.side,
            qty=order.qty,
            reduce_only=order.reduce_only,
            status=status,
            price=order.price,
            trigger_price=order.trigger_price,
            exchange_id=raw.get("id"),
            position_id=order.position_id,
            filled_qty=dec(raw.get("filled")),
        )

    def cancel_order(
        self,
        symbol: str,
        *,
        exchange_id: str | None = None,
        client_id: str | None = None,
        urgent: bool = False,
    ) -> Order | None:
        if exchange_id is None:
            if client_id is None:
                raise ValueError("cancel_order needs an exchange id or a client id")
            found = self.order_by_client_id(symbol, client_id, urgent=urgent)
            if found is None or found.status is not OrderStatus.ACKED or not found.exchange_id:
                return None
            exchange_id = found.exchange_id
        target = exchange_id
        raw = self._call(
            "cancelorder",
            lambda c: _missing_ok(c.cancel_order, target, symbol),
            urgent=urgent,
            write=True,
        )
        if raw is None:  # the venue says it is not open: filled, cancelled or never there
            return None
        cancelled = order_from_ccxt(raw)
        log.info("order_cancelled", exchange_id=target, client_id=cancelled.client_id)
        return cancelled

    def order_by_client_id(
        self, symbol: str, client_id: str, *, urgent: bool = False
    ) -> Order | None:
        self.instruments()
        for order in self._read("openorders", lambda c: c.fetch_open_orders(symbol), urgent=urgent):
            if order.get("clientOrderId") == client_id:
                return order_from_ccxt(order)
        status = self._read(
            "orders/status",
            lambda c: c.privateGetOrdersStatus({"cliOrdIds": client_id}),
            urgent=urgent,
        )
        for row in status.get("orders") or []:
            if (row.get("order") or {}).get("cliOrdId") == client_id:
                return order_from_status_row(row, symbol)
        trades = self._read("fills", lambda c: c.fetch_my_trades(symbol), urgent=urgent)
        mine = [t for t in trades if (t.get("info") or {}).get("cliOrdId") == client_id]
        if not mine:
            return None
        first = fill_from_trade(mine[0])
        role, position_id = order_origin(client_id, OrderType.MARKET, False)
        return Order(
            client_id=client_id,
            symbol=symbol,
            role=role,
            type=OrderType.MARKET,
            side=first.side,
            qty=sum((dec(t.get("amount")) for t in mine), Decimal(0)),
            reduce_only=role.reduces,
            status=OrderStatus.FILLED,
            exchange_id=first.exchange_order_id,
            position_id=position_id,
            filled_qty=sum((dec(t.get("amount")) for t in mine), Decimal(0)),
        )

    # ------------------------------------------------------------------ market data, settings

    def ohlcv(
        self, symbol: str, timeframe: str, since: int, until: int | None = None
    ) -> list[Candle]:
        """Pages forward from ``since``, which must lie inside the venue's history (a window
        with no candles ends the paging). With no ``until`` the newest candle may still be
        forming at the venue, so it is left out; the live feed builds that one."""
        step = TIMEFRAME_MS[timeframe]
        self.instruments()
        out: list[Candle] = []
        cursor = since
        while True:
            rows = self._read(
                "charts",
                lambda c, start=cursor: c.fetch_ohlcv(symbol, timeframe, start, OHLCV_PAGE),
            )
            fresh = [r for r in rows if r[0] >= cursor and (until is None or r[0] + step <= until)]
            if not fresh:
                break
            out.extend(candle_from_row(symbol, timeframe, r) for r in fresh)
            cursor = int(fresh[-1][0]) + step
            if len(rows) < OHLCV_PAGE or (until is not None and cursor + step > until):
                break
        if until is None and out:
            out.pop()
        return out

    def set_leverage(self, symbol: str, leverage: Decimal) -> None:
        self._instrument(symbol)
        self._call(
            "leveragepreferences",
            lambda c: c.set_leverage(int(leverage), symbol),
            urgent=False,
            write=True,
        )


def _missing_ok(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any] | None:
    """Call ``fn``; ``None`` instead of ccxt's ``OrderNotFound``."""
    try:
        return fn(*args)
    except ccxt.OrderNotFound:
        return None


__all__ = ["CcxtExchange", "RateLimited", "point_urls_at"]
