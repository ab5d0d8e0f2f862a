"""Alerts for the operators' chats: what of the actors' traffic is worth a message.

:class:`AlertRelay` is what the trading side holds: ``tell`` never blocks; it turns a message
into an :class:`~adapters.telegram.alerts.AlertText` and puts it into the transport's bounded
queue (:mod:`adapters.telegram.delivery` sends it). With Telegram off there is no relay at all.

:class:`AlertTexts` decides what becomes a message, and under which grouping key and subject:

- ``Alert`` (protection ladder rungs, quarantine, anything the alerts actor raised);
- position opened (first seen exposed) and closed (with its PnL and R);
- kill switch on (with its reason: operator, daily loss limit, escalation) and off;
- a stale feed;
- plain text from the service itself (startup, READY, shutdown, supervisor escalation).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from actors.audit import Observed
from actors.messages import Alert, KillSwitchChanged, PositionChanged, Severity, TradeClosed
from adapters.marketdata.events import FeedStale
from adapters.telegram.alerts import AlertQueue, AlertText
from domain.position_table import State

RELAYED = (PositionChanged, TradeClosed, KillSwitchChanged)  # seen in actors' outboxes
REMEMBER_OPENED = 2000
_EXPOSED = frozenset({State.UNPROTECTED, State.PROTECTED, State.EXITING, State.QUARANTINED})


class AlertRelay:
    """Actor messages in, alert texts out to the queue; thread-safe, never blocks."""

    def __init__(self, queue: AlertQueue | None = None) -> None:
        self.queue = queue or AlertQueue()
        self._texts = AlertTexts()
        self._lock = threading.Lock()

    def tell(self, message: object) -> None:
        with self._lock:  # the texts remember which positions were announced
            alert = self._texts.text_of(message)
        if alert is not None:
            self.queue.put(alert)


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


__all__ = ["RELAYED", "AlertRelay", "AlertTexts"]
