"""Alerts for the operators' chats: what is worth a message, and the queue that carries it.

:class:`AlertRelay` is what the trading side holds: ``tell`` never blocks (a full queue drops the
oldest alert and counts it). The Telegram transport drains it on its own event loop
(:mod:`adapters.telegram.bot`); with Telegram off there is no relay at all.

:func:`alert_text` decides what becomes a message, and under which de-duplication key:

- ``Alert`` (protection ladder rungs, quarantine, anything the alerts actor raised);
- position opened (first seen exposed) and closed (with its PnL and R);
- kill switch on (with its reason: operator, daily loss limit, escalation) and off;
- a stale feed;
- plain text from the service itself (startup, READY, shutdown, supervisor escalation).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass

from actors.audit import Observed
from actors.messages import Alert, KillSwitchChanged, PositionChanged, Severity, TradeClosed
from adapters.marketdata.events import FeedStale
from domain.position_table import State

RELAYED = (PositionChanged, TradeClosed, KillSwitchChanged)  # seen in actors' outboxes
QUEUE_SIZE = 1000
REMEMBER_OPENED = 2000
_EXPOSED = frozenset({State.UNPROTECTED, State.PROTECTED, State.EXITING, State.QUARANTINED})


@dataclass(frozen=True, slots=True)
class AlertText:
    """One message. ``key`` says which alert it is (None: never collapsed); ``subject`` what
    it is about (a symbol, the kill switch): repeats of one key are collapsed only while no
    other alert about the same subject came in between."""

    key: str | None
    text: str
    subject: str = ""


class AlertRelay:
    """A bounded, thread-safe queue of alert sources, from the trading side to the transport."""

    def __init__(self, maxsize: int = QUEUE_SIZE) -> None:
        self._queue: deque[object] = deque(maxlen=maxsize)
        self._lock = threading.Lock()
        self.dropped = 0

    def tell(self, message: object) -> None:
        """Queue ``message``; never blocks. When full the oldest is dropped (and counted)."""
        with self._lock:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
            self._queue.append(message)

    def drain(self) -> list[object]:
        with self._lock:
            items = list(self._queue)
            self._queue.clear()
        return items


class AlertTexts:
    """Turns relayed messages into :class:`AlertText` (keeps which positions were announced)."""

    def __init__(self) -> None:
        self._opened: OrderedDict[str, None] = OrderedDict()

    def text_of(self, message: object) -> AlertText | None:
        match message:
            case str():
                return AlertText(None, message)
            case Alert(kind=kind, severity=severity, symbol=symbol, text=text):
                # critical alerts (quarantine) repeat on purpose: never collapsed
                key = None if severity is Severity.CRITICAL else f"alert:{kind}:{symbol}"
                return AlertText(key, f"{severity.value.upper()}: {text}", symbol or kind)
            case FeedStale(symbol=symbol):
                text = f"WARNING: market data for {symbol} is stale"
                return AlertText(f"stale:{symbol}", text, f"feed:{symbol}")
            case Observed(message=inner):
                return self.text_of(inner)
            case KillSwitchChanged(latched=True, reason=reason):
                return AlertText(None, f"KILL SWITCH ON: {reason}", "kill")  # every change
            case KillSwitchChanged(latched=False, reason=reason):
                return AlertText(None, f"kill switch off ({reason})", "kill")
            case TradeClosed(symbol=symbol, pnl=pnl, r_multiple=r):
                r_text = f", {r:+.2f} R" if r is not None else ""
                return AlertText(None, f"closed {symbol}: PnL {pnl:+.2f}{r_text}", symbol)
            case PositionChanged(view=view):
                if view.state not in _EXPOSED or view.position_id in self._opened:
                    return None
                self._opened[view.position_id] = None
                while len(self._opened) > REMEMBER_OPENED:
                    self._opened.popitem(last=False)
                stop = view.stop_price if view.stop_price is not None else "pending"
                return AlertText(
                    None,
                    f"opened {view.symbol} {view.side.value} {view.qty} @ {view.entry_price} "
                    f"({view.origin}), stop {stop}",
                    view.symbol,
                )
        return None


__all__ = ["RELAYED", "AlertRelay", "AlertText", "AlertTexts"]
