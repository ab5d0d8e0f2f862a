"""REST endpoints of the venue: ``/derivatives/api/v3/*`` and the charts API ``/api/charts/v1/*``.

Parameters are read from the query string for every method (what ccxt sends), with
``batchorder`` reading its ``json=`` body. Private endpoints check the signature first
(:mod:`adapters.sim.server.auth`). Order-action outcomes are HTTP 200 with the status inside
``sendStatus`` / ``cancelStatus`` / ``editStatus``; envelope errors carry ``error`` (HTTP 400,
401 for authentication). Decisions where the venue leaves a choice:

- ``triggerSignal=index`` is treated as ``mark`` (the simulator's index equals its mark).
- ``fills`` returns the account's latest 100 fills, newest first (``lastFillTime`` pages back),
  like the venue.
- ``orders/status`` reports open orders and orders that ended within the last 5 s of simulated
  time, like the venue; older closed orders are not found.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from adapters.sim.models import Status
from adapters.sim.server import render
from adapters.sim.server.auth import ApiKey, AuthError
from adapters.sim.server.charts import candles_response
from adapters.sim.server.httpio import HttpRequest, HttpResponse
from adapters.sim.server.venue import Venue

DERIVATIVES = "/derivatives/api/v3/"
CHARTS = "/api/charts/v1/"
RECENT_CLOSED_MS = 5_000
MAX_FILLS = 100
_ENVELOPE_ERRORS = {Status.CONTRACT_NOT_FOUND, Status.INVALID_ARGUMENT, Status.INVALID_ACCOUNT}


class VenueError(Exception):
    def __init__(self, code: str, http_status: int = 400) -> None:
        super().__init__(code)
        self.code = code
        self.http_status = http_status


@dataclass(slots=True)
class Ctx:
    venue: Venue
    request: HttpRequest
    params: dict[str, str]
    key: ApiKey | None

    @property
    def account(self) -> str:
        assert self.key is not None
        return self.key.account_id

    def ok(self, **payload: Any) -> HttpResponse:
        return HttpResponse.json(
            {"result": "success", "serverTime": render.iso(self.venue.now_ms), **payload}
        )

    def required(self, name: str) -> str:
        value = self.params.get(name)
        if value in (None, ""):
            raise VenueError("requiredArgumentMissing")
        return value


Handler = Callable[[Ctx], HttpResponse]


def error_response(venue: Venue, code: str, http_status: int = 400) -> HttpResponse:
    body = {"result": "error", "serverTime": render.iso(venue.now_ms), "error": code}
    return HttpResponse.json(body, http_status)


def _decimal(value: str | None) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        return Decimal(value)
    except InvalidOperation as exc:
        raise VenueError("invalidArgument") from exc


# ---------------------------------------------------------------------- public
def instruments(ctx: Ctx) -> HttpResponse:
    specs = ctx.venue.engine.instruments.values()
    return ctx.ok(instruments=[render.instrument(spec) for spec in specs])


def _ticker(ctx: Ctx, symbol: str) -> dict[str, Any]:
    engine = ctx.venue.engine
    if symbol not in engine.instruments:
        raise VenueError(Status.CONTRACT_NOT_FOUND)
    bars = engine.ohlcv(symbol, since=engine.now - 60_000)
    last_size = bars[-1].volume if bars else Decimal(0)
    return render.ticker(engine.ticker(symbol), engine.instruments[symbol], last_size)


def tickers(ctx: Ctx) -> HttpResponse:
    return ctx.ok(tickers=[_ticker(ctx, s) for s in ctx.venue.engine.instruments])


def one_ticker(ctx: Ctx, symbol: str) -> HttpResponse:
    return ctx.ok(ticker=_ticker(ctx, symbol.upper()))


def orderbook(ctx: Ctx) -> HttpResponse:
    symbol = ctx.required("symbol").upper()
    ticker = _ticker(ctx, symbol)
    size = float(ticker["bidSize"])
    bids = [[float(ticker["bid"]), size]]
    asks = [[float(ticker["ask"]), size]]
    return ctx.ok(orderBook={"bids": bids, "asks": asks})


# ---------------------------------------------------------------------- account
def accounts(ctx: Ctx) -> HttpResponse:
    return ctx.ok(accounts=render.accounts(ctx.venue.engine.account(ctx.account)))


def open_positions(ctx: Ctx) -> HttpResponse:
    rows = [render.position(p) for p in ctx.venue.engine.positions(ctx.account)]
    return ctx.ok(openPositions=rows)


def open_orders(ctx: Ctx) -> HttpResponse:
    rows = [render.open_order(o) for o in ctx.venue.engine.open_orders(ctx.account)]
    return ctx.ok(openOrders=rows)


def fills(ctx: Ctx) -> HttpResponse:
    rows = ctx.venue.engine.fills(ctx.account)
    before = ctx.params.get("lastFillTime")
    if before:
        cutoff = _parse_iso_ms(before)
        rows = [f for f in rows if f.ts < cutoff]
    newest = list(reversed(rows))[:MAX_FILLS]
    return ctx.ok(fills=[render.fill(f) for f in newest])


def order_status(ctx: Ctx) -> HttpResponse:
    engine, now = ctx.venue.engine, ctx.venue.engine.now
    ids = ctx.request.param_list("orderIds")
    cli_ids = ctx.request.param_list("cliOrdIds")
    if ctx.request.body and not ids and not cli_ids:
        form = parse_qsl(ctx.request.body.decode(), keep_blank_values=True)
        ids = [v for k, v in form if k == "orderIds"]
        cli_ids = [v for k, v in form if k == "cliOrdIds"]
    if ids or cli_ids:
        found = [engine.get_order(i) for i in ids]
        found += [engine._find(ctx.account, None, c) for c in cli_ids]
        orders = [o for o in found if o is not None and o.account_id == ctx.account]
    else:
        orders = engine.open_orders(ctx.account)
    visible = [o for o in orders if o.is_open or now - o.updated_ts <= RECENT_CLOSED_MS]
    return ctx.ok(orders=[render.order_status_row(o) for o in visible])


def leverage_preferences(ctx: Ctx) -> HttpResponse:
    engine = ctx.venue.engine
    if ctx.request.method == "PUT":
        symbol = ctx.required("symbol").upper()
        if symbol not in engine.instruments:
            raise VenueError(Status.CONTRACT_NOT_FOUND)
        try:
            engine.set_leverage(ctx.account, symbol, _decimal(ctx.required("maxLeverage")) or 0)
        except ValueError as exc:
            raise VenueError("invalidArgument: maxLeverage") from exc
        ctx.venue.changed()
        return ctx.ok()
    symbol = ctx.params.get("symbol", "").upper()
    if symbol:
        if symbol not in engine.instruments:
            raise VenueError(Status.CONTRACT_NOT_FOUND)
        prefs = {symbol: engine.leverage(ctx.account, symbol)}
    else:
        record = engine._accounts[ctx.account]
        prefs = dict(record.leverage or {})
    rows = [{"symbol": s, "maxLeverage": render.n(v)} for s, v in prefs.items()]
    return ctx.ok(leveragePreferences=rows)


# ---------------------------------------------------------------------- trading
def _send(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    for name in ("symbol", "side", "size", "orderType"):
        if p.get(name) in (None, ""):
            raise VenueError("requiredArgumentMissing")
    signal = str(p.get("triggerSignal") or "last").lower().removesuffix("_price")
    result = ctx.venue.engine.send_order(
        ctx.account,
        str(p["symbol"]).upper(),
        str(p["side"]).lower(),
        str(p["orderType"]).lower(),
        str(p["size"]),
        limit_price=_decimal(_opt(p.get("limitPrice"))),
        stop_price=_decimal(_opt(p.get("stopPrice"))),
        trigger_signal="mark" if signal == "index" else signal,
        reduce_only=str(p.get("reduceOnly", "false")).lower() == "true",
        cli_ord_id=_opt(p.get("cliOrdId")),
    )
    if result.status in _ENVELOPE_ERRORS:
        raise VenueError(result.status)
    if result.accepted:
        ctx.venue.changed()
    return render.send_status(result, ctx.venue.now_ms)


def send_order(ctx: Ctx) -> HttpResponse:
    return ctx.ok(sendStatus=_send(ctx, ctx.params))


def _cancel(ctx: Ctx, order_id: str | None, cli_ord_id: str | None) -> dict[str, Any]:
    if not order_id and not cli_ord_id:
        raise VenueError("requiredArgumentMissing")
    result = ctx.venue.engine.cancel_order(ctx.account, order_id or None, cli_ord_id or None)
    if result.status == Status.CANCELLED:
        ctx.venue.changed()
    return render.cancel_status(result.status, result.order, ctx.venue.now_ms)


def cancel_order(ctx: Ctx) -> HttpResponse:
    status = _cancel(ctx, ctx.params.get("order_id"), ctx.params.get("cliOrdId"))
    return ctx.ok(cancelStatus=status)


def cancel_all(ctx: Ctx) -> HttpResponse:
    symbol = ctx.params.get("symbol", "").upper() or None
    cancelled = ctx.venue.engine.cancel_all(ctx.account, symbol)
    if cancelled:
        ctx.venue.changed()
    status = {
        "receivedTime": render.iso(ctx.venue.now_ms),
        "cancelOnly": symbol or "all",
        "status": "cancelled" if cancelled else Status.NO_ORDERS_TO_CANCEL,
        "cancelledOrders": [{"order_id": o.order_id} for o in cancelled],
        "orderEvents": [
            {"uid": o.order_id, "type": "CANCEL", "order": render.order_object(o)}
            for o in cancelled
        ],
    }
    return ctx.ok(cancelStatus=status)


def edit_order(ctx: Ctx) -> HttpResponse:
    p = ctx.params
    order_id, cli_ord_id = p.get("orderId"), p.get("cliOrdId")
    if not order_id and not cli_ord_id:
        raise VenueError("requiredArgumentMissing")
    result = ctx.venue.engine.edit_order(
        ctx.account,
        order_id or None,
        cli_ord_id=cli_ord_id or None,
        size=_decimal(p.get("size")),
        limit_price=_decimal(p.get("limitPrice")),
        stop_price=_decimal(p.get("stopPrice")),
    )
    if result.status == Status.EDITED:
        ctx.venue.changed()
    status = render.edit_status(result.status, result.old, result.order, ctx.venue.now_ms)
    return ctx.ok(editStatus=status)


def batch_order(ctx: Ctx) -> HttpResponse:
    """``send`` and ``cancel`` instructions of ``batchorder`` (body ``json={...}``)."""
    raw = ctx.request.body.decode() or ctx.request.query
    try:
        payload = json.loads(unquote_plus(raw.removeprefix("json=")))
        items = payload["batchOrder"]
    except (ValueError, KeyError, TypeError) as exc:
        raise VenueError("Json Parse Error") from exc
    statuses = []
    for item in items:
        kind = item.get("order")
        if kind == "send":
            status = _send(ctx, item)
            status["order_tag"] = item.get("order_tag")
        elif kind == "cancel":
            status = _cancel(ctx, item.get("order_id"), item.get("cliOrdId"))
        else:
            status = {"status": "invalidArgument", "orderEvents": []}
        statuses.append(status)
    return ctx.ok(batchStatus=statuses)


def _opt(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _parse_iso_ms(value: str) -> int:
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError as exc:
        raise VenueError("invalidArgument: lastFillTime") from exc


# ---------------------------------------------------------------------- routing
PUBLIC: dict[tuple[str, str], Handler] = {
    ("GET", "instruments"): instruments,
    ("GET", "tickers"): tickers,
    ("GET", "orderbook"): orderbook,
}
PRIVATE: dict[tuple[str, str], Handler] = {
    ("GET", "accounts"): accounts,
    ("GET", "openpositions"): open_positions,
    ("GET", "openorders"): open_orders,
    ("GET", "fills"): fills,
    ("GET", "orders/status"): order_status,
    ("POST", "orders/status"): order_status,
    ("GET", "leveragepreferences"): leverage_preferences,
    ("PUT", "leveragepreferences"): leverage_preferences,
    ("POST", "sendorder"): send_order,
    ("POST", "cancelorder"): cancel_order,
    ("POST", "cancelallorders"): cancel_all,
    ("POST", "editorder"): edit_order,
    ("POST", "batchorder"): batch_order,
}


def endpoint_name(path: str) -> str | None:
    """``sendorder`` for ``/derivatives/api/v3/sendorder``, ``charts`` for the charts API."""
    if path.startswith(DERIVATIVES):
        return path.removeprefix(DERIVATIVES).strip("/")
    if path.startswith(CHARTS):
        return "charts"
    return None


def route(venue: Venue, request: HttpRequest, name: str) -> tuple[Handler | None, bool]:
    """(handler, private) for a request; ``(None, False)`` when nothing serves it."""
    method = request.method
    if name == "charts":
        parts = request.path.removeprefix(CHARTS).strip("/").split("/")
        if method == "GET" and len(parts) == 3:
            return (lambda ctx: candles_response(ctx.venue, *parts, ctx.params)), False
        return None, False
    if method == "GET" and name.startswith("tickers/"):
        symbol = name.removeprefix("tickers/")
        return (lambda ctx: one_ticker(ctx, symbol)), False
    if (method, name) in PUBLIC:
        return PUBLIC[(method, name)], False
    if (method, name) in PRIVATE:
        return PRIVATE[(method, name)], True
    return None, False


def authenticate(venue: Venue, request: HttpRequest) -> ApiKey:
    post_data = request.query or request.body.decode("utf-8", "replace")
    return venue.auth.verify_rest(
        request.header("apikey"),
        request.header("authent"),
        post_data,
        request.path,
        request.header("nonce"),
    )


def call(handler: Handler, ctx: Ctx) -> HttpResponse:
    try:
        return handler(ctx)
    except AuthError as exc:
        return error_response(ctx.venue, exc.code, 401)
    except VenueError as exc:
        return error_response(ctx.venue, exc.code, exc.http_status)
