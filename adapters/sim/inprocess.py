"""The exchange port over the simulated matching engine, in process: no network, no server.

For backtests and unit tests. One :class:`InProcessExchange` serves one engine account; symbols
on the port are unified (``BTC/USD:USD``) and mapped to the engine's venue ids (``PF_XBTUSD``).

Decisions:

- Errors: an unknown account -> ``Fatal`` on every call (the in-process form of bad
  credentials); an unknown symbol or timeframe -> ``Rejected``; an engine rejection ->
  ``Rejected`` with the venue status as ``reason``, except ``clientOrderIdAlreadyExist``, which
  means an earlier send with this client id was accepted and is an ``AmbiguousOutcome``.
- ``place_order`` checks the account, the symbol and the grid (quantity on the lot and at least
  the minimum size; the limit price of non-market orders and the trigger of stop/take-profit
  orders positive and on the tick) before faults or the engine see the order. A market order's
  ``price`` and a limit order's ``trigger_price`` are not sent, so they are not checked.
- Reads run through :func:`adapters.retry.read_with_retry`; writes are never retried.
- Faults (:mod:`adapters.sim.inprocess_faults`) act where a network would: after the local
  checks, before (or, for ``timeout_after_accept``, after) the engine.
- ``urgent`` is accepted and ignored: nothing here queues, calls only wait for a short lock.
- Thread safety: every engine access holds :attr:`InProcessExchange.lock` (re-entrant). Code
  that drives the same engine (a backtest feeding candles) must hold it too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from decimal import Decimal
from typing import TypeVar

import structlog

from adapters.retry import RateLimited, RetryPolicy, read_with_retry
from adapters.sim.engine import SimEngine
from adapters.sim.inprocess_faults import (
    RATE_LIMIT_READ,
    RATE_LIMIT_WRITE,
    READ_5XX,
    REJECT_STOP,
    TIMEOUT_AFTER_ACCEPT,
    TIMEOUT_BEFORE_ACCEPT,
    FaultPlan,
)
from adapters.sim.inprocess_mapping import (
    SEND_KINDS,
    aggregate,
    order_from_fills,
    to_fill,
    to_order,
)
from adapters.sim.models import SendResult, SimOrder, Status
from domain.errors import AmbiguousOutcome, Fatal, Rejected, Temporary
from domain.models import (
    AccountState,
    Candle,
    Fill,
    Instrument,
    Order,
    OrderType,
    PositionSnapshot,
)
from domain.ports import check_order_grid
from domain.timeframes import TIMEFRAME_MS

T = TypeVar("T")
log = structlog.get_logger(__name__)

_TRIGGER_TYPES = frozenset({OrderType.STOP, OrderType.TAKE_PROFIT})
_SEND_FAULTS = (TIMEOUT_AFTER_ACCEPT, TIMEOUT_BEFORE_ACCEPT, RATE_LIMIT_WRITE)


class InProcessExchange:
    """:class:`domain.ports.ExchangePort` over a :class:`SimEngine` account (module docstring)."""

    def __init__(
        self,
        engine: SimEngine,
        account_id: str,
        *,
        retry: RetryPolicy | None = None,
        faults: FaultPlan | None = None,
        lock: threading.RLock | None = None,
    ) -> None:
        self.engine = engine
        self.account_id = account_id
        self.retry = RetryPolicy() if retry is None else retry
        self.faults = FaultPlan() if faults is None else faults
        self.lock = threading.RLock() if lock is None else lock
        self._venue: dict[str, str] = {}
        self._unified: dict[str, str] = {}
        self._instruments: dict[str, Instrument] = {}
        for venue_symbol, spec in engine.instruments.items():
            unified = spec.instrument.unified_symbol
            self._venue[unified] = venue_symbol
            self._unified[venue_symbol] = unified
            self._instruments[unified] = replace(spec.instrument, symbol=unified)

    @property
    def name(self) -> str:
        return "sim"

    # ------------------------------------------------------------------ reads
    def instruments(self) -> Mapping[str, Instrument]:
        return dict(self._instruments)

    def account(self) -> AccountState:
        return self._read("account", lambda: self.engine.account_state(self.account_id))

    def positions(self) -> list[PositionSnapshot]:
        def fetch() -> list[PositionSnapshot]:
            if self.faults.take([READ_5XX], "positions"):
                raise Temporary("positions: HTTP 503 Service Unavailable")
            return self.engine.position_snapshots(self.account_id, self._unified)

        return self._read("positions", fetch)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        venue = None if symbol is None else self._venue_symbol(symbol)

        def fetch() -> list[Order]:
            if self.faults.take([RATE_LIMIT_READ], "open_orders"):
                raise RateLimited("open_orders: apiLimitExceeded")
            return [self._order(o) for o in self.engine.open_orders(self.account_id, venue)]

        return self._read("open_orders", fetch)

    def order_by_client_id(
        self, symbol: str, client_id: str, *, urgent: bool = False
    ) -> Order | None:
        """Open order first, then the latest one the engine retains, then one synthesized from
        fills; only orders of ``symbol`` count."""
        venue = self._venue_symbol(symbol)

        def fetch() -> Order | None:
            found = self._orders_by_client_id(venue, client_id)
            if found:
                open_ = [o for o in found if o.is_open]
                return self._order((open_ or found)[-1])
            fills = [
                f
                for f in self.engine.fills(self.account_id)
                if f.cli_ord_id == client_id and f.symbol == venue
            ]
            return order_from_fills(fills, symbol, client_id) if fills else None

        return self._read("order_by_client_id", fetch)

    def fills(self, *, since: int | None = None, symbol: str | None = None) -> list[Fill]:
        venue = None if symbol is None else self._venue_symbol(symbol)

        def fetch() -> list[Fill]:
            return [
                to_fill(f, self._unified[f.symbol])
                for f in self.engine.fills(self.account_id, since_ts=since)
                if venue is None or f.symbol == venue
            ]

        return self._read("fills", fetch)

    def ohlcv(
        self, symbol: str, timeframe: str, since: int, until: int | None = None
    ) -> list[Candle]:
        venue = self._venue_symbol(symbol)
        if timeframe not in TIMEFRAME_MS:
            raise Rejected(f"unsupported timeframe {timeframe!r}", reason="invalidArgument")

        def fetch() -> list[Candle]:
            bars = self.engine.ohlcv(venue, since=since)
            return aggregate(bars, symbol, timeframe, now=self.engine.now, since=since, until=until)

        return self._read("ohlcv", fetch)

    # ------------------------------------------------------------------ writes
    def place_order(self, order: Order) -> Order:
        venue = self._venue_symbol(order.symbol)
        check_order_grid(order, self._instruments[order.symbol])
        kind = SEND_KINDS[order.type]
        with self.lock:
            self._require_account()
            is_trigger = order.type in _TRIGGER_TYPES
            fault = self.faults.take(
                (*_SEND_FAULTS, REJECT_STOP) if is_trigger else _SEND_FAULTS, "place_order"
            )
            if fault == TIMEOUT_BEFORE_ACCEPT:
                raise AmbiguousOutcome(f"{order.client_id}: timed out before an answer")
            if fault == RATE_LIMIT_WRITE:
                raise RateLimited(f"{order.client_id}: apiLimitExceeded")
            if fault == REJECT_STOP:
                raise Rejected(f"{order.client_id}: invalidPrice", reason=Status.INVALID_PRICE)
            result = self.engine.send_order(
                self.account_id,
                venue,
                order.side,
                kind,
                order.qty,
                limit_price=None if order.type is OrderType.MARKET else order.price,
                stop_price=order.trigger_price if order.type in _TRIGGER_TYPES else None,
                trigger_signal=order.trigger_signal or "last",
                reduce_only=order.reduce_only,
                cli_ord_id=order.client_id or None,
            )
            if fault == TIMEOUT_AFTER_ACCEPT:
                raise AmbiguousOutcome(f"{order.client_id}: timed out after sending")
            return self._sent(order, result)

    def cancel_order(
        self,
        symbol: str,
        *,
        exchange_id: str | None = None,
        client_id: str | None = None,
        urgent: bool = False,
    ) -> Order | None:
        """Cancel by venue id (preferred when both are given) or client id; an order of another
        symbol is treated as not open."""
        if exchange_id is None and client_id is None:
            raise ValueError("cancel_order needs exchange_id or client_id")
        venue = self._venue_symbol(symbol)
        with self.lock:
            self._require_account()
            if exchange_id is not None:
                target = self.engine.get_order(exchange_id)
                if target is not None and target.account_id != self.account_id:
                    target = None
            else:
                assert client_id is not None
                found = self._orders_by_client_id(venue, client_id)
                target = next((o for o in reversed(found) if o.is_open), None)
            if target is None or target.symbol != venue or not target.is_open:
                return None
            result = self.engine.cancel_order(self.account_id, target.order_id)
            if result.status != Status.CANCELLED or result.order is None:
                return None
            return self._order(result.order)

    def set_leverage(self, symbol: str, leverage: Decimal) -> None:
        venue = self._venue_symbol(symbol)
        with self.lock:
            self._require_account()
            try:
                self.engine.set_leverage(self.account_id, venue, leverage)
            except ValueError as err:
                raise Rejected(str(err), reason=Status.INVALID_ARGUMENT) from err

    # ------------------------------------------------------------------ internals
    def _read(self, what: str, fetch: Callable[[], T]) -> T:
        def attempt() -> T:
            with self.lock:
                self._require_account()
                return fetch()

        return read_with_retry(what, attempt, self.retry)

    def _require_account(self) -> None:
        if not self.engine.has_account(self.account_id):
            raise Fatal(f"sim: unknown account {self.account_id!r}")

    def _venue_symbol(self, symbol: str) -> str:
        venue = self._venue.get(symbol)
        if venue is None:
            raise Rejected(f"unknown symbol {symbol!r}", reason=Status.CONTRACT_NOT_FOUND)
        return venue

    def _orders_by_client_id(self, venue: str, client_id: str) -> list[SimOrder]:
        return [
            o
            for o in self.engine.orders_by_cli_ord_id(self.account_id, client_id)
            if o.symbol == venue
        ]

    def _order(self, order: SimOrder) -> Order:
        return to_order(order, self._unified[order.symbol])

    def _sent(self, order: Order, result: SendResult) -> Order:
        if result.accepted and result.order is not None:
            return self._order(result.order)
        status = result.status
        what = f"{order.symbol} {order.side} {order.type} {order.qty} ({order.client_id})"
        if status == Status.DUPLICATE_CLI_ORD_ID:
            raise AmbiguousOutcome(
                f"{what}: an earlier send with this client id was accepted; "
                "resolve by looking it up"
            )
        if status == Status.INVALID_ACCOUNT:
            raise Fatal(f"sim: unknown account {self.account_id!r}")
        log.info("order_rejected", client_id=order.client_id, status=status)
        raise Rejected(f"{what}: {status}", reason=status)
