"""Per-symbol staleness on the local clock; pure (time is passed in).

Decisions: a symbol is stale when nothing about it (ticker, trade, snapshot) arrived for more
than ``threshold_ms``; the venue's heartbeat does not count for any symbol. Every symbol starts
stale (nothing seen yet) without a report: consumers assume stale until told fresh. Reports are
transitions only: :meth:`touch` says when a symbol became fresh, :meth:`expired` lists the ones
that went stale since the last call.
"""

from __future__ import annotations

from collections.abc import Iterable


class StalenessTracker:
    def __init__(self, symbols: Iterable[str], threshold_ms: int) -> None:
        if threshold_ms <= 0:
            raise ValueError("threshold_ms must be positive")
        self.threshold_ms = threshold_ms
        self._last: dict[str, int | None] = dict.fromkeys(symbols)
        self._stale: set[str] = set(self._last)

    def touch(self, symbol: str, now_ms: int) -> bool:
        """Record a message for ``symbol``; True when it was reported stale (now fresh)."""
        self._last[symbol] = now_ms
        if symbol in self._stale:
            self._stale.discard(symbol)
            return True
        return False

    def stale(self, symbol: str, now_ms: int) -> bool:
        """Whether ``symbol`` is stale at ``now_ms`` (unknown or never seen: stale)."""
        last = self._last.get(symbol)
        return last is None or now_ms - last > self.threshold_ms

    def last_seen(self, symbol: str) -> int | None:
        return self._last.get(symbol)

    def expired(self, now_ms: int) -> list[tuple[str, int]]:
        """Symbols that went stale since the last call, with their last message time."""
        out: list[tuple[str, int]] = []
        for symbol, last in self._last.items():
            if last is not None and symbol not in self._stale and now_ms - last > self.threshold_ms:
                self._stale.add(symbol)
                out.append((symbol, last))
        return out
