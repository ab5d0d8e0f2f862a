"""The basic protection monitor against the in-process venue."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from actors.core import EXECUTION
from actors.execution import ExecutionCore
from actors.messages import EnsureStop, PlaceIntent, PositionChanged, Tick
from actors.protection import ProtectionCore
from domain.models import OrderIntent, OrderRole, OrderType, PositionSide
from domain.position_table import State
from persistence.store import PositionStore
from tests.adapters.conformance.harness import BTC, Fault
from tests.adapters.conformance.inprocess_harness import InProcessHarness

D = Decimal


def long_btc() -> PlaceIntent:
    return PlaceIntent(
        OrderIntent(BTC, PositionSide.LONG, D("0.02"), OrderType.MARKET, None, D(48_000))
    )


def feed(protection: ProtectionCore, out: list) -> None:
    for dest, message in out:
        if dest == "protection":
            protection.handle(message, 0)


def test_a_venue_side_cancel_is_noticed_and_repaired(tmp_path: Path) -> None:
    venue = InProcessHarness()
    venue.set_price(BTC, D(50_000))
    with PositionStore.open(tmp_path / "p.db") as store:
        execution = ExecutionCore(venue.port, store)
        protection = ProtectionCore(venue.port, interval_ms=0, grace_ms=1000, repeat_ms=1000)
        now = venue.now_ms()
        feed(protection, execution.handle(long_btc(), now))
        assert protection.handle(Tick(now), now) == []  # protected: nothing to do
        (stop,) = [o for o in venue.port.open_orders(BTC) if o.role is OrderRole.STOP]
        with venue.port.lock:
            venue.engine.venue_cancel(stop.exchange_id)  # the venue drops the stop
        assert protection.handle(Tick(now + 10), now + 10) == []  # within the grace
        out = protection.handle(Tick(now + 1500), now + 1500)
        assert out == [(EXECUTION, EnsureStop(BTC, "naked for 1490 ms"))]
        assert protection.handle(Tick(now + 1600), now + 1600) == []  # not repeated at once
        execution.handle(out[0][1], now + 1600)
        assert [o.role for o in venue.port.open_orders(BTC)] == [OrderRole.STOP]
        assert protection.handle(Tick(now + 5000), now + 5000) == []
        assert protection.report.naked == {}


def test_failed_fetch_is_never_read_as_flat(tmp_path: Path) -> None:
    venue = InProcessHarness()
    protection = ProtectionCore(venue.port, interval_ms=0, grace_ms=0)
    view_changed = PositionChanged(view=_view(State.UNPROTECTED, updated_at=0))
    protection.handle(view_changed, 0)
    venue.inject(Fault.READ_5XX, times=10)
    out = protection.handle(Tick(10), 10)
    assert protection.report.fetch_failed
    assert out == [(EXECUTION, EnsureStop(BTC, "naked for 0 ms"))]  # the registry still counts


def _view(state: State, updated_at: int):
    from actors.messages import PositionView  # noqa: PLC0415

    return PositionView(
        "p1",
        BTC,
        PositionSide.LONG,
        state,
        D(1),
        D(50_000),
        None,
        D(0),
        "t",
        "strategy",
        0,
        updated_at,
    )
