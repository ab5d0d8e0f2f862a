"""JSON-safe records of positions and orders (Decimals as strings, enums as values)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from domain.models import OrderRole, OrderType, Origin, PositionSide
from domain.position import FillRecord, Position, PositionData, StopRef
from domain.position_table import State


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _undec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _stop_to(stop: StopRef | None) -> dict[str, str] | None:
    if stop is None:
        return None
    return {"client_id": stop.client_id, "price": str(stop.price), "qty": str(stop.qty)}


def _stop_from(raw: dict[str, str] | None) -> StopRef | None:
    if raw is None:
        return None
    return StopRef(raw["client_id"], Decimal(raw["price"]), Decimal(raw["qty"]))


def fill_to_record(fill: FillRecord) -> dict[str, Any]:
    return {
        "fill_id": fill.fill_id,
        "role": fill.role.value,
        "qty": str(fill.qty),
        "price": str(fill.price),
        "ts": fill.ts,
        "fee": str(fill.fee),
        "client_id": fill.client_id,
    }


def fill_from_record(raw: dict[str, Any]) -> FillRecord:
    return FillRecord(
        fill_id=raw["fill_id"],
        role=OrderRole(raw["role"]),
        qty=Decimal(raw["qty"]),
        price=Decimal(raw["price"]),
        ts=int(raw["ts"]),
        fee=Decimal(raw["fee"]),
        client_id=raw["client_id"],
    )


def position_to_record(pos: Position) -> dict[str, Any]:
    """Everything needed to rebuild ``pos`` exactly; equal records mean equal positions."""
    d = pos.data
    return {
        "id": pos.id,
        "symbol": pos.symbol,
        "side": pos.side.value,
        "origin": pos.origin.value,
        "created_at": pos.created_at,
        "intended_qty": str(pos.intended_qty),
        "entry_type": pos.entry_type.value if pos.entry_type else None,
        "entry_price": _dec(pos.entry_price),
        "planned_stop": _dec(pos.planned_stop),
        "strategy": pos.strategy,
        "state": pos.state,
        "version": pos.version,
        "data": {
            "entry_filled": str(d.entry_filled),
            "entry_cost": str(d.entry_cost),
            "exit_filled": str(d.exit_filled),
            "exit_proceeds": str(d.exit_proceeds),
            "fees": str(d.fees),
            "fill_ids": sorted(d.fill_ids),
            "deferred_exits": [fill_to_record(f) for f in d.deferred_exits],
            "stop_resting": _stop_to(d.stop_resting),
            "stop_pending": _stop_to(d.stop_pending),
            "exit_client_id": d.exit_client_id,
            "entry_working": d.entry_working,
            "attempts": dict(sorted(d.attempts.items())),
            "quarantine_reason": d.quarantine_reason,
            "updated_at": d.updated_at,
        },
    }


def position_json(pos: Position) -> str:
    """``position_to_record(pos)`` as the store writes it: JSON with sorted keys and no
    spaces, byte for byte what ``json.dumps(..., sort_keys=True, separators=(",", ":"))``
    gives, written out directly (a record is encoded on every commit)."""
    d = pos.data
    attempts = ",".join(f"{_str(k)}:{int(v)}" for k, v in sorted(d.attempts.items()))
    deferred = "[]"
    if d.deferred_exits:
        deferred = _JSON.encode([fill_to_record(f) for f in d.deferred_exits])
    fill_ids = ",".join(_str(f) for f in sorted(d.fill_ids))
    return (
        f'{{"created_at":{int(pos.created_at)},"data":{{"attempts":{{{attempts}}},'
        f'"deferred_exits":{deferred},"entry_cost":{_str(str(d.entry_cost))},'
        f'"entry_filled":{_str(str(d.entry_filled))},'
        f'"entry_working":{"true" if d.entry_working else "false"},'
        f'"exit_client_id":{_opt(d.exit_client_id)},"exit_filled":{_str(str(d.exit_filled))},'
        f'"exit_proceeds":{_str(str(d.exit_proceeds))},"fees":{_str(str(d.fees))},'
        f'"fill_ids":[{fill_ids}],"quarantine_reason":{_str(d.quarantine_reason)},'
        f'"stop_pending":{_stop_json(d.stop_pending)},'
        f'"stop_resting":{_stop_json(d.stop_resting)},"updated_at":{int(d.updated_at)}}},'
        f'"entry_price":{_opt(_dec(pos.entry_price))},'
        f'"entry_type":{_opt(pos.entry_type.value if pos.entry_type else None)},'
        f'"id":{_str(pos.id)},"intended_qty":{_str(str(pos.intended_qty))},'
        f'"origin":{_str(pos.origin.value)},"planned_stop":{_opt(_dec(pos.planned_stop))},'
        f'"side":{_str(pos.side.value)},"state":{_str(pos.state)},'
        f'"strategy":{_str(pos.strategy)},"symbol":{_str(pos.symbol)},'
        f'"version":{int(pos.version)}}}'
    )


_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_str = json.encoder.encode_basestring_ascii  # what the encoder writes a str as


def _opt(value: str | None) -> str:
    return "null" if value is None else _str(value)


def _stop_json(stop: StopRef | None) -> str:
    if stop is None:
        return "null"
    return (
        f'{{"client_id":{_str(stop.client_id)},"price":{_str(str(stop.price))},'
        f'"qty":{_str(str(stop.qty))}}}'
    )


def data_from_record(raw: dict[str, Any]) -> PositionData:
    """A position record's :class:`PositionData` alone (no state machine involved)."""
    d = raw["data"]
    return PositionData(
        entry_filled=Decimal(d["entry_filled"]),
        entry_cost=Decimal(d["entry_cost"]),
        exit_filled=Decimal(d["exit_filled"]),
        exit_proceeds=Decimal(d["exit_proceeds"]),
        fees=Decimal(d["fees"]),
        fill_ids=frozenset(d["fill_ids"]),
        deferred_exits=tuple(fill_from_record(f) for f in d["deferred_exits"]),
        stop_resting=_stop_from(d["stop_resting"]),
        stop_pending=_stop_from(d["stop_pending"]),
        exit_client_id=d["exit_client_id"],
        entry_working=bool(d["entry_working"]),
        attempts={str(k): int(v) for k, v in d["attempts"].items()},
        quarantine_reason=d["quarantine_reason"],
        updated_at=int(d["updated_at"]),
    )


def position_from_record(raw: dict[str, Any]) -> Position:
    """Rebuild a position at its persisted state (registered with the shared machine)."""
    data = data_from_record(raw)
    return Position(
        raw["id"],
        raw["symbol"],
        PositionSide(raw["side"]),
        origin=Origin(raw["origin"]),
        created_at=int(raw["created_at"]),
        intended_qty=Decimal(raw["intended_qty"]),
        entry_type=OrderType(raw["entry_type"]) if raw["entry_type"] else None,
        entry_price=_undec(raw["entry_price"]),
        planned_stop=_undec(raw["planned_stop"]),
        strategy=raw["strategy"],
        state=State(raw["state"]),
        version=int(raw["version"]),
        data=data,
    )
