"""The venue's REST payload shapes, rendered from engine objects (API-FACTS.md section 3).

Number formats follow the venue samples per endpoint: ``instruments``, ``tickers``,
``openorders``, ``fills`` and ``openpositions`` carry decimal strings (as in
``venue-samples/krakenfutures/response``); order objects inside ``sendStatus`` / ``cancelStatus``
/ ``editStatus`` and ``orders/status`` rows carry JSON numbers (as in the venue's doc examples).
Ids are upper-case venue symbols. Market orders are shown as ``ioc`` (what the venue shows).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from adapters.sim.accounts import AccountView, PositionView
from adapters.sim.instruments import SimInstrument
from adapters.sim.models import OrderKind, SendResult, SimFill, SimOrder, Ticker, TriggerSignal
from domain.models import Side

FEE_SCHEDULE_UID = "abb50ea3-4fc9-401c-8d83-518610b16d8c"


def iso(ts_ms: int) -> str:
    """``2019-09-05T16:33:50.734Z``."""
    stamp = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"


def s(value: Decimal | None) -> str | None:
    """A plain decimal string (no exponent)."""
    return None if value is None else format(value, "f")


def n(value: Decimal | None) -> float | int | None:
    """A JSON number; integral values stay integers."""
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def instrument(spec: SimInstrument) -> dict[str, Any]:
    """``venue_info()`` plus the fee schedule; retail margin levels equal the margin levels
    (as in the venue's sample)."""
    info = spec.venue_info()
    return {**info, "retailMarginLevels": info["marginLevels"], "feeScheduleUid": FEE_SCHEDULE_UID}


def ticker(t: Ticker, spec: SimInstrument, last_size: Decimal) -> dict[str, Any]:
    base = t.symbol.split("_")[1][:-3]
    change = (t.last - t.open24h) / t.open24h * 100 if t.open24h else Decimal(0)
    return {
        "symbol": t.symbol,
        "last": s(t.last),
        "lastTime": iso(t.ts),
        "tag": "perpetual",
        "pair": f"{base}:USD",
        "markPrice": s(t.mark),
        "bid": s(t.bid),
        "bidSize": s(spec.instrument.lot_size * 100),
        "ask": s(t.ask),
        "askSize": s(spec.instrument.lot_size * 100),
        "vol24h": s(t.vol24h),
        "volumeQuote": s((t.vol24h * t.last).quantize(Decimal("0.000001"))),
        "openInterest": "0",
        "open24h": s(t.open24h),
        "high24h": s(t.high24h),
        "low24h": s(t.low24h),
        "lastSize": s(last_size),
        "fundingRate": "0",
        "fundingRatePrediction": "0",
        "suspended": False,
        "indexPrice": s(t.index),
        "postOnly": False,
        "change24h": s(round(change, 2)),
    }


def _venue_type(order: SimOrder) -> str:
    if order.kind is OrderKind.MARKET or (order.kind.is_trigger and order.limit_price is None):
        return "ioc"
    if order.kind.is_trigger:
        return "lmt"
    return order.kind.value


def order_object(order: SimOrder, filled: Decimal | None = None) -> dict[str, Any]:
    """The ``order`` object of order events (``filled`` overrides, for prior-execution views)."""
    return {
        "orderId": order.order_id,
        "cliOrdId": order.cli_ord_id,
        "type": _venue_type(order),
        "symbol": order.symbol,
        "side": order.side.value,
        "quantity": n(order.qty),
        "filled": n(order.filled if filled is None else filled),
        "limitPrice": n(order.limit_price),
        "reduceOnly": order.reduce_only,
        "timestamp": iso(order.created_ts),
        "lastUpdateTimestamp": iso(order.updated_ts),
    }


def _trigger_side(order: SimOrder) -> str:
    below = order.side is Side.SELL
    if order.kind is OrderKind.TAKE_PROFIT:
        below = not below
    return "trigger_below" if below else "trigger_above"


def _signal(order: SimOrder) -> str:
    return "mark_price" if order.trigger_signal is TriggerSignal.MARK else "last_price"


def trigger_object(order: SimOrder) -> dict[str, Any]:
    """The ``orderTrigger`` object of an untriggered stop or take-profit."""
    return {
        "uid": order.order_id,
        "clientId": order.cli_ord_id,
        "type": _venue_type(order),
        "symbol": order.symbol,
        "side": order.side.value,
        "quantity": n(order.qty),
        "limitPrice": n(order.limit_price),
        "triggerPrice": n(order.stop_price),
        "triggerSide": _trigger_side(order),
        "triggerSignal": _signal(order),
        "reduceOnly": order.reduce_only,
        "timestamp": iso(order.created_ts),
        "lastUpdateTimestamp": iso(order.updated_ts),
    }


def _event_body(order: SimOrder) -> dict[str, Any]:
    if order.awaiting_trigger:
        return {"orderTrigger": trigger_object(order)}
    return {"order": order_object(order)}


def send_status(result: SendResult, received_ms: int) -> dict[str, Any]:
    received = iso(received_ms)
    order = result.order
    if order is None:
        return {"status": result.status, "receivedTime": received}
    reduced = n(result.reduced_quantity)
    events: list[dict[str, Any]] = []
    if result.fills:
        filled = order.filled - sum((f.qty for f in result.fills), Decimal(0))
        for fill in result.fills:
            events.append(
                {
                    "type": "EXECUTION",
                    "executionId": fill.fill_id,
                    "price": n(fill.price),
                    "amount": n(fill.qty),
                    "orderPriorEdit": None,
                    "orderPriorExecution": order_object(order, filled=filled),
                    "takerReducedQuantity": reduced,
                }
            )
            filled += fill.qty
    else:
        events.append(
            {"uid": order.order_id, "type": "PLACE", "reducedQuantity": reduced}
            | _event_body(order)
        )
    return {
        "order_id": order.order_id,
        "status": result.status,
        "receivedTime": received,
        "orderEvents": events,
    }


def cancel_status(status: str, order: SimOrder | None, received_ms: int) -> dict[str, Any]:
    out: dict[str, Any] = {"status": status, "receivedTime": iso(received_ms)}
    if order is not None and status == "cancelled":
        out["order_id"] = order.order_id
        out["orderEvents"] = [{"uid": order.order_id, "type": "CANCEL"} | _event_body(order)]
    return out


def edit_status(
    status: str, old: SimOrder | None, new: SimOrder | None, received_ms: int
) -> dict[str, Any]:
    out: dict[str, Any] = {"status": status, "receivedTime": iso(received_ms)}
    if status == "edited" and old is not None and new is not None:
        out["orderId"] = new.order_id
        out["orderEvents"] = [
            {
                "type": "EDIT",
                "old": order_object(old),
                "new": order_object(new),
                "reducedQuantity": None,
            }
        ]
    return out


def open_order(order: SimOrder) -> dict[str, Any]:
    if order.awaiting_trigger:
        order_type = "stop" if order.kind is OrderKind.STOP else "take_profit"
    else:
        order_type = "lmt" if order.kind.is_trigger else _venue_type(order)
    row: dict[str, Any] = {
        "order_id": order.order_id,
        "symbol": order.symbol,
        "side": order.side.value,
        "orderType": order_type,
    }
    if order.limit_price is not None:
        row["limitPrice"] = s(order.limit_price)
    if order.awaiting_trigger:
        row["stopPrice"] = s(order.stop_price)
    row |= {
        "unfilledSize": s(order.remaining),
        "receivedTime": iso(order.created_ts),
        "status": order.state.value,
        "filledSize": s(order.filled),
        "reduceOnly": order.reduce_only,
        "lastUpdateTime": iso(order.updated_ts),
    }
    if order.awaiting_trigger:
        row["triggerSignal"] = (order.trigger_signal or TriggerSignal.LAST).value
    if order.cli_ord_id is not None:
        row["cliOrdId"] = order.cli_ord_id
    return row


def order_status_row(order: SimOrder) -> dict[str, Any]:
    """One ``orders/status`` row (API-FACTS.md 3.12)."""
    if order.state.value == "filled":
        status = "FULLY_EXECUTED"
    elif order.state.value == "cancelled":
        status = "CANCELLED"
    elif order.awaiting_trigger:
        status = "TRIGGER_PLACED"
    elif order.filled > 0:
        status = "PARTIALLY_FILLED"
    else:
        status = "ENTERED_BOOK"
    trigger = None
    if order.kind.is_trigger:
        trigger = {
            "triggerPrice": n(order.stop_price),
            "triggerSide": _trigger_side(order).upper(),
            "triggerSignal": _signal(order).upper(),
        }
    body = order_object(order) | {
        "type": "TRIGGER_ORDER" if order.awaiting_trigger else "ORDER",
        "algoId": None,
        "priceTriggerOptions": trigger,
        "triggerTime": None,
    }
    return {"order": body, "status": status, "updateReason": order.reason, "error": None}


def fill(f: SimFill) -> dict[str, Any]:
    return {
        "fill_id": f.fill_id,
        "symbol": f.symbol,
        "side": f.side.value,
        "order_id": f.order_id,
        "size": s(f.qty),
        "price": s(f.price),
        "fillTime": iso(f.ts),
        "fillType": f.fill_type,
        "cliOrdId": f.cli_ord_id,
        "fee_paid": s(f.fee),
        "fee_currency": f.fee_currency,
    }


def position(p: PositionView) -> dict[str, Any]:
    return {
        "side": "long" if p.qty > 0 else "short",
        "symbol": p.symbol,
        "price": s(p.entry_price),
        "fillTime": iso(p.opened_ts),
        "size": s(p.size),
        "unrealizedFunding": "0",
        "pnlCurrency": "USD",
        "unrealizedPnl": s(p.unrealized_pnl),
    }


def accounts(view: AccountView) -> dict[str, Any]:
    """``cash`` (empty) and ``flex`` accounts; USD collateral only (API-FACTS.md 3.5)."""
    available = max(min(view.balance, view.available_margin), Decimal(0))
    used = view.initial_margin + view.order_margin
    return {
        "cash": {"type": "cashAccount", "balances": {"usd": "0"}},
        "flex": {
            "type": "multiCollateralMarginAccount",
            "currencies": {
                "USD": {
                    "quantity": n(view.balance),
                    "value": n(view.balance),
                    "collateral": n(view.balance),
                    "available": n(available),
                }
            },
            "initialMargin": n(view.initial_margin),
            "initialMarginWithOrders": n(used),
            "maintenanceMargin": n(view.maintenance_margin),
            "balanceValue": n(view.balance),
            "portfolioValue": n(view.equity),
            "collateralValue": n(view.balance),
            "pnl": n(view.unrealized_pnl),
            "unrealizedFunding": 0,
            "totalUnrealized": n(view.unrealized_pnl),
            "totalUnrealizedAsMargin": n(view.unrealized_pnl),
            "availableMargin": n(view.available_margin),
            "marginEquity": n(view.equity),
        },
    }
