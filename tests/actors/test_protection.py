"""The protection ladder's policy on a fake clock, the monitor against the in-process venue, and
the alerts core."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from actors.alerts import AlertsCore
from actors.core import ALERTS, EXECUTION, RISK, TELEGRAM, Outbox
from actors.execution import ExecutionCore
from actors.ladder import Ladder, LadderParams, triggers_immediately
from actors.messages import (
    Alert,
    EnsureStop,
    Flatten,
    KillSwitchChanged,
    OrderOutcome,
    Outcome,
    PlaceIntent,
    PositionChanged,
    PositionView,
    Quarantine,
    Severity,
    StopVariant,
    Tick,
)
from actors.protection import Cover, ProtectionCore, reference_price, stop_cover
from domain.models import (
    Order,
    OrderIntent,
    OrderRole,
    OrderStatus,
    OrderType,
    PositionSide,
    PositionSnapshot,
    Side,
)
from domain.position_table import State
from persistence.store import PositionStore
from tests.adapters.conformance.harness import BTC, Fault
from tests.adapters.conformance.inprocess_harness import InProcessHarness

D = Decimal
LONG = PositionSide.LONG
PARAMS = LadderParams(
    check_interval_ms=1_000,
    grace_ms=1_000,
    ack_timeout_ms=3_000,
    backoff_ms=1_000,
    backoff_max_ms=8_000,
    max_stop_retries=2,
    widen_frac=D("0.01"),
    flatten_after_ms=60_000,
    max_flatten_attempts=2,
    quarantine_alert_ms=10_000,
)


# ---------------------------------------------------------------------- helpers


def to_execution(out: Outbox) -> list[object]:
    return [m for d, m in out if d == EXECUTION]


def alert_kinds(out: Outbox) -> list[str]:
    return [m.kind for d, m in out if d == ALERTS and isinstance(m, Alert)]


STOP_PRICE = D(48_000)
STOP_NONE = D(0)


def stop_result(
    outcome: Outcome, at: int, reason: str = "", price: Decimal | None = STOP_PRICE
) -> OrderOutcome:
    return OrderOutcome(BTC, "p1", OrderRole.STOP, "bst-p1-sl-1", outcome, reason, at, price)


def exit_result(outcome: Outcome, at: int, reason: str = "") -> OrderOutcome:
    return OrderOutcome(BTC, "p1", OrderRole.EXIT, "bst-p1-ex-1", outcome, reason, at)


def naked(ladder: Ladder, now: int, *, is_naked: bool = True) -> Outbox:
    return ladder.registry(BTC, "p1", LONG, naked=is_naked, quarantined=False, now=now)


def venue(ladder: Ladder, now: int, *, is_naked: bool, reference: Decimal | None = None) -> Outbox:
    return ladder.venue(
        BTC, naked=is_naked, position_id="p1", side=LONG, reference=reference, now=now
    )


def rungs(logs: list[dict]) -> list[str]:
    return [e["rung"] for e in logs if e["event"] == "ladder_rung"]


# ---------------------------------------------------------------------- the policy


def test_every_rung_in_order_with_back_off_then_quarantine_and_kill_switch() -> None:
    ladder = Ladder(PARAMS)
    with capture_logs() as logs:
        assert naked(ladder, 0) == []
        assert venue(ladder, 0, is_naked=True, reference=D(47_500)) == []
        assert ladder.step(999) == []  # the normal fill -> stop window
        out = ladder.step(1_000)
        assert to_execution(out) == [EnsureStop(BTC, "protection ladder place: naked for 1000 ms")]
        assert alert_kinds(out) == ["ladder_place"]
        assert ladder.step(1_050) == []  # waiting for the answer
        assert ladder.outcome(stop_result(Outcome.REJECTED, 1_100, "invalidPrice"), 1_100) == []
        assert ladder.step(2_099) == []  # back-off 1 s
        out = ladder.step(2_100)
        (retry,) = to_execution(out)
        assert isinstance(retry, EnsureStop) and retry.variant is StopVariant.NORMAL
        assert alert_kinds(out) == ["ladder_retry"]
        ladder.outcome(stop_result(Outcome.REJECTED, 2_100, "temporary: apiLimitExceeded"), 2_100)
        assert ladder.step(4_099) == []  # back-off doubles: 2 s
        out = ladder.step(4_100)
        assert len(to_execution(out)) == 1
        assert alert_kinds(out) == []  # same rung: logged, not alerted again
        ladder.outcome(stop_result(Outcome.REJECTED, 4_100, "invalidPrice"), 4_100)
        assert ladder.step(8_099) == []  # 4 s
        out = ladder.step(8_100)  # retries exhausted: the other trigger signal
        (other,) = to_execution(out)
        assert isinstance(other, EnsureStop)
        assert (other.variant, other.trigger_signal, other.price) == (
            StopVariant.OTHER_TRIGGER,
            "mark",
            None,
        )
        assert alert_kinds(out) == ["ladder_alternative"]
        ladder.outcome(stop_result(Outcome.REJECTED, 8_100, "invalidPrice"), 8_100)
        out = ladder.step(9_100)  # "would trigger immediately": beyond the mark
        (wide,) = to_execution(out)
        assert isinstance(wide, EnsureStop)
        assert wide.variant is StopVariant.WIDENED
        assert wide.trigger_signal == "mark"
        assert wide.price == D(47_500) * D("0.99")
        ladder.outcome(stop_result(Outcome.REJECTED, 9_100, "invalidPrice", None), 9_100)
        out = ladder.step(10_100)
        (flatten,) = to_execution(out)
        assert isinstance(flatten, Flatten) and flatten.force and flatten.symbol == BTC
        assert alert_kinds(out) == ["ladder_flatten"]
        ladder.outcome(exit_result(Outcome.REJECTED, 10_100, "apiLimitExceeded"), 10_100)
        assert ladder.step(11_099) == []
        assert isinstance(to_execution(ladder.step(11_100))[0], Flatten)
        ladder.outcome(exit_result(Outcome.REJECTED, 11_100, "apiLimitExceeded"), 11_100)
        assert ladder.step(13_099) == []
        out = ladder.step(13_100)
    quarantine, latch = to_execution(out)
    assert isinstance(quarantine, Quarantine)
    assert isinstance(latch, KillSwitchChanged) and latch.latched
    assert latch.reason.startswith("protection ladder exhausted: BTC/USD:USD")
    assert (RISK, latch) in out
    assert alert_kinds(out) == ["ladder_quarantine"]
    assert ladder.step(60_000) == []  # no more orders once quarantined
    expected = ["place", "retry", "retry", "alternative", "alternative", "flatten", "flatten"]
    assert rungs(logs) == [*expected, "quarantine"]
    entry = next(e for e in logs if e["event"] == "ladder_rung" and e["rung"] == "flatten")
    assert entry["position_id"] == "p1"
    assert entry["attempt"] == 1
    assert entry["naked_ms"] == 10_100


def test_no_widening_unless_the_venue_said_it_would_trigger_at_once() -> None:
    ladder = Ladder(PARAMS)
    naked(ladder, 0)
    venue(ladder, 0, is_naked=True, reference=D(49_000))
    ladder.outcome(stop_result(Outcome.REJECTED, 0, "wouldNotReducePosition"), 0)
    for now in (1_000, 3_000):  # two retries
        ladder.step(now)
        ladder.outcome(stop_result(Outcome.REJECTED, now, "wouldNotReducePosition"), now)
    (other,) = to_execution(ladder.step(7_000))
    assert isinstance(other, EnsureStop) and other.variant is StopVariant.OTHER_TRIGGER
    ladder.outcome(stop_result(Outcome.REJECTED, 7_000, "wouldNotReducePosition"), 7_000)
    (flatten,) = to_execution(ladder.step(8_000))
    assert isinstance(flatten, Flatten)


def test_naked_too_long_is_flattened_whatever_the_rung() -> None:
    ladder = Ladder(LadderParams(grace_ms=1_000, ack_timeout_ms=3_000, flatten_after_ms=5_000))
    naked(ladder, 0)
    assert isinstance(to_execution(ladder.step(1_000))[0], EnsureStop)
    assert ladder.step(3_999) == []  # no answer yet
    assert ladder.step(4_000) == []  # no answer in time: a failure, back-off follows
    assert ladder.episodes[BTC].failures == 1
    out = ladder.step(5_000)
    (flatten,) = to_execution(out)
    assert isinstance(flatten, Flatten)
    assert "naked for 5000 ms" in flatten.reason


def test_an_acknowledged_stop_waits_for_the_venue_then_resets() -> None:
    ladder = Ladder(PARAMS)
    venue(ladder, 0, is_naked=True)  # a stop the venue cancelled: the registry cannot see it
    ladder.step(1_000)
    ladder.outcome(stop_result(Outcome.ACKED, 1_100), 1_100)
    assert ladder.step(30_000) == []  # believed safe: no escalation before the venue says
    with capture_logs() as logs:
        assert venue(ladder, 31_000, is_naked=False) == []
        out = ladder.step(31_000)
    assert alert_kinds(out) == ["ladder_reset"]
    assert ladder.episodes == {}
    (reset,) = [e for e in logs if e["event"] == "ladder_reset"]
    assert reset["rung"] == "place"
    assert reset["naked_ms"] == 31_000


def test_a_venue_that_keeps_cancelling_the_stop_ends_in_a_flatten() -> None:
    ladder = Ladder(PARAMS)
    venue(ladder, 0, is_naked=True)
    now = 1_000
    sent: list[object] = []
    for _ in range(8):
        sent += to_execution(ladder.step(now))
        ladder.outcome(stop_result(Outcome.ACKED, now), now)
        now += 500
        venue(ladder, now, is_naked=True)  # gone again at the next check
        now += 8_000
    kinds = [type(m).__name__ for m in sent]
    assert kinds[:4] == ["EnsureStop"] * 4
    assert "Flatten" in kinds
    assert ladder.episodes[BTC].failures >= 4


def test_the_normal_fill_to_stop_window_says_nothing() -> None:
    ladder = Ladder(PARAMS)
    with capture_logs() as logs:
        naked(ladder, 0)
        naked(ladder, 50, is_naked=False)  # the stop was acked at once
        assert ladder.step(100) == []
        assert ladder.step(5_000) == []
    assert ladder.episodes == {}
    assert [e for e in logs if e["event"].startswith("ladder")] == []


def test_an_unanswered_stop_is_never_doubled() -> None:
    ladder = Ladder(PARAMS)
    naked(ladder, 0)
    ladder.outcome(stop_result(Outcome.UNKNOWN, 0, "timed out"), 0)  # execution's own stop
    assert ladder.step(1_000) == []  # no new command while it is unresolved
    assert ladder.step(2_999) == []
    out = ladder.step(3_000)  # no answer in time: the place rung failed
    assert alert_kinds(out) == ["ladder_place"]
    assert to_execution(out) == []
    (retry,) = to_execution(ladder.step(4_000))
    assert isinstance(retry, EnsureStop)
    ladder.outcome(stop_result(Outcome.IN_FLIGHT, 4_000, "unresolved"), 4_000)
    assert ladder.step(6_999) == []  # still waiting on the command
    ladder.step(7_000)
    assert ladder.episodes[BTC].failures == 2


def test_release_from_quarantine_starts_afresh() -> None:
    ladder = Ladder(LadderParams(grace_ms=0, max_stop_retries=0, max_flatten_attempts=1))
    naked(ladder, 0)
    ladder.step(0)
    ladder.outcome(stop_result(Outcome.REJECTED, 0, "x"), 0)
    ladder.step(2_000)
    ladder.outcome(stop_result(Outcome.REJECTED, 2_000, "x"), 2_000)
    ladder.step(4_000)
    ladder.outcome(exit_result(Outcome.REJECTED, 4_000, "x"), 4_000)
    assert isinstance(to_execution(ladder.step(6_000))[0], Quarantine)
    ladder.registry(BTC, "p1", LONG, naked=True, quarantined=True, now=6_001)
    out = ladder.registry(BTC, "p1", LONG, naked=False, quarantined=False, now=7_000)
    assert alert_kinds(out) == ["ladder_reset"]
    assert ladder.episodes == {}


def test_immediate_trigger_wording() -> None:
    assert triggers_immediately("invalidPrice")
    assert triggers_immediately('krakenfutures {"sendStatus": {"status": "invalidPrice"}}')
    assert triggers_immediately("stop would trigger immediately")
    assert not triggers_immediately("temporary: apiLimitExceeded")


# ---------------------------------------------------------------------- venue evidence


def snapshot(qty: str = "2", **kw: object) -> PositionSnapshot:
    return PositionSnapshot(BTC, LONG, D(qty), D(50_000), **kw)  # type: ignore[arg-type]


def stop(qty: str, side: Side = Side.SELL, reduce_only: bool = True) -> Order:
    return Order(
        "", BTC, OrderRole.STOP, OrderType.STOP, side, D(qty), reduce_only, OrderStatus.ACKED
    )


def test_stop_cover_needs_reduce_only_exit_side_stops_for_the_size() -> None:
    assert stop_cover(snapshot(), [stop("2")]) is Cover.CORRECT
    assert stop_cover(snapshot(), [stop("1"), stop("1")]) is Cover.UNTIDY
    assert stop_cover(snapshot(), [stop("3")]) is Cover.UNTIDY  # the venue cuts it to the size
    assert stop_cover(snapshot(), [stop("1")]) is Cover.NAKED
    assert stop_cover(snapshot(), [stop("2", Side.BUY)]) is Cover.NAKED  # wrong side
    assert stop_cover(snapshot(), [stop("2", reduce_only=False)]) is Cover.NAKED
    assert stop_cover(snapshot(), []) is Cover.NAKED


def test_reference_price_is_the_mark_or_what_the_pnl_implies() -> None:
    assert reference_price(snapshot(mark_price=D(49_000)), None) == D(49_000)
    assert reference_price(snapshot(unrealized_pnl=D(-2_000)), None) == D(49_000)
    assert reference_price(snapshot(unrealized_pnl=D(-2_000)), None, D(48_900)) == D(48_900)
    assert reference_price(snapshot(), None) is None


# ---------------------------------------------------------------------- the monitor


def long_btc() -> PlaceIntent:
    return PlaceIntent(
        OrderIntent(BTC, PositionSide.LONG, D("0.02"), OrderType.MARKET, None, D(48_000))
    )


def feed(protection: ProtectionCore, out: Outbox, now: int) -> Outbox:
    result: Outbox = []
    for dest, message in out:
        if dest == "protection":
            result += protection.handle(message, now)
    return result


def test_a_venue_side_cancel_is_noticed_and_repaired(tmp_path: Path) -> None:
    harness = InProcessHarness()
    harness.set_price(BTC, D(50_000))
    with PositionStore.open(tmp_path / "p.db") as store:
        execution = ExecutionCore(harness.port, store)
        protection = ProtectionCore(harness.port, params=PARAMS)
        now = harness.now_ms()
        feed(protection, execution.handle(long_btc(), now), now)
        assert protection.handle(Tick(now), now) == []  # protected: nothing to do
        (resting,) = [o for o in harness.port.open_orders(BTC) if o.role is OrderRole.STOP]
        with harness.port.lock:
            harness.engine.venue_cancel(resting.exchange_id)  # the venue drops the stop
        assert protection.handle(Tick(now + 1_000), now + 1_000) == []  # seen; within the grace
        assert protection.report.naked == {BTC: now + 1_000}
        out = protection.handle(Tick(now + 2_000), now + 2_000)
        assert to_execution(out) == [EnsureStop(BTC, "protection ladder place: naked for 1000 ms")]
        assert alert_kinds(out) == ["ladder_place"]
        assert protection.handle(Tick(now + 2_100), now + 2_100) == []  # not repeated at once
        feed(protection, execution.handle(to_execution(out)[0], now + 2_100), now + 2_100)
        assert [o.role for o in harness.port.open_orders(BTC)] == [OrderRole.STOP]
        out = protection.handle(Tick(now + 3_100), now + 3_100)  # the venue confirms
        assert alert_kinds(out) == ["ladder_reset"]
        assert protection.report.naked == {}
        assert protection.ladder.episodes == {}


def test_failed_fetch_is_never_read_as_flat() -> None:
    harness = InProcessHarness()
    protection = ProtectionCore(harness.port, params=PARAMS)
    protection.handle(PositionChanged(view=_view(State.UNPROTECTED)), 0)
    harness.inject(Fault.READ_5XX, times=100)
    out = protection.handle(Tick(10), 10)
    assert protection.report.fetch_failed
    assert alert_kinds(out) == ["protection_check_failed"]
    out = protection.handle(Tick(1_010), 1_010)
    assert isinstance(to_execution(out)[0], EnsureStop)  # the registry still counts


def test_quarantined_positions_alert_on_a_period() -> None:
    harness = InProcessHarness()
    protection = ProtectionCore(harness.port, params=PARAMS)
    protection.handle(PositionChanged(view=_view(State.QUARANTINED, stop_qty=D(1))), 0)
    out = protection.handle(Tick(0), 0)
    assert alert_kinds(out) == ["quarantined"]
    (alert,) = [m for _, m in out if isinstance(m, Alert)]
    assert alert.severity is Severity.CRITICAL
    assert "operator attention" in alert.text
    assert alert_kinds(protection.handle(Tick(9_999), 9_999)) == []
    assert alert_kinds(protection.handle(Tick(10_000), 10_000)) == ["quarantined"]
    protection.handle(PositionChanged(view=_view(State.CLOSED)), 10_001)
    assert alert_kinds(protection.handle(Tick(30_000), 30_000)) == []


def test_naked_exposure_nobody_manages_is_alerted_not_traded() -> None:
    harness = InProcessHarness()
    harness.set_price(BTC, D(50_000))
    harness.port.place_order(
        Order("manual-1", BTC, OrderRole.ENTRY, OrderType.MARKET, Side.BUY, D("0.01"), False,
              OrderStatus.SENDING)
    )  # fmt: skip
    protection = ProtectionCore(harness.port, params=PARAMS)
    assert alert_kinds(protection.handle(Tick(0), 0)) == []
    assert protection.report.unmanaged == [BTC]
    out = protection.handle(Tick(1_000), 1_000)
    assert alert_kinds(out) == ["unmanaged_naked"]
    assert to_execution(out) == []
    for now in range(2_000, 10_000, 1_000):
        out = protection.handle(Tick(now), now)
        assert to_execution(out) == []
        assert alert_kinds(out) == []
    assert alert_kinds(protection.handle(Tick(11_000), 11_000)) == ["unmanaged_naked"]


def test_a_naked_quarantined_position_still_gets_the_ladder() -> None:
    harness = InProcessHarness()
    protection = ProtectionCore(harness.port, params=PARAMS)
    protection.handle(PositionChanged(view=_view(State.QUARANTINED)), 0)
    assert "without a full stop" in str(protection.handle(Tick(0), 0))
    assert isinstance(to_execution(protection.handle(Tick(1_000), 1_000))[0], EnsureStop)


def _view(state: State, stop_qty: Decimal = STOP_NONE) -> PositionView:
    return PositionView(
        "p1", BTC, LONG, state, D(1), D(50_000), None, stop_qty, "t", "strategy", 0, 0
    )


# ---------------------------------------------------------------------- alerts


def test_identical_alerts_are_collapsed_within_the_window() -> None:
    alerts = AlertsCore(window_ms=60_000)
    first = Alert("protection_check_failed", Severity.WARNING, None, "unreadable", 0)
    with capture_logs() as logs:
        assert alerts.raise_alert(first)
        assert not alerts.raise_alert(Alert(first.kind, first.severity, None, first.text, 5_000))
        assert alerts.raise_alert(Alert(first.kind, first.severity, None, "other text", 5_000))
        assert alerts.raise_alert(Alert(first.kind, first.severity, None, first.text, 60_000))
        critical = Alert("x", Severity.CRITICAL, BTC, "y", 60_000)
        assert alerts.handle(critical, 60_000) == [(TELEGRAM, critical)]  # to the operators
        assert alerts.handle(critical, 60_001) == []  # collapsed: not relayed again
    raised = [e for e in logs if e["event"] == "alert_raised"]
    assert len(raised) == 4
    assert raised[-1]["log_level"] == "critical"
    assert alerts.suppressed == 2
    assert [a.text for a in alerts.views()][-1] == "y"


@pytest.mark.parametrize("seconds", [1.0, 120.0])
def test_ladder_params_follow_the_settings(seconds: float) -> None:
    from adapters.settings import ProtectionSettings  # noqa: PLC0415

    settings = ProtectionSettings(check_interval_s=seconds, flatten_after_s=seconds * 60)
    params = LadderParams.from_settings(settings, speed=2.0)
    assert params.check_interval_ms == int(seconds * 2_000)
    assert params.flatten_after_ms == int(seconds * 120_000)
    assert params.grace_ms == 4_000
    assert params.widen_frac == D("0.01")
