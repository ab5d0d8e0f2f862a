"""Admin endpoints under ``/_sim/`` (JSON in and out, no auth, loopback peers only).

| method | path | body | effect |
|---|---|---|---|
| GET | ``/_sim/state`` | | clock, prices, accounts (positions, open orders), faults |
| POST | ``/_sim/price`` | ``symbol, price[, mark]`` | move a price now (matching runs) |
| POST | ``/_sim/advance`` | ``ms`` or ``seconds`` or ``minutes`` | move the clock, play candles |
| GET/POST/DELETE | ``/_sim/faults`` | rule (see :mod:`.faults`) or ``id``/``endpoint`` | |
| POST | ``/_sim/accounts`` | ``api_key, api_secret, balance`` | create an account and its key |
| POST | ``/_sim/fund`` | ``api_key, amount`` | deposit (negative: withdraw) USD |
| POST | ``/_sim/venue_cancel`` | ``order_id`` or ``api_key[, symbol]`` | venue cancels stops |
| POST | ``/_sim/ws/drop`` | ``mode``: ``abort`` (default) or ``close`` | drop every WebSocket |
| POST | ``/_sim/save`` | | write the state files now |

Errors: HTTP 400 ``{"error": "..."}``; unknown path 404.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import structlog

from adapters.sim.models import Reason
from adapters.sim.server.httpio import BadRequest, HttpRequest, HttpResponse

if TYPE_CHECKING:
    from adapters.sim.server.app import SimServer

log = structlog.get_logger(__name__)
PREFIX = "/_sim/"


def _dec(data: dict[str, Any], name: str) -> Decimal:
    try:
        return Decimal(str(data[name]))
    except KeyError as exc:
        raise BadRequest(f"missing {name}") from exc
    except InvalidOperation as exc:
        raise BadRequest(f"{name} is not a number") from exc


def _key_account(server: SimServer, data: dict[str, Any]) -> str:
    key = server.venue.auth.keys.get(str(data.get("api_key", "")))
    if key is None:
        raise BadRequest("unknown api_key")
    return key.account_id


def state(server: SimServer, data: dict[str, Any]) -> Any:
    return server.venue.summary()


def price(server: SimServer, data: dict[str, Any]) -> Any:
    mark = _dec(data, "mark") if data.get("mark") is not None else None
    server.venue.set_price(str(data.get("symbol", "")).upper(), _dec(data, "price"), mark)
    return {"ok": True, "clock_ms": server.venue.now_ms}


def advance(server: SimServer, data: dict[str, Any]) -> Any:
    if "ms" in data:
        ms = int(data["ms"])
    elif "seconds" in data:
        ms = int(float(data["seconds"]) * 1000)
    elif "minutes" in data:
        ms = int(float(data["minutes"]) * 60_000)
    else:
        raise BadRequest("give ms, seconds or minutes")
    played = server.venue.advance(ms)
    return {"ok": True, "clock_ms": server.venue.now_ms, "candles_played": played}


def faults(server: SimServer, data: dict[str, Any], method: str) -> Any:
    book = server.venue.faults
    if method == "POST":
        return {"ok": True, "rule": book.add(data).to_dict()}
    if method == "DELETE":
        rule_id = int(data["id"]) if data.get("id") not in (None, "") else None
        return {"ok": True, "removed": book.clear(rule_id, data.get("endpoint") or None)}
    return {"rules": [r.to_dict() for r in book.rules()]}


def accounts(server: SimServer, data: dict[str, Any]) -> Any:
    api_key, secret = str(data.get("api_key", "")), str(data.get("api_secret", ""))
    if not api_key or not secret:
        raise BadRequest("api_key and api_secret are required")
    account_id = server.venue.create_account(api_key, secret, _dec(data, "balance"))
    server.venue.changed()
    return {"ok": True, "account_id": account_id}


def fund(server: SimServer, data: dict[str, Any]) -> Any:
    account_id = _key_account(server, data)
    server.venue.engine.deposit(account_id, _dec(data, "amount"))
    server.venue.changed()
    return {"ok": True, "balance": str(server.venue.engine.account(account_id).balance)}


def venue_cancel(server: SimServer, data: dict[str, Any]) -> Any:
    engine = server.venue.engine
    if data.get("order_id"):
        targets = [str(data["order_id"])]
    else:
        account_id = _key_account(server, data)
        symbol = str(data["symbol"]).upper() if data.get("symbol") else None
        targets = [o.order_id for o in engine.open_orders(account_id, symbol) if o.kind.is_trigger]
    cancelled = [
        o.order_id
        for o in (engine.venue_cancel(t, Reason.CANCELLED_BY_ADMIN) for t in targets)
        if o
    ]
    log.warning("fault_injected", kind="venue_cancel", orders=cancelled)
    server.venue.changed()
    return {"ok": True, "cancelled": cancelled}


def ws_drop(server: SimServer, data: dict[str, Any]) -> Any:
    mode = str(data.get("mode", "abort"))
    dropped = server.hub.drop_all(abort=mode != "close")
    log.warning("fault_injected", kind="ws_drop", mode=mode, connections=dropped)
    return {"ok": True, "dropped": dropped}


def save(server: SimServer, data: dict[str, Any]) -> Any:
    server.venue.save(snapshot=True)
    return {"ok": True}


_POST: dict[str, Callable[[SimServer, dict[str, Any]], Any]] = {
    "price": price,
    "advance": advance,
    "accounts": accounts,
    "fund": fund,
    "venue_cancel": venue_cancel,
    "ws/drop": ws_drop,
    "save": save,
}


def handle(server: SimServer, request: HttpRequest) -> HttpResponse:
    if request.peer and not _loopback(request.peer):
        return HttpResponse.json({"error": "admin endpoints are loopback only"}, 403)
    name = request.path.removeprefix(PREFIX).strip("/")
    try:
        data = request.json_body()
        if name == "faults":
            return HttpResponse.json(faults(server, data, request.method))
        if name == "state" and request.method == "GET":
            return HttpResponse.json(state(server, data))
        handler = _POST.get(name)
        if handler is None or request.method != "POST":
            return HttpResponse.json({"error": f"no admin endpoint {request.method} {name}"}, 404)
        return HttpResponse.json(handler(server, data))
    except (BadRequest, ValueError, KeyError) as exc:
        return HttpResponse.json({"error": str(exc)}, 400)


def _loopback(peer: str) -> bool:
    return peer.startswith("127.") or peer in ("::1", "localhost")
