"""Alert messages on their way to the operators' chats: the text, and the queue that carries it.

The trading side (:mod:`actors.alerting`) decides what is worth a message and puts an
:class:`AlertText` into an :class:`AlertQueue`; ``put`` never blocks (a full queue drops the
oldest and counts it). The Telegram transport drains the queue on its own event loop
(:mod:`adapters.telegram.delivery`).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

QUEUE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class AlertText:
    """One message. ``key`` says which alert it is (None: never collapsed); ``subject`` what
    it is about (a symbol, the kill switch): repeats of one key are collapsed only while no
    other alert about the same subject came in between."""

    key: str | None
    text: str
    subject: str = ""


class AlertQueue:
    """A bounded, thread-safe queue of alert texts."""

    def __init__(self, maxsize: int = QUEUE_SIZE) -> None:
        self._queue: deque[AlertText] = deque(maxlen=maxsize)
        self._lock = threading.Lock()
        self.dropped = 0

    def put(self, alert: AlertText) -> None:
        """Queue ``alert``; never blocks. When full the oldest is dropped (and counted)."""
        with self._lock:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
            self._queue.append(alert)

    def drain(self) -> list[AlertText]:
        with self._lock:
            items = list(self._queue)
            self._queue.clear()
        return items

    def take_dropped(self) -> int:
        with self._lock:
            dropped, self.dropped = self.dropped, 0
        return dropped


__all__ = ["QUEUE_SIZE", "AlertQueue", "AlertText"]
