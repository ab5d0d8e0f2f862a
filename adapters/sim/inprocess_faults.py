"""Faults staged for :class:`~adapters.sim.inprocess.InProcessExchange`, consulted at its boundary.

The kinds and their effects mirror the loopback server's fault rules
(:mod:`adapters.sim.server.faults`), so the same test reads the same against both venues:

- ``timeout_after_accept`` (order sends): the order is applied, then ``AmbiguousOutcome``;
- ``timeout_before_accept`` (order sends): nothing applied, ``AmbiguousOutcome``;
- ``rate_limit_write`` (order sends): nothing applied, ``RateLimited``;
- ``reject_stop`` (stop and take-profit sends only): nothing applied, ``Rejected`` with reason
  ``invalidPrice`` (the venue's answer to a trigger that would fire at once);
- ``read_5xx`` (position reads): ``Temporary``; ``rate_limit_read`` (open-order reads):
  ``RateLimited``. Reads retry, and every attempt consumes a hit.

Rules are kept in the order they were added; a call consumes at most one hit, from the first rule
that applies to it. Each rule hits its next ``times`` matching calls and then disappears.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)

TIMEOUT_AFTER_ACCEPT = "timeout_after_accept"
TIMEOUT_BEFORE_ACCEPT = "timeout_before_accept"
RATE_LIMIT_WRITE = "rate_limit_write"
REJECT_STOP = "reject_stop"
READ_5XX = "read_5xx"
RATE_LIMIT_READ = "rate_limit_read"

FAULT_KINDS = frozenset(
    {
        TIMEOUT_AFTER_ACCEPT,
        TIMEOUT_BEFORE_ACCEPT,
        RATE_LIMIT_WRITE,
        REJECT_STOP,
        READ_5XX,
        RATE_LIMIT_READ,
    }
)


@dataclass(slots=True)
class _Rule:
    kind: str
    left: int


class FaultPlan:
    """Staged fault hits, thread-safe; ``kind`` values are the strings above."""

    def __init__(self) -> None:
        self._rules: list[_Rule] = []  # in insertion order
        self._lock = threading.Lock()

    def add(self, kind: str, times: int = 1) -> None:
        """Stage ``times`` hits of ``kind``; unknown kinds and ``times < 1`` are refused."""
        name = str(kind)
        if name not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {name!r}")
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}")
        with self._lock:
            self._rules.append(_Rule(name, times))
        log.info("fault_added", kind=name, times=times)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def pending(self) -> int:
        """Hits staged and not yet consumed."""
        with self._lock:
            return sum(rule.left for rule in self._rules)

    def take(self, kinds: Iterable[str], what: str) -> str | None:
        """Consume one hit of the first staged rule whose kind is in ``kinds``; its kind or None."""
        if not self._rules:  # nothing staged (the usual case): no lock, no set
            return None
        wanted = frozenset(kinds)
        with self._lock:
            for rule in self._rules:
                if rule.kind not in wanted:
                    continue
                rule.left -= 1
                if rule.left <= 0:
                    self._rules.remove(rule)
                log.warning("fault_injected", kind=rule.kind, call=what)
                return rule.kind
        return None
