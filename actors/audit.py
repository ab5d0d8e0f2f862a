"""What the audit trail records of the messages actors send, and the rows it becomes.

Actors do not write history themselves. The actor runtime shows the history writer every
message a core sends (:func:`observed`); the ones that are decisions become ``system_events``
rows here: signals, allocator and risk decisions, kill-switch changes, protection-ladder rungs
(``EnsureStop``/``Flatten``/``Quarantine`` from protection) and alerts. Decisions that send no
message (a refused signal, a reconciliation action, an operator's command) are sent as explicit
:class:`~actors.messages.Audit` messages to ``history``.

An event's id is a hash of its kind, source, time and content, so the same decision replayed
from the spool is recognised by the database's unique key.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from typing import Any

from actors.core import ALLOCATOR, PROTECTION
from actors.messages import (
    AccountEquity,
    Alert,
    Audit,
    CloseRequested,
    EnsureStop,
    Flatten,
    KillSwitchChanged,
    OpenApproved,
    PlaceIntent,
    Quarantine,
    SignalProposed,
)
from adapters.marketdata.events import CandleClosed
from persistence.history.models import EventKind
from persistence.history.rows import Row, money

RECORDED = (
    SignalProposed,
    OpenApproved,
    CloseRequested,
    PlaceIntent,
    KillSwitchChanged,
    EnsureStop,
    Flatten,
    Quarantine,
    Alert,
    AccountEquity,
)


@dataclasses.dataclass(frozen=True, slots=True)
class Observed:
    """A message ``source`` sent at ``now`` (venue ms), shown to the history writer."""

    source: str
    now: int
    message: object


def observed(
    source: str,
    now: int,
    outbox: list[tuple[str, object]],
    types: tuple[type, ...] = RECORDED,
) -> list[Observed]:
    """The messages of ``outbox`` of ``types`` (default: what the audit trail records), each
    once (a message told to two actors is one decision)."""
    seen: set[int] = set()
    found = []
    for _destination, message in outbox:
        if isinstance(message, types) and id(message) not in seen:
            seen.add(id(message))
            found.append(Observed(source, now, message))
    return found


def audit_of(item: Observed) -> Audit | None:
    """The audit event a recorded message stands for (None: not a decision worth keeping)."""
    message, now = item.message, item.now
    match message:
        case SignalProposed(signal=signal):
            return Audit(
                EventKind.SIGNAL, signal.side.value, now, signal.symbol, payload=_plain(message)
            )
        case OpenApproved(signal=signal):
            return Audit(
                EventKind.ALLOCATOR_DECISION, "open", now, signal.symbol, payload=_plain(message)
            )
        case CloseRequested(symbol=symbol) if item.source == ALLOCATOR:
            return Audit(
                EventKind.ALLOCATOR_DECISION, "close", now, symbol, payload=_plain(message)
            )
        case PlaceIntent(intent=intent):
            return Audit(
                EventKind.RISK_DECISION, "approved", now, intent.symbol, payload=_plain(message)
            )
        case KillSwitchChanged(latched=latched, at=at):
            code = "latched" if latched else "released"
            return Audit(EventKind.KILL_SWITCH, code, at, payload=_plain(message))
        case EnsureStop() | Flatten() | Quarantine() if item.source == PROTECTION:
            rung = type(message).__name__.lower()
            symbol = getattr(message, "symbol", None)
            return Audit(EventKind.LADDER_RUNG, rung, now, symbol, payload=_plain(message))
        case Alert(kind=kind, symbol=symbol, at=at):
            return Audit(EventKind.ALERT, kind, at, symbol, payload=_plain(message))
    return None


def event_row(audit: Audit, source: str) -> Row:
    """The ``system_events`` row of ``audit``."""
    payload = _plain(audit.payload)
    event_id = audit.event_id or _event_id(audit, source, payload)
    return Row(
        "system_events",
        {
            "event_id": event_id,
            "at": audit.at,
            "kind": EventKind(audit.kind).value,
            "reason_code": audit.reason_code,
            "symbol": audit.symbol,
            "position_id": audit.position_id,
            "source": source,
            "who": audit.who,
            "payload": payload,
        },
    )


def candle_row(event: CandleClosed) -> Row:
    candle = event.candle
    return Row(
        "candles",
        {
            "symbol": event.symbol,
            "timeframe": event.timeframe,
            "time": candle.open_time,
            "open": money(candle.open),
            "high": money(candle.high),
            "low": money(candle.low),
            "close": money(candle.close),
            "volume": money(candle.volume),
        },
    )


def snapshot_row(reading: AccountEquity) -> Row:
    used = reading.used_margin or Decimal(0)
    available = reading.available_margin
    if available is None:
        available = reading.equity - used
    return Row(
        "account_snapshots",
        {
            "at": reading.ts,
            "equity": money(reading.equity),
            "available_margin": money(
                available if available is not None else reading.equity - used
            ),
            "used_margin": money(used),
            "unrealized_pnl": money(reading.unrealized_pnl or Decimal(0)),
            "exposure": money(reading.exposure or Decimal(0)),
        },
    )


def _event_id(audit: Audit, source: str, payload: Any) -> str:
    text = repr((audit.kind, source, audit.at, audit.reason_code, audit.symbol, payload))
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def _plain(value: Any) -> Any:
    """``value`` as JSON-safe data: dataclasses and mappings as dicts, decimals as strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, frozenset, set)):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


__all__ = [
    "RECORDED",
    "Observed",
    "audit_of",
    "candle_row",
    "event_row",
    "observed",
    "snapshot_row",
]
