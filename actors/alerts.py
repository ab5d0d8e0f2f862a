"""Alerts: where every ``Alert`` ends up (Telegram relays them later).

The core logs each alert as ``alert_raised`` (at the level its severity names) and keeps the most
recent ones for status views. An alert identical to one raised within ``window_ms`` (same kind,
severity, symbol and text) is collapsed: counted and logged at debug level only, so a condition
that repeats every few seconds (an unreadable venue) does not flood the operator. Alerts that must
repeat (a quarantined position) say how long the condition has lasted, or are spaced by more than
the window, so they are never collapsed.
"""

from __future__ import annotations

from collections import deque

import structlog

from actors.core import TELEGRAM, Outbox
from actors.messages import Alert, Severity

log = structlog.get_logger(__name__)
KEEP = 200
_LEVEL = {
    Severity.INFO: "info",
    Severity.WARNING: "warning",
    Severity.ERROR: "error",
    Severity.CRITICAL: "critical",
}


class AlertsCore:
    name = "alerts"

    def __init__(self, *, window_ms: int = 60_000) -> None:
        self.window_ms = window_ms
        self.recent: deque[Alert] = deque(maxlen=KEEP)
        self.suppressed = 0
        self._last: dict[tuple[str, Severity, str | None, str], int] = {}

    def handle(self, message: object, now: int) -> Outbox:
        if isinstance(message, Alert) and self.raise_alert(message):
            return [(TELEGRAM, message)]  # relayed to the operators' chats, if configured
        return []

    def raise_alert(self, alert: Alert) -> bool:
        """Log and keep ``alert``; False when it was collapsed into an identical recent one."""
        key = (alert.kind, alert.severity, alert.symbol, alert.text)
        last = self._last.get(key)
        if last is not None and 0 <= alert.at - last < self.window_ms:
            self.suppressed += 1
            log.debug("alert_suppressed", kind=alert.kind, symbol=alert.symbol)
            return False
        self._last[key] = alert.at
        self._forget(alert.at)
        self.recent.append(alert)
        getattr(log, _LEVEL[alert.severity])(
            "alert_raised",
            kind=alert.kind,
            severity=alert.severity.value,
            symbol=alert.symbol,
            text=alert.text,
            at=alert.at,
        )
        return True

    def views(self) -> list[Alert]:
        """The most recent alerts, oldest first (for status and a future Telegram relay)."""
        return list(self.recent)

    def _forget(self, now: int) -> None:
        if len(self._last) > 4 * KEEP:
            self._last = {k: t for k, t in self._last.items() if now - t < self.window_ms}


__all__ = ["AlertsCore"]
