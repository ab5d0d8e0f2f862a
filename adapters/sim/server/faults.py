"""Scriptable fault injection for the loopback venue.

A fault rule is JSON posted to ``/_sim/faults``::

    {"kind": "rate_limit", "endpoint": "sendorder", "times": 2}

- ``endpoint``: the REST endpoint name after the version (``sendorder``, ``openorders``,
  ``orders/status``, ``tickers``, ``charts`` for every OHLCV path, ...) or ``*`` (default).
- ``times``: how many matching requests it hits (default 1; ``null`` or ``-1`` = until cleared).

REST kinds (applied in the order the rules were added; the first match wins, except that
``latency`` rules only delay and let the next rule apply):

- ``latency`` (``ms``): wait, then serve normally;
- ``timeout_after_accept`` / ``timeout_before_accept``: the request is (or is not) applied, then
  the client gets no answer: the connection is closed at once, or after ``ms`` when given
  (the client's own timeout usually fires first);
- ``http_5xx`` (``status``, default 503; ``body``, default ``Service Unavailable``): an error
  page, nothing applied;
- ``rate_limit`` (``status``, default 429): the venue's ``apiLimitExceeded`` envelope;
- ``reject_stop`` (``status``, default ``invalidPrice``): a ``sendorder`` of a stop or
  take-profit is rejected with that ``sendStatus`` (what the venue does with a stop that would
  trigger immediately), nothing applied; other orders are not affected and do not count.

WebSocket kinds: ``stale_feed`` (``symbol``; no ticker/trade/book updates for it while active);
``ws_drop`` is an action, not a rule (``POST /_sim/ws/drop``), as is a venue-side cancel
(``POST /_sim/venue_cancel``). Faults live in memory only; a restart clears them.
Every injected fault is logged (``fault_injected``).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

import structlog

log = structlog.get_logger(__name__)

REST_KINDS = frozenset(
    {
        "latency",
        "timeout_after_accept",
        "timeout_before_accept",
        "http_5xx",
        "rate_limit",
        "reject_stop",
    }
)
FEED_KINDS = frozenset({"stale_feed"})


@dataclass(slots=True)
class FaultRule:
    id: int
    kind: str
    endpoint: str = "*"
    times: int | None = 1
    ms: int | None = None
    status: int | str | None = None
    body: str | None = None
    symbol: str | None = None

    def matches(self, endpoint: str) -> bool:
        return self.endpoint in ("*", endpoint)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultBook:
    """The active fault rules (runtime only)."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)

    def add(self, spec: dict[str, Any]) -> FaultRule:
        kind = str(spec.get("kind", ""))
        if kind not in REST_KINDS | FEED_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        times = spec.get("times", 1)
        times = None if times is None or int(times) < 0 else int(times)
        if kind in FEED_KINDS:
            if not spec.get("symbol"):
                raise ValueError(f"{kind} needs a symbol")
            times = None
        rule = FaultRule(
            id=next(self._ids),
            kind=kind,
            endpoint=str(spec.get("endpoint", "*")),
            times=times,
            ms=None if spec.get("ms") is None else int(spec["ms"]),
            status=spec.get("status"),
            body=spec.get("body"),
            symbol=spec.get("symbol"),
        )
        self._rules.append(rule)
        log.info("fault_added", **rule.to_dict())
        return rule

    def clear(self, rule_id: int | None = None, endpoint: str | None = None) -> int:
        before = len(self._rules)
        self._rules = [
            r
            for r in self._rules
            if not (
                (rule_id is None or r.id == rule_id)
                and (endpoint is None or r.endpoint == endpoint)
            )
        ]
        removed = before - len(self._rules)
        log.info("faults_cleared", removed=removed, rule_id=rule_id, endpoint=endpoint)
        return removed

    def rules(self) -> list[FaultRule]:
        return list(self._rules)

    def take(self, endpoint: str, *, is_stop: bool = False) -> list[FaultRule]:
        """Consume the rules that apply to one request: any latencies, then at most one more."""
        hits: list[FaultRule] = []
        for rule in list(self._rules):
            if rule.kind in FEED_KINDS or not rule.matches(endpoint):
                continue
            if rule.kind == "reject_stop" and not (endpoint == "sendorder" and is_stop):
                continue
            hits.append(rule)
            self._consume(rule)
            if rule.kind != "latency":
                break
        for rule in hits:
            log.warning("fault_injected", request_endpoint=endpoint, **rule.to_dict())
        return hits

    def stale_symbols(self) -> set[str]:
        return {r.symbol for r in self._rules if r.kind == "stale_feed" and r.symbol}

    def _consume(self, rule: FaultRule) -> None:
        if rule.times is None:
            return
        rule.times -= 1
        if rule.times <= 0:
            self._rules.remove(rule)
