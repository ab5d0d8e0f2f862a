"""The operator's pause, unpause and close against the in-process venue."""

from __future__ import annotations

from decimal import Decimal

import pytest

from actors import control
from actors.core import HISTORY
from actors.execution import ExecutionCore, ExecutionParams
from actors.messages import Audit, PlaceIntent, Tick
from domain.models import OrderIntent, OrderRole, OrderStatus, OrderType, PositionSide
from domain.position_table import State
from persistence.history.models import EventKind
from persistence.store import PositionStore
from tests.adapters.conformance.harness import BTC, ETH, Fault
from tests.adapters.conformance.inprocess_harness import InProcessHarness

D = Decimal
PRICES = {BTC: D(50_000), ETH: D(3_000)}


@pytest.fixture
def core(venue: InProcessHarness, store: PositionStore) -> ExecutionCore:
    venue.set_price(ETH, PRICES[ETH])
    return ExecutionCore(venue.port, store, params=ExecutionParams(ambiguous_grace_s=0.0))


def entry(symbol: str, kind: OrderType = OrderType.MARKET) -> PlaceIntent:
    """A long entry on ``symbol``: at market (stop 4% under), or a limit 10% under the price."""
    price = PRICES[symbol]
    return PlaceIntent(
        OrderIntent(
            symbol=symbol,
            side=PositionSide.LONG,
            qty=D("0.02") if symbol == BTC else D("0.5"),
            entry_type=kind,
            entry_price=price * D("0.9") if kind is OrderType.LIMIT else None,
            stop_price=price * D("0.85") if kind is OrderType.LIMIT else price * D("0.96"),
            strategy="test",
        )
    )


def refusals(out: list[tuple[str, object]]) -> list[Audit]:
    return [m for d, m in out if d == HISTORY and isinstance(m, Audit)]


def test_a_paused_symbol_refuses_entries_while_another_trades(
    venue: InProcessHarness, core: ExecutionCore
) -> None:
    now = venue.now_ms()
    result, out = control.pause(ETH, by="tester")(core, now)
    assert result == {
        "command": "pause",
        "by": "tester",
        "symbol": ETH,
        "paused": True,
        "was_paused": False,
        "paused_symbols": [ETH],
        "position": None,
    }
    assert out == [] and core.paused == frozenset({ETH})
    refused = core.handle(entry(ETH), now)
    assert ETH not in core.registry and venue.port.positions() == []
    [audit] = refusals(refused)
    assert (audit.kind, audit.reason_code, audit.symbol) == (
        EventKind.RISK_DECISION,
        "symbol_paused",
        ETH,
    )
    core.handle(entry(BTC), now)
    assert core.registry[BTC].current is State.PROTECTED
    again, _ = control.pause(ETH, by="tester")(core, now)  # idempotent
    assert again["was_paused"] and again["paused_symbols"] == [ETH]


def test_a_protected_position_on_a_paused_symbol_keeps_its_stop(
    venue: InProcessHarness, core: ExecutionCore
) -> None:
    now = venue.now_ms()
    core.handle(entry(BTC), now)
    pos = core.registry[BTC]
    [stop] = [o for o in venue.port.open_orders(BTC) if o.role is OrderRole.STOP]
    result, _ = control.pause(BTC, by="tester")(core, now)
    assert result["position"] == {"position_id": pos.id, "state": "protected"}
    for step in range(1, 4):
        core.handle(Tick(now + step * 1000), now + step * 1000)
    assert pos.current is State.PROTECTED and core.registry[BTC] is pos
    assert [o.client_id for o in venue.port.open_orders(BTC) if o.role is OrderRole.STOP] == [
        stop.client_id
    ]
    assert venue.port.positions()[0].qty == D("0.02")


def test_pause_survives_a_restart_and_unpause_allows_entries_again(
    venue: InProcessHarness, store: PositionStore, core: ExecutionCore
) -> None:
    now = venue.now_ms()
    control.pause(BTC, by="tester")(core, now)
    control.pause(ETH, by="tester")(core, now)
    assert store.get_value("paused_symbols") == sorted([BTC, ETH])
    rebuilt = ExecutionCore(venue.port, store, params=ExecutionParams(ambiguous_grace_s=0.0))
    assert rebuilt.paused == frozenset({BTC, ETH})
    rebuilt.handle(entry(BTC), now)
    assert rebuilt.registry == {}
    result, _ = control.unpause(BTC, by="tester")(rebuilt, now)
    assert (result["paused"], result["was_paused"], result["paused_symbols"]) == (
        False,
        True,
        [ETH],
    )
    assert store.get_value("paused_symbols") == [ETH]
    rebuilt.handle(entry(BTC), now)
    assert rebuilt.registry[BTC].current is State.PROTECTED
    again, _ = control.unpause(BTC, by="tester")(rebuilt, now)  # idempotent
    assert not again["was_paused"] and again["paused_symbols"] == [ETH]


def test_an_unknown_symbol_is_refused_with_an_error_result(
    venue: InProcessHarness, store: PositionStore, core: ExecutionCore
) -> None:
    now = venue.now_ms()
    for command in (control.pause, control.unpause, control.close):
        result, out = command("BTC", by="tester")(core, now)
        assert result["refused"] == "unknown_symbol" and out == []
        assert "'BTC'" in result["error"] and BTC in result["error"]  # the likely spelling
    assert core.paused == frozenset() and store.get_value("paused_symbols") is None
    store.set_value("paused_symbols", ["GONE/USD:USD"], at=now)  # paused, then delisted
    rebuilt = ExecutionCore(venue.port, store)
    result, _ = control.unpause("GONE/USD:USD", by="tester")(rebuilt, now)
    assert result["was_paused"] and result["paused_symbols"] == []


def test_close_sends_one_reduce_only_exit_through_the_journal_even_when_killed(
    venue: InProcessHarness, store: PositionStore, core: ExecutionCore
) -> None:
    now = venue.now_ms()
    core.handle(entry(BTC), now)
    pos = core.registry[BTC]
    control.kill("test")(core, now)  # closing reduces risk: allowed while latched
    result, _ = control.close(BTC, by="tester", reason="test close")(core, now)
    [exit_order] = [o for o in store.orders(position_id=pos.id) if o.role is OrderRole.EXIT]
    assert exit_order.reduce_only and exit_order.type is OrderType.MARKET
    assert exit_order.qty == D("0.02") and exit_order.status in (
        OrderStatus.ACKED,
        OrderStatus.FILLED,
    )
    assert result == {
        "command": "close",
        "by": "tester",
        "reason": "test close",
        "symbol": BTC,
        "position_id": pos.id,
        "closing": True,
        "state": "closed",
        "exit": {"client_id": exit_order.client_id, "status": "filled"},
        "detail": f"reduce-only market exit {exit_order.client_id} filled; the position is closed",
    }
    assert pos.current is State.CLOSED and BTC not in core.registry
    assert venue.port.positions() == [] and venue.port.open_orders(BTC) == []
    assert [t["dest"] for t in store.transitions(pos.id)][-2:] == ["exiting", "closed"]


def test_close_after_a_refused_exit_tries_again_at_once(
    venue: InProcessHarness, store: PositionStore, core: ExecutionCore
) -> None:
    now = venue.now_ms()
    core.handle(entry(BTC), now)
    pos = core.registry[BTC]
    venue.inject(Fault.RATE_LIMIT_WRITE, times=1)
    refused, _ = control.close(BTC, by="tester")(core, now)
    assert not refused["closing"] and refused["exit"]["status"] == "rejected"
    assert "refused" in refused["detail"] and pos.current is State.PROTECTED
    closed, _ = control.close(BTC, by="tester")(core, now)  # no back-off for an operator
    assert closed["closing"] and closed["state"] == "closed"
    assert closed["exit"]["client_id"] != refused["exit"]["client_id"]
    assert venue.port.positions() == []


def test_close_with_no_managed_position_sends_nothing(
    venue: InProcessHarness, store: PositionStore, core: ExecutionCore
) -> None:
    result, out = control.close(BTC, by="tester")(core, venue.now_ms())
    assert (result["position_id"], result["closing"], result["exit"]) == (None, False, None)
    assert result["detail"] == f"no managed position on {BTC}"
    assert out == [] and store.orders() == []


def test_close_cancels_a_working_entry_that_never_filled(
    venue: InProcessHarness, store: PositionStore, core: ExecutionCore
) -> None:
    now = venue.now_ms()
    core.handle(entry(BTC, OrderType.LIMIT), now)
    pos = core.registry[BTC]
    result, _ = control.close(BTC, by="tester")(core, now)
    assert result["closing"] and result["state"] == "cancelled" and result["exit"] is None
    assert pos.current is State.CANCELLED and venue.port.open_orders(BTC) == []
    assert [o.role for o in store.orders(position_id=pos.id)] == [OrderRole.ENTRY]
