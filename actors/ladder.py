"""The protection ladder: what to do about a naked position, decided in one place.

:class:`Ladder` is the single source of truth for escalation. It is pure (no I/O, no clock: ``now``
is passed in) and is driven by :class:`actors.protection.ProtectionCore`, which feeds it evidence
from both views and sends what it returns. Execution only carries out commands (``EnsureStop``,
``Flatten(force=True)``, ``Quarantine``) and reports every stop and exit attempt back
(``OrderOutcome``), whether it was commanded or automatic (the stop placed the moment a fill
exposes a position, a re-size, a reconciliation pass).

One **episode** per symbol, opened when the position is seen naked: by the registry (a
``PositionChanged`` view ``unprotected``, or ``quarantined`` without a full stop), by the venue
(its own positions and open orders: no reduce-only stop on the exit side covering the size; a
stop the venue cancelled is seen here) or by a failed stop. Rungs, in order:

1. ``place``: nothing is answered ``naked_grace_s`` after the position went naked (the normal
   fill -> stop window), or execution's own first stop failed: ``EnsureStop`` (normal). Execution
   first asks the venue whether the stop it believes rests is still working (a venue-side cancel).
2. ``retry``: after a failure, wait ``retry_backoff_s`` (doubling per retry, capped) and ask
   again, ``max_stop_retries`` times.
3. ``alternative``: the same price on the other trigger signal (mark vs last); then, only if a
   reject said the stop would trigger immediately (``invalidPrice``), a price ``widen_frac``
   beyond the current mark (the venue's, the feed's, or the one the unrealized PnL implies; the last
   refused price when no mark is known), triggered by the mark. With no stop resting the domain
   allows any price, so the ladder may widen; a resting stop is never loosened.
4. ``flatten``: ``Flatten(force=True)``, a reduce-only market order, retried with back-off
   ``max_flatten_attempts`` times. A position naked for ``flatten_after_s`` is flattened whatever
   rung it is on: the limit bounds the time naked, not the number of tries.
5. ``quarantine``: ``Quarantine`` to execution, the kill switch latched (``KillSwitchChanged`` to
   execution and risk, as the supervisor's escalation does), a critical alert repeated every
   ``quarantine_alert_interval_s`` (by the protection core). No further orders: every automatic
   rung failed, and more orders would only add to what the operator must untangle.

Decisions:

- An attempt counts as failed when execution reports it rejected (rate limits included) or not
  carried out, or when no answer came within ``stop_ack_timeout_s``. An unanswered (``unknown``)
  stop is resolved by execution by client id and never re-sent meanwhile; a command arriving
  while it is unresolved answers ``in_flight`` and the ladder keeps waiting.
- An acknowledged stop (or exit, or a registry view that turned safe) pauses escalation until
  the next successful venue check. If that check still finds the position naked, the attempt
  counts as failed and the ladder goes on, so a venue that keeps cancelling stops ends in a
  flatten instead of a loop. Counters reset (``ladder_reset``) only when both views agree the
  position is safe (or flat) after the last action; a failed fetch is never read as safe.
- Episodes nobody had to act on (the normal fill -> stop window) end silently.
- A venue position no managed position explains gets no orders (adoption is reconciliation's);
  the protection core alerts about it.
- State is in memory: a restarted protection actor starts its episodes afresh (the kill-switch
  latch and quarantines are persisted by execution).

Every action is logged as ``ladder_rung`` (symbol, position_id, rung, attempt, naked_ms) and the
first action of each rung raises an :class:`~actors.messages.Alert`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

import structlog

from actors.core import ALERTS, EXECUTION, RISK, Outbox
from actors.messages import (
    Alert,
    EnsureStop,
    Flatten,
    KillSwitchChanged,
    OrderOutcome,
    Outcome,
    Quarantine,
    Severity,
    StopVariant,
)
from adapters.settings import ProtectionSettings
from domain.models import OrderRole, PositionSide

log = structlog.get_logger(__name__)


class Rung(StrEnum):
    PLACE = "place"
    RETRY = "retry"
    ALTERNATIVE = "alternative"
    FLATTEN = "flatten"
    QUARANTINE = "quarantine"


SEVERITY: dict[Rung, Severity] = {
    Rung.PLACE: Severity.WARNING,
    Rung.RETRY: Severity.WARNING,
    Rung.ALTERNATIVE: Severity.ERROR,
    Rung.FLATTEN: Severity.CRITICAL,
    Rung.QUARANTINE: Severity.CRITICAL,
}
STOP_RUNGS = frozenset({Rung.PLACE, Rung.RETRY, Rung.ALTERNATIVE})
# how venues word "this stop would trigger at once" (Kraken Futures: sendStatus invalidPrice)
_IMMEDIATE = ("invalidprice", "would trigger", "wouldtrigger", "immediately")


def triggers_immediately(reason: str) -> bool:
    """True when a reject says the stop's trigger condition already holds."""
    text = reason.lower()
    return any(marker in text for marker in _IMMEDIATE)


def other_trigger(signal: str) -> str:
    return "mark" if signal == "last" else "last"


@dataclass(frozen=True, slots=True)
class LadderParams:
    """Timings in ms of the clock the cores are given (venue time)."""

    check_interval_ms: int = 5_000
    grace_ms: int = 2_000
    ack_timeout_ms: int = 10_000
    backoff_ms: int = 2_000
    backoff_max_ms: int = 30_000
    max_stop_retries: int = 3
    widen_frac: Decimal = Decimal("0.01")
    flatten_after_ms: int = 60_000
    max_flatten_attempts: int = 3
    quarantine_alert_ms: int = 60_000
    default_trigger: str = "last"  # the adapters' default trigger signal for stops

    @classmethod
    def from_settings(cls, s: ProtectionSettings, *, speed: float = 1.0) -> LadderParams:
        """Seconds of wall time become ms of venue time (the venue may run ``speed`` x faster)."""

        def ms(seconds: float) -> int:
            return max(1, int(seconds * 1000 * speed))

        return cls(
            check_interval_ms=ms(s.check_interval_s),
            grace_ms=ms(s.naked_grace_s),
            ack_timeout_ms=ms(s.stop_ack_timeout_s),
            backoff_ms=ms(s.retry_backoff_s),
            backoff_max_ms=ms(max(s.retry_backoff_s, s.flatten_after_s / 2)),
            max_stop_retries=s.max_stop_retries,
            widen_frac=Decimal(str(s.widen_frac)),
            flatten_after_ms=ms(s.flatten_after_s),
            max_flatten_attempts=s.max_flatten_attempts,
            quarantine_alert_ms=ms(s.quarantine_alert_interval_s),
        )


@dataclass(slots=True)
class Pending:
    """A command the ladder waits on."""

    role: OrderRole
    sent_at: int


@dataclass(slots=True)
class Episode:
    """One naked stretch of one symbol, from first sighting until safe again."""

    symbol: str
    position_id: str | None
    since: int
    side: PositionSide | None = None
    registry_naked: bool = False
    venue_naked: bool = False
    rung: Rung | None = None
    retries: int = 0
    variants: list[StopVariant] = field(default_factory=list)
    flattens: int = 0
    failures: int = 0
    pending: Pending | None = None
    next_at: int = 0
    acked_at: int | None = None  # believed safe since: waiting for the venue to confirm
    touched_at: int = 0  # last action or acknowledgement
    venue_ok_at: int | None = None  # last venue check that found it covered or flat
    last_reason: str = ""
    immediate: bool = False  # a reject said the stop would trigger at once
    last_price: Decimal | None = None  # the last stop price tried
    reference: Decimal | None = None  # the latest mark (or implied mark) the venue showed
    quarantined_at: int | None = None
    seen_quarantined: bool = False

    @property
    def naked(self) -> bool:
        return self.registry_naked or self.venue_naked

    def naked_ms(self, now: int) -> int:
        return now - self.since


class Ladder:
    """The escalation policy over all symbols (module docstring)."""

    def __init__(self, params: LadderParams | None = None) -> None:
        self.params = params or LadderParams()
        self.episodes: dict[str, Episode] = {}

    # ------------------------------------------------------------------ evidence

    def registry(
        self,
        symbol: str,
        position_id: str | None,
        side: PositionSide | None,
        *,
        naked: bool,
        quarantined: bool,
        now: int,
    ) -> Outbox:
        """A registry view changed; ``position_id`` None when the position ended."""
        out: Outbox = []
        ep = self.episodes.get(symbol)
        if ep is not None and None not in (ep.position_id, position_id):
            if ep.position_id != position_id:
                out += self._reset(ep, now, "another position on the symbol")
                ep = None
            elif ep.rung is Rung.QUARANTINE and ep.seen_quarantined and not quarantined:
                out += self._reset(ep, now, "released from quarantine")
                ep = None
        if ep is None:
            if not naked:
                return out
            ep = self._open(symbol, now)
        ep.position_id = position_id
        ep.side = side or ep.side
        ep.seen_quarantined = ep.seen_quarantined or quarantined
        was, ep.registry_naked = ep.registry_naked, naked
        if not ep.naked and ep.rung is None:
            del self.episodes[symbol]  # the normal fill -> stop window: nothing to say
        elif was and not naked:  # the registry believes a stop rests (or it is flat): confirm
            ep.acked_at = ep.touched_at = now
        elif naked:
            ep.acked_at = None
        return out

    def venue(
        self,
        symbol: str,
        *,
        naked: bool,
        position_id: str | None,
        side: PositionSide | None,
        reference: Decimal | None,
        now: int,
    ) -> Outbox:
        """One successful venue check's finding for ``symbol`` (flat counts as not naked)."""
        ep = self.episodes.get(symbol)
        if ep is None:
            if not naked:
                return []
            ep = self._open(symbol, now)
        if position_id is not None:
            ep.position_id = position_id
        ep.side = side or ep.side
        ep.reference = reference or ep.reference
        ep.venue_naked = naked
        if not naked:
            ep.venue_ok_at = now
            if not ep.naked and ep.rung is None:
                del self.episodes[symbol]
            return []
        if ep.acked_at is not None:
            ep.acked_at = None
            return self._failed(ep, now, "still naked at the venue after an acknowledgement")
        return []

    def outcome(self, result: OrderOutcome, now: int) -> Outbox:
        """Execution's report of a stop or exit attempt."""
        ep = self.episodes.get(result.symbol)
        kind = result.outcome
        if kind is Outcome.ACKED:
            if ep is not None:
                ep.pending = None
                ep.acked_at = ep.touched_at = now
            return []
        if kind is Outcome.IN_FLIGHT:
            return []  # an earlier order is being resolved; the pending command keeps waiting
        is_exit = result.role is OrderRole.EXIT
        if ep is None:
            if kind is Outcome.SKIPPED or is_exit:
                return []  # an ordinary close's troubles are execution's to pace
            ep = self._open(result.symbol, now)
            ep.position_id = result.position_id or None
        relevant = ep.rung is Rung.FLATTEN if is_exit else ep.rung in (None, *STOP_RUNGS)
        if not relevant:
            log.info("ladder_outcome_ignored", symbol=ep.symbol, rung=ep.rung, **_fields(result))
            return []
        if kind is Outcome.UNKNOWN:
            if ep.pending is None:
                ep.pending = Pending(result.role, now)
            return []
        if kind is Outcome.SKIPPED and ep.pending is None:
            return []  # not something the ladder asked for
        reason = f"{kind.value}: {result.reason}"
        return self._failed(ep, now, reason, price=result.price)

    # ------------------------------------------------------------------ decisions

    def step(self, now: int) -> Outbox:
        """Take every action that is due (called on each timer tick)."""
        out: Outbox = []
        for ep in list(self.episodes.values()):
            out += self._advance(ep, now)
        return out

    def _advance(self, ep: Episode, now: int) -> Outbox:
        p = self.params
        if not ep.naked:
            if ep.rung is None:
                del self.episodes[ep.symbol]  # the normal fill -> stop window: nothing to say
                return []
            if ep.venue_ok_at is not None and ep.venue_ok_at >= ep.touched_at:
                return self._reset(ep, now, "covered" if ep.position_id else "flat")
            return []  # believed safe: the next venue check confirms
        if ep.rung is Rung.QUARANTINE or ep.position_id is None or ep.acked_at is not None:
            return []
        if ep.pending is not None:
            if now - ep.pending.sent_at < p.ack_timeout_ms:
                return []
            return self._failed(ep, now, f"no answer within {p.ack_timeout_ms} ms")
        naked_ms = ep.naked_ms(now)
        if naked_ms >= p.flatten_after_ms and ep.rung is not Rung.FLATTEN:
            return self._flatten(ep, now, f"naked for {naked_ms} ms (limit {p.flatten_after_ms})")
        if now < ep.next_at:
            return []
        if ep.rung is None:
            return [] if naked_ms < p.grace_ms else self._place(ep, now, Rung.PLACE)
        if ep.rung in STOP_RUNGS:
            if ep.rung is not Rung.ALTERNATIVE and ep.retries < p.max_stop_retries:
                ep.retries += 1
                return self._place(ep, now, Rung.RETRY)
            variant = self._next_variant(ep)
            if variant is not None:
                return self._place(ep, now, Rung.ALTERNATIVE, variant)
        if ep.flattens < p.max_flatten_attempts:
            return self._flatten(ep, now, f"stop not placed: {ep.last_reason}")
        return self._quarantine(ep, now)

    def _next_variant(self, ep: Episode) -> StopVariant | None:
        if StopVariant.OTHER_TRIGGER not in ep.variants:
            return StopVariant.OTHER_TRIGGER
        if StopVariant.WIDENED not in ep.variants and ep.immediate and self._widened(ep):
            return StopVariant.WIDENED
        return None

    def _widened(self, ep: Episode) -> tuple[Decimal, str | None] | None:
        """A price ``widen_frac`` beyond the most adverse of the mark and the last price tried."""
        refs = [r for r in (ep.reference, ep.last_price) if r is not None]
        if not refs or ep.side is None:
            return None
        frac = self.params.widen_frac
        long = ep.side is PositionSide.LONG
        price = min(refs) * (1 - frac) if long else max(refs) * (1 + frac)
        return price, ("mark" if ep.reference is not None else None)

    # ------------------------------------------------------------------ actions

    def _place(
        self, ep: Episode, now: int, rung: Rung, variant: StopVariant = StopVariant.NORMAL
    ) -> Outbox:
        signal: str | None = None
        price: Decimal | None = None
        if variant is StopVariant.OTHER_TRIGGER:
            signal = other_trigger(self.params.default_trigger)
        elif variant is StopVariant.WIDENED:
            widened = self._widened(ep)
            assert widened is not None
            price, signal = widened
        if variant is not StopVariant.NORMAL:
            ep.variants.append(variant)
        attempt = {Rung.PLACE: 1, Rung.RETRY: ep.retries, Rung.ALTERNATIVE: len(ep.variants)}
        out = self._act(ep, rung, now, attempt[rung], variant=variant.value, trigger_signal=signal)
        ep.pending = Pending(OrderRole.STOP, now)
        reason = f"protection ladder {rung.value}: naked for {ep.naked_ms(now)} ms"
        out.append((EXECUTION, EnsureStop(ep.symbol, reason, variant, signal, price)))
        return out

    def _flatten(self, ep: Episode, now: int, why: str) -> Outbox:
        ep.flattens += 1
        out = self._act(ep, Rung.FLATTEN, now, ep.flattens, why=why)
        ep.pending = Pending(OrderRole.EXIT, now)
        out.append((EXECUTION, Flatten(ep.symbol, f"protection ladder: {why}", force=True)))
        return out

    def _quarantine(self, ep: Episode, now: int) -> Outbox:
        reason = (
            f"protection ladder exhausted: {ep.symbol} naked for {ep.naked_ms(now) // 1000} s, "
            f"{ep.failures} failed attempts, last: {ep.last_reason}"
        )
        out = self._act(ep, Rung.QUARANTINE, now, 1, why=reason)
        ep.quarantined_at = now
        ep.pending = None
        log.error("ladder_exhausted", symbol=ep.symbol, position_id=ep.position_id, reason=reason)
        latch = KillSwitchChanged(True, reason, now)
        out += [(EXECUTION, Quarantine(ep.symbol, reason)), (EXECUTION, latch), (RISK, latch)]
        return out

    def _act(self, ep: Episode, rung: Rung, now: int, attempt: int, **detail: object) -> Outbox:
        """Log the action; the first action of a rung also raises an alert."""
        entered = ep.rung is not rung
        ep.rung = rung
        ep.touched_at = now
        ep.acked_at = None
        naked_ms = ep.naked_ms(now)
        log.warning(
            "ladder_rung",
            symbol=ep.symbol,
            position_id=ep.position_id,
            rung=rung.value,
            attempt=attempt,
            naked_ms=naked_ms,
            failures=ep.failures,
            last_reason=ep.last_reason,
            **detail,
        )
        if not entered:
            return []
        text = (
            f"{ep.symbol}: no stop for {naked_ms / 1000:.1f} s, ladder rung {rung.value} "
            f"(failures {ep.failures}{', last: ' + ep.last_reason if ep.last_reason else ''})"
        )
        return [(ALERTS, Alert(f"ladder_{rung.value}", SEVERITY[rung], ep.symbol, text, now))]

    def _failed(
        self, ep: Episode, now: int, reason: str, *, price: Decimal | None = None
    ) -> Outbox:
        out: Outbox = []
        ep.pending = None
        ep.acked_at = None
        ep.failures += 1
        ep.last_reason = reason
        ep.immediate = ep.immediate or triggers_immediately(reason)
        if price is not None:
            ep.last_price = price
        if ep.rung is None:  # execution's own first stop failed: that was the place rung
            out += self._act(ep, Rung.PLACE, now, 1, by="execution")
        ep.next_at = now + self._wait(ep)
        log.warning(
            "ladder_attempt_failed",
            symbol=ep.symbol,
            position_id=ep.position_id,
            rung=ep.rung.value if ep.rung else None,
            failures=ep.failures,
            reason=reason,
            next_in_ms=ep.next_at - now,
        )
        return out

    def _wait(self, ep: Episode) -> int:
        p = self.params
        if ep.rung is Rung.ALTERNATIVE:
            return p.backoff_ms
        n = ep.flattens - 1 if ep.rung is Rung.FLATTEN else ep.retries
        return int(min(p.backoff_max_ms, p.backoff_ms * 2 ** max(0, n)))

    def _open(self, symbol: str, now: int) -> Episode:
        ep = Episode(symbol, None, now)
        self.episodes[symbol] = ep
        return ep

    def _reset(self, ep: Episode, now: int, why: str) -> Outbox:
        self.episodes.pop(ep.symbol, None)
        if ep.rung is None:
            return []
        naked_ms = ep.naked_ms(now)
        log.info(
            "ladder_reset",
            symbol=ep.symbol,
            position_id=ep.position_id,
            rung=ep.rung.value,
            failures=ep.failures,
            naked_ms=naked_ms,
            reason=why,
        )
        text = f"{ep.symbol}: {why} after {naked_ms / 1000:.1f} s (ladder was at {ep.rung.value})"
        return [(ALERTS, Alert("ladder_reset", Severity.INFO, ep.symbol, text, now))]


def _fields(result: OrderOutcome) -> dict[str, object]:
    return {
        "role": result.role.value,
        "client_id": result.client_id,
        "outcome": result.outcome.value,
        "reason": result.reason,
    }


__all__ = ["Episode", "Ladder", "LadderParams", "Rung", "other_trigger", "triggers_immediately"]
