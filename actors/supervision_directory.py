"""Directory: the one place actors look up each other's current ref, at send time.

Actors hold names, not refs, so a restart is invisible to senders: the supervisor replaces the
entry and the next ``tell`` reaches the new incarnation. Decisions:

- ``tell`` to a child that is down (no entry, or a ref that died before the supervisor noticed)
  drops the message, logs ``message_dropped`` and returns ``False``; it never raises, so one dead
  actor cannot crash its senders. The restarted child rebuilds its state from the store or the
  feed rather than from messages it missed.
- ``ask`` is for queries from outside the pipeline and always takes a timeout; a down child
  raises :class:`ChildDown`.
- Only the message type is logged, never its content.
"""

from __future__ import annotations

import threading
from typing import Any

import pykka
import structlog

log = structlog.get_logger(__name__)


class ChildDown(LookupError):
    """The named actor has no live ref right now (restarting, escalated, or stopped)."""


class Directory:
    """A thread-safe map from actor name to its current live ref (or ``None`` while down)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refs: dict[str, pykka.ActorRef[Any] | None] = {}

    def set(self, name: str, ref: pykka.ActorRef[Any] | None) -> None:
        with self._lock:
            self._refs[name] = ref

    def get(self, name: str) -> pykka.ActorRef[Any] | None:
        """The current ref if it is alive, else ``None``."""
        with self._lock:
            ref = self._refs.get(name)
        if ref is None or not ref.is_alive():
            return None
        return ref

    def names(self) -> list[str]:
        with self._lock:
            return list(self._refs)

    def tell(self, name: str, message: Any) -> bool:
        """Send ``message`` to ``name``; ``False`` (and a log line) if it was dropped."""
        ref = self.get(name)
        if ref is not None:
            try:
                ref.tell(message)
            except pykka.ActorDeadError:
                pass
            else:
                return True
        log.warning("message_dropped", actor=name, message=type(message).__name__)
        return False

    def ask(self, name: str, message: Any, *, timeout_s: float) -> Any:
        """Query ``name``; raises :class:`ChildDown`, ``pykka.Timeout`` or the actor's error."""
        ref = self.get(name)
        if ref is None:
            msg = f"actor {name!r} is down"
            raise ChildDown(msg)
        try:
            return ref.ask(message, timeout=timeout_s)
        except pykka.ActorDeadError as exc:
            msg = f"actor {name!r} is down"
            raise ChildDown(msg) from exc
