"""ccxt's unified dicts to domain models; nothing ccxt-shaped leaves :mod:`adapters.exchange`."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ccxt.base.decimal_to_precision import DECIMAL_PLACES

from domain.models import (
    Candle,
    Fill,
    Instrument,
    Order,
    OrderStatus,
    OrderType,
    PositionSide,
    PositionSnapshot,
    Side,
)
from domain.ports import order_origin
from domain.precision import to_decimal

CCXT_STATUS = {
    "open": OrderStatus.ACKED,
    "closed": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELLED,
    "cancelled": OrderStatus.CANCELLED,
    "rejected": OrderStatus.REJECTED,
    "expired": OrderStatus.CANCELLED,
}
VENUE_STATUS = {  # orders/status rows
    "ENTERED_BOOK": OrderStatus.ACKED,
    "UNTOUCHED": OrderStatus.ACKED,
    "PARTIALLY_FILLED": OrderStatus.ACKED,
    "TRIGGER_PLACED": OrderStatus.ACKED,
    "FULLY_EXECUTED": OrderStatus.FILLED,
    "CANCELLED": OrderStatus.CANCELLED,
    "REJECTED": OrderStatus.REJECTED,
}
CCXT_TYPES = {
    "limit": OrderType.LIMIT,
    "market": OrderType.MARKET,
    "stop": OrderType.STOP,
    "stop_market": OrderType.STOP,
    "take_profit": OrderType.TAKE_PROFIT,
}


def dec(value: Any) -> Decimal:
    """A ccxt number (float, int, str or None) as an exact Decimal; None is 0."""
    return Decimal(0) if value is None else to_decimal(value)


def marked_equity(balance: dict[str, Any], row: dict[str, Any]) -> tuple[Decimal, Decimal]:
    """The account's equity with open positions at the mark, and their unrealized PnL.

    ccxt's unified balance (``row``: the settlement currency's) holds the collateral, which
    leaves out what open positions have won or lost. Kraken Futures' multi-collateral account
    (``flex``, the one ccxt reads) states it in the raw answer. Equity is its ``marginEquity``:
    the collateral after the venue's haircuts plus the unrealized PnL, what the venue itself
    margins against, so a coin held as collateral never sizes trades at its full value
    (``portfolioValue`` would count it whole; it is the fallback). Without either (other venues)
    the unified total stands, with no PnL known.
    """
    info = balance.get("info")
    accounts = info.get("accounts") if isinstance(info, dict) else None
    flex = accounts.get("flex") if isinstance(accounts, dict) else None
    if isinstance(flex, dict):
        equity = flex.get("marginEquity", flex.get("portfolioValue"))
        if equity is not None:
            return dec(equity), dec(flex.get("totalUnrealized") or 0)
    return dec(row.get("total")), Decimal(0)


def opt_dec(value: Any) -> Decimal | None:
    return None if value is None else to_decimal(value)


def instrument_from_market(market: dict[str, Any], precision_mode: int) -> Instrument | None:
    """Linear perpetual swaps only; ``None`` for anything else."""
    if not (market.get("swap") and market.get("linear") and market.get("active", True)):
        return None
    precision = market.get("precision") or {}
    if precision.get("price") is None or precision.get("amount") is None:
        return None

    def step(value: Any) -> Decimal:
        if precision_mode == DECIMAL_PLACES:
            return Decimal(1).scaleb(-int(value))
        return to_decimal(value)

    lot = step(precision["amount"])
    limits = market.get("limits") or {}
    min_amount = (limits.get("amount") or {}).get("min")
    max_leverage = (limits.get("leverage") or {}).get("max")
    return Instrument(
        symbol=market["symbol"],
        base=market["base"],
        quote=market["quote"],
        tick_size=step(precision["price"]),
        lot_size=lot,
        min_size=max(lot, to_decimal(min_amount)) if min_amount else lot,
        contract_size=to_decimal(market.get("contractSize") or 1),
        max_leverage=to_decimal(max_leverage) if max_leverage else Decimal(50),
        unified_symbol=market["symbol"],
    )


def order_from_ccxt(raw: dict[str, Any]) -> Order:
    info = raw.get("info") or {}
    kind = CCXT_TYPES.get(str(raw.get("type") or info.get("orderType") or "market"))
    if kind is None or (kind is OrderType.MARKET and raw.get("triggerPrice") is not None):
        kind = OrderType.STOP if raw.get("triggerPrice") is not None else OrderType.MARKET
    reduce_only = bool(raw.get("reduceOnly"))
    client_id = raw.get("clientOrderId")
    role, position_id = order_origin(client_id, kind, reduce_only)
    return Order(
        client_id=client_id or "",
        symbol=raw["symbol"],
        role=role,
        type=kind,
        side=Side(raw["side"]),
        qty=dec(raw.get("amount")),
        reduce_only=reduce_only,
        status=CCXT_STATUS.get(str(raw.get("status")), OrderStatus.ACKED),
        price=opt_dec(raw.get("price")),
        trigger_price=opt_dec(raw.get("triggerPrice")),
        exchange_id=raw.get("id"),
        position_id=position_id,
        filled_qty=dec(raw.get("filled")),
    )


def order_from_status_row(row: dict[str, Any], symbol: str) -> Order:
    """A row of the venue's ``orders/status`` (ccxt leaves these raw)."""
    body = row.get("order") or {}
    trigger = (body.get("priceTriggerOptions") or {}).get("triggerPrice")
    kind = (
        OrderType.STOP
        if trigger is not None
        else (OrderType.LIMIT if body.get("limitPrice") is not None else OrderType.MARKET)
    )
    reduce_only = bool(body.get("reduceOnly"))
    client_id = body.get("cliOrdId") or ""
    role, position_id = order_origin(client_id, kind, reduce_only)
    if role.value == "tp":
        kind = OrderType.TAKE_PROFIT
    return Order(
        client_id=client_id,
        symbol=symbol,
        role=role,
        type=kind,
        side=Side(str(body.get("side", "buy")).lower()),
        qty=dec(body.get("quantity")),
        reduce_only=reduce_only,
        status=VENUE_STATUS.get(str(row.get("status")), OrderStatus.ACKED),
        price=opt_dec(body.get("limitPrice")),
        trigger_price=opt_dec(trigger),
        exchange_id=body.get("orderId"),
        position_id=position_id,
        filled_qty=dec(body.get("filled")),
    )


def fill_from_trade(raw: dict[str, Any]) -> Fill:
    """A ccxt trade as a fill; the venue's own fee is preferred to ccxt's estimate."""
    info = raw.get("info") or {}
    fee = info.get("fee_paid")
    fee_currency = info.get("fee_currency")
    if fee is None and raw.get("fee"):
        fee, fee_currency = raw["fee"].get("cost"), raw["fee"].get("currency")
    return Fill(
        fill_id=str(raw["id"]),
        symbol=raw["symbol"],
        side=Side(raw["side"]),
        qty=dec(raw.get("amount")),
        price=dec(raw.get("price")),
        ts=int(raw.get("timestamp") or 0),
        client_id=info.get("cliOrdId") or raw.get("clientOrderId"),
        exchange_order_id=raw.get("order"),
        fee=dec(fee),
        fee_currency=str(fee_currency or ""),
        maker=raw.get("takerOrMaker") == "maker",
    )


def snapshot_from_position(raw: dict[str, Any]) -> PositionSnapshot | None:
    qty = dec(raw.get("contracts"))
    if qty == 0:
        return None
    return PositionSnapshot(
        symbol=raw["symbol"],
        side=PositionSide(raw["side"]),
        qty=abs(qty),
        entry_price=dec(raw.get("entryPrice")),
        mark_price=opt_dec(raw.get("markPrice")),
        unrealized_pnl=opt_dec(raw.get("unrealizedPnl")),
        liquidation_price=opt_dec(raw.get("liquidationPrice")),
        leverage=opt_dec(raw.get("leverage")),
    )


def candle_from_row(symbol: str, timeframe: str, row: list[Any]) -> Candle:
    return Candle(
        symbol=symbol,
        timeframe=timeframe,
        open_time=int(row[0]),
        open=float(row[1]),
        high=float(row[2]),
        low=float(row[3]),
        close=float(row[4]),
        volume=float(row[5] or 0.0),
    )
