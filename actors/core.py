"""The handler contract every actor's logic follows.

An actor's behaviour lives in a synchronous *core*: ``handle(message, now)`` returns the messages
to send as ``(destination, message)`` pairs and touches nothing else shared. A thin pykka actor
runs a core live (messages arrive on its thread, the outbox goes through the directory); a
backtest dispatches the very same cores synchronously, with a simulated clock.

Destination names: ``allocator``, ``risk``, ``execution``, ``protection``, ``alerts``,
``control``, ``history``, and ``analyzer:<symbol>`` (one analyzer per symbol).
"""

from __future__ import annotations

from typing import Protocol

Outbox = list[tuple[str, object]]

ALLOCATOR = "allocator"
RISK = "risk"
EXECUTION = "execution"
PROTECTION = "protection"
ALERTS = "alerts"
CONTROL = "control"
HISTORY = "history"  # the history writer: audit events, candles, account snapshots
TELEGRAM = "telegram"  # the operators' chats (alerts), when Telegram is configured


def analyzer(symbol: str) -> str:
    return f"analyzer:{symbol}"


class Core(Protocol):
    """An actor's logic: one message at a time, time passed in."""

    name: str

    def handle(self, message: object, now: int) -> Outbox: ...
