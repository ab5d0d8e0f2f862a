"""WebSocket v1 message shapes (API-FACTS.md section 4), rendered from engine objects and events.

Decisions: ``open_orders`` rows carry the **remaining** quantity in ``qty``; a full fill is an
``order`` object with ``qty`` 0, ``is_cancel: true`` and reason ``full_fill`` (the venue's real
shape); a cancel is the bare ``{order_id, is_cancel: true, reason}`` shape. Market trades on the
``trade`` feed are synthetic: one print at each new last price (taker side from the direction
of the move, size a quarter of the current 1m bar's volume, at least one lot), plus the
account fills as prints.

Messages that say *when* they were sent (tickers' ``time``, book snapshots' and position
messages' ``timestamp``) carry the venue's clock ``now``, as the venue's do; the engine's clock
stays at the next candle's open between candles, so it would date them up to a minute early.
Prints carry their trade's time.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from adapters.sim.accounts import PositionView
from adapters.sim.engine import SimEngine
from adapters.sim.models import OrderKind, SimFill, SimOrder, TriggerSignal, deterministic_uuid
from adapters.sim.server.render import n
from domain.models import Side


def ticker(engine: SimEngine, symbol: str, now: int) -> dict[str, Any]:
    t = engine.ticker(symbol)
    lot = engine.instruments[symbol].instrument.lot_size
    change = (t.last - t.open24h) / t.open24h * 100 if t.open24h else Decimal(0)
    base = symbol.split("_")[1][:-3]
    return {
        "time": now,
        "product_id": symbol,
        "funding_rate": 0.0,
        "funding_rate_prediction": 0.0,
        "relative_funding_rate": 0.0,
        "relative_funding_rate_prediction": 0.0,
        "next_funding_rate_time": now - now % 3_600_000 + 3_600_000,
        "feed": "ticker",
        "bid": n(t.bid),
        "ask": n(t.ask),
        "bid_size": n(lot * 100),
        "ask_size": n(lot * 100),
        "volume": n(t.vol24h),
        "dtm": 0,
        "leverage": f"{engine.instruments[symbol].instrument.max_leverage}x",
        "index": n(t.index),
        "premium": 0.0,
        "last": n(t.last),
        "change": float(round(change, 6)),
        "suspended": False,
        "tag": "perpetual",
        "pair": f"{base}:USD",
        "openInterest": 0.0,
        "markPrice": n(t.mark),
        "maturityTime": 0,
        "post_only": False,
        "volumeQuote": n((t.vol24h * t.last).quantize(Decimal("0.000001"))),
        "open": n(t.open24h),
        "high": n(t.high24h),
        "low": n(t.low24h),
    }


def book_snapshot(engine: SimEngine, symbol: str, seq: int, now: int) -> dict[str, Any]:
    t = engine.ticker(symbol)
    size = n(engine.instruments[symbol].instrument.lot_size * 100)
    return {
        "feed": "book_snapshot",
        "product_id": symbol,
        "timestamp": now,
        "seq": seq,
        "tickSize": None,
        "bids": [{"price": n(t.bid), "qty": size}],
        "asks": [{"price": n(t.ask), "qty": size}],
    }


def trade(
    symbol: str, *, uid: str, side: str, seq: int, ts: int, qty: Decimal, price: Decimal
) -> dict[str, Any]:
    return {
        "feed": "trade",
        "product_id": symbol,
        "uid": uid,
        "side": side,
        "type": "fill",
        "seq": seq,
        "time": ts,
        "qty": n(qty),
        "price": n(price),
    }


def market_trade(engine: SimEngine, symbol: str, prev: Decimal, seq: int) -> dict[str, Any]:
    last = engine.last_price(symbol)
    lot = engine.instruments[symbol].instrument.lot_size
    bars = engine.ohlcv(symbol, since=engine.now - 60_000)
    qty = (bars[-1].volume / 4) if bars else lot
    qty = max((qty // lot) * lot, lot)
    side = "buy" if last >= prev else "sell"
    uid = deterministic_uuid(engine.seed, f"trade-{symbol}", seq)
    return trade(symbol, uid=uid, side=side, seq=seq, ts=engine.now, qty=qty, price=last)


def order_row(order: SimOrder) -> dict[str, Any]:
    if order.awaiting_trigger:
        kind = "stop" if order.kind is OrderKind.STOP else "take_profit"
    else:
        kind = "limit"
    row: dict[str, Any] = {
        "instrument": order.symbol,
        "time": order.created_ts,
        "last_update_time": order.updated_ts,
        "qty": n(order.remaining if order.is_open else Decimal(0)),
        "filled": n(order.filled),
        "limit_price": n(order.limit_price) or 0.0,
        "stop_price": n(order.stop_price) or 0.0,
        "type": kind,
        "order_id": order.order_id,
        "direction": 0 if order.side is Side.BUY else 1,
        "reduce_only": order.reduce_only,
    }
    if order.awaiting_trigger:
        row["triggerSignal"] = (order.trigger_signal or TriggerSignal.LAST).value
    if order.cli_ord_id is not None:
        row["cli_ord_id"] = order.cli_ord_id
    return row


def fill_row(f: SimFill, order_type: str) -> dict[str, Any]:
    return {
        "instrument": f.symbol,
        "time": f.ts,
        "price": n(f.price),
        "seq": f.seq,
        "buy": f.side is Side.BUY,
        "qty": n(f.qty),
        "remaining_order_qty": n(f.remaining_order_qty),
        "order_id": f.order_id,
        "cli_ord_id": f.cli_ord_id,
        "fill_id": f.fill_id,
        "fill_type": f.fill_type,
        "fee_paid": n(f.fee),
        "fee_currency": f.fee_currency,
        "taker_order_type": order_type,
        "order_type": order_type,
    }


def position_row(p: PositionView, equity: Decimal) -> dict[str, Any]:
    notional = abs(p.qty) * p.mark_price
    return {
        "instrument": p.symbol,
        "balance": n(p.qty),
        "pnl": n(p.unrealized_pnl),
        "entry_price": n(p.entry_price),
        "mark_price": n(p.mark_price),
        "index_price": n(p.mark_price),
        "liquidation_threshold": n(p.liquidation_price) or 0,
        "effective_leverage": float(notional / equity) if equity > 0 else 0.0,
        "return_on_equity": float(p.unrealized_pnl / p.initial_margin * 100)
        if p.initial_margin
        else 0.0,
        "unrealized_funding": 0.0,
        "initial_margin": n(p.initial_margin),
        "initial_margin_with_orders": n(p.initial_margin),
        "maintenance_margin": n(p.maintenance_margin),
        "pnl_currency": "USD",
    }


def positions_message(engine: SimEngine, account_id: str, seq: int, now: int) -> dict[str, Any]:
    equity = engine.account(account_id).equity
    return {
        "feed": "open_positions",
        "account": account_id,
        "positions": [position_row(p, equity) for p in engine.positions(account_id)],
        "seq": seq,
        "timestamp": now,
    }


_ORDER_TYPES = {"mkt": "market", "ioc": "ioc", "post": "post", "lmt": "limit"}


def order_type_of(kind: str) -> str:
    return _ORDER_TYPES.get(kind, "stop" if kind == "stp" else kind)
