"""Control commands against the in-process venue: kill, flatten, resume, missing stops, audit,
and the inbox that carries them to a running service."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from actors import control
from actors.core import RISK
from actors.execution import ExecutionCore, ExecutionParams
from actors.messages import KillSwitchChanged, PlaceIntent
from domain.models import Order, OrderIntent, OrderRole, OrderStatus, OrderType, PositionSide, Side
from persistence.control import DONE, EXPIRED, FAILED, INTERRUPTED, ControlInbox
from persistence.store import PositionStore
from tests.adapters.conformance.harness import BTC, Fault
from tests.adapters.conformance.inprocess_harness import InProcessHarness

D = Decimal


@pytest.fixture
def core(venue: InProcessHarness, store: PositionStore) -> ExecutionCore:
    return ExecutionCore(venue.port, store, params=ExecutionParams(ambiguous_grace_s=0.0))


def enter(core: ExecutionCore, now: int, kind: OrderType = OrderType.MARKET) -> None:
    intent = OrderIntent(
        symbol=BTC,
        side=PositionSide.LONG,
        qty=D("0.02"),
        entry_type=kind,
        entry_price=D(45_000) if kind is OrderType.LIMIT else None,
        stop_price=D(44_000) if kind is OrderType.LIMIT else D(48_000),
        take_profits=((D(55_000), D("0.01")),) if kind is OrderType.MARKET else (),
        strategy="test",
    )
    core.handle(PlaceIntent(intent), now)


def manual_buy(venue: InProcessHarness, qty: str) -> None:
    venue.port.place_order(
        Order(
            "", BTC, OrderRole.ENTRY, OrderType.MARKET, Side.BUY, D(qty), False, OrderStatus.SENDING
        )
    )


def open_orders(venue: InProcessHarness) -> dict[str, Order]:
    return {o.client_id or o.exchange_id or "": o for o in venue.port.open_orders(BTC)}


def test_kill_cancels_entries_and_take_profits_keeps_stops_and_is_idempotent(
    venue: InProcessHarness, core: ExecutionCore
) -> None:
    now = venue.now_ms()
    enter(core, now)  # filled: a stop and a take-profit rest
    roles = {o.role for o in venue.port.open_orders(BTC)}
    assert roles == {OrderRole.STOP, OrderRole.TAKE_PROFIT}
    result, out = control.kill("test")(core, now)
    assert result["latched"] and not result["was_latched"]
    assert [c["role"] for c in result["cancelled"]] == ["tp"]
    assert {o.role for o in venue.port.open_orders(BTC)} == {OrderRole.STOP}
    assert (RISK, KillSwitchChanged(True, "test", now)) in out
    assert core.store.get_value("kill_switch")["latched"] is True
    again, _ = control.kill("test")(core, now)
    assert again["was_latched"] and again["cancelled"] == []
    assert {o.role for o in venue.port.open_orders(BTC)} == {OrderRole.STOP}


def test_kill_refuses_new_entries_until_resumed(
    venue: InProcessHarness, core: ExecutionCore
) -> None:
    now = venue.now_ms()
    control.kill("test")(core, now)
    enter(core, now)
    assert core.registry == {}
    result, _ = control.resume(by="tester")(core, now)
    assert result["was_latched"] and not core.kill_latched
    enter(core, now)
    assert BTC in core.registry


def test_kill_with_flatten_closes_managed_and_unknown_exposure_and_checks_flat(
    venue: InProcessHarness, core: ExecutionCore
) -> None:
    manual_buy(venue, "0.05")  # nobody manages this yet
    result, _ = control.kill("flatten test", flatten=True)(core, venue.now_ms())
    assert result["flatten"] == {"tried": [BTC], "flat": True, "still_open": []}
    assert venue.port.positions() == []
    assert venue.port.open_orders(BTC) == []  # the adopted position's stop went with it


def test_missing_stops_dry_run_then_apply(venue: InProcessHarness, core: ExecutionCore) -> None:
    manual_buy(venue, "0.03")
    now = venue.now_ms()
    dry, _ = control.missing_stops()(core, now)
    assert dry["naked"][0]["symbol"] == BTC and dry["naked"][0]["qty"] == "0.03"
    assert venue.port.open_orders(BTC) == [] and core.registry == {}
    done, _ = control.missing_stops(apply=True)(core, now)
    [stop] = venue.port.open_orders(BTC)
    assert stop.reduce_only and stop.side is Side.SELL and stop.qty == D("0.03")
    assert str(stop.trigger_price) == dry["naked"][0]["stop"]
    assert done["stops"][0]["symbol"] == BTC
    assert control.missing_stops()(core, now)[0]["naked"] == []


def test_audit_classifies_every_open_order(venue: InProcessHarness, core: ExecutionCore) -> None:
    now = venue.now_ms()
    enter(core, now)
    venue.port.place_order(  # someone's resting bid, and a stray stop of a closed position
        Order(
            "",
            BTC,
            OrderRole.ENTRY,
            OrderType.LIMIT,
            Side.BUY,
            D("0.01"),
            False,
            OrderStatus.SENDING,
            price=D(40_000),
        )
    )
    venue.port.place_order(
        Order(
            "bst-gone1-sl-1",
            BTC,
            OrderRole.STOP,
            OrderType.STOP,
            Side.SELL,
            D("0.01"),
            True,
            OrderStatus.SENDING,
            trigger_price=D(41_000),
        )
    )
    result, _ = control.audit()(core, now)
    classes = sorted(r["class"] for r in result["orders"])
    assert classes == ["orphan", "stop", "take_profit", "unknown"]
    assert result["needs_attention"]
    assert result["positions"][0]["classification"] == "chaos"


def test_inbox_requests_run_once_in_order_and_failures_are_recorded(
    tmp_path: Path, venue: InProcessHarness, core: ExecutionCore
) -> None:
    now = venue.now_ms()
    with ControlInbox(tmp_path / "control.db") as inbox:
        first = inbox.submit("kill", {"reason": "from the inbox"}, "tester", timeout_s=30)
        bad = inbox.submit("explode", {}, "tester", timeout_s=30)
        second = inbox.submit("resume", {}, "tester", timeout_s=30)
        ran: list[str] = []

        def execute(command: control.Command) -> control.Result:
            result, _ = command(core, now)
            ran.append(result["command"])
            return result

        ctl = control.ControlCore(inbox, execute)
        assert ctl.drain() == 3 and ctl.drain() == 0
        assert ran == ["kill", "resume"]
        assert inbox.result(first)[0] == DONE
        status, error = inbox.result(bad)
        assert status == FAILED and "explode" in error["error"]  # type: ignore[index]
        assert inbox.result(second)[0] == DONE
        assert not core.kill_latched


def test_latched_on_start_applies_only_until_a_latch_was_persisted(
    venue: InProcessHarness, store: PositionStore
) -> None:
    params = ExecutionParams(latched_on_start=True)
    assert ExecutionCore(venue.port, store, params=params).kill_latched
    first = ExecutionCore(venue.port, store, params=params)
    control.resume(by="tester")(first, venue.now_ms())  # an operator's decision is persisted
    assert not ExecutionCore(venue.port, store, params=params).kill_latched


def test_flatten_retries_a_refused_exit_and_closes_a_quarantined_position(
    venue: InProcessHarness, core: ExecutionCore
) -> None:
    now = venue.now_ms()
    enter(core, now)
    pos = core.registry[BTC]
    core.apply_event(pos, lambda: pos.quarantine("exits refused", at=now), now)
    venue.inject(Fault.RATE_LIMIT_WRITE, times=1)  # the first exit is refused
    result, _ = control.kill("flatten", flatten=True)(core, now)
    assert result["flatten"]["flat"], result
    assert venue.port.positions() == []


def test_missing_stops_says_so_when_the_venue_cannot_be_read(
    venue: InProcessHarness, core: ExecutionCore
) -> None:
    manual_buy(venue, "0.03")
    venue.inject(Fault.READ_5XX, times=10)
    result, _ = control.missing_stops()(core, venue.now_ms())
    assert "venue unreadable" in result["error"] and result["naked"] == []


def test_inbox_withdraws_late_requests_and_never_reruns_an_interrupted_one(
    tmp_path: Path,
) -> None:
    with ControlInbox(tmp_path / "control.db") as inbox:
        late = inbox.submit("resume", {}, "tester", timeout_s=0)
        assert inbox.wait(late, timeout_s=0)[0] == EXPIRED  # its command gave up: withdrawn
        assert inbox.pending() == [] and not inbox.claim(late)
        cut = inbox.submit("kill", {"reason": "x"}, "tester", timeout_s=30)
        assert inbox.claim(cut) and not inbox.claim(cut)  # taken once only
        assert inbox.interrupt_running() == 1  # the service died while running it
        assert inbox.result(cut)[0] == INTERRUPTED and inbox.pending() == []
