"""Fills re-polled in the overlap window: what the core remembers must change nothing.

``ExecutionCore`` keeps the persisted fill cursor in memory and remembers the fill ids the store
holds, so a finished position's fills seen again are not looked up in the store on every tick.
These tests show the result is the same as asking the store each time: known fills are silent
no-ops, a new fill is still applied, an unknown one is still reported every time, and a core
that remembers nothing (a restart) still finds the fills in the store.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from structlog.testing import capture_logs

from actors.execution import FILL_CURSOR
from actors.messages import Tick
from domain.models import (
    Order,
    OrderRole,
    OrderStatus,
    OrderType,
    Side,
)
from domain.position_table import State
from persistence.store import PositionStore
from tests.actors.test_execution import core, intent
from tests.adapters.conformance.harness import BTC
from tests.adapters.conformance.inprocess_harness import InProcessHarness

D = Decimal


def count_fill_ids(store: PositionStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    asked: list[str] = []
    original: Callable[[str], set[str]] = store.fill_ids

    def fill_ids(position_id: str) -> set[str]:
        asked.append(position_id)
        return original(position_id)

    monkeypatch.setattr(store, "fill_ids", fill_ids)
    return asked


def unknown_fill_events(logs: list[dict]) -> list[dict]:
    return [e for e in logs if e["event"] == "fill_for_unknown_position"]


def test_refilled_window_is_silent_and_a_late_fill_still_applies(
    venue: InProcessHarness, store: PositionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ex = core(venue, store)
    ex.handle(intent(), venue.now_ms())
    (pos,) = ex.registry.values()
    assert pos.current is State.PROTECTED
    asked = count_fill_ids(store, monkeypatch)
    venue.set_price(BTC, D(47_000))  # the stop fires: a late fill, new to the core
    with capture_logs() as logs:
        ex.handle(Tick(venue.now_ms()), venue.now_ms())
        assert pos.current is State.CLOSED
        transitions = len(store.transitions(pos.id))
        for _ in range(3):  # entry and exit fills are polled again (overlap window)
            ex.handle(Tick(venue.now_ms()), venue.now_ms())
    assert len(store.transitions(pos.id)) == transitions
    assert store.count("fills") == 2
    assert unknown_fill_events(logs) == []
    assert asked == []  # both fills were committed by this core: no store look-up needed
    assert store.get_value(FILL_CURSOR) == max(f.ts for f in venue.port.fills())


def test_a_restarted_core_finds_the_fills_in_the_store(
    venue: InProcessHarness, store: PositionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ex = core(venue, store)
    ex.handle(intent(), venue.now_ms())
    venue.set_price(BTC, D(47_000))
    ex.handle(Tick(venue.now_ms()), venue.now_ms())
    assert ex.registry == {}
    fresh = core(venue, store)  # remembers nothing: the store answers, once per fill
    asked = count_fill_ids(store, monkeypatch)
    with capture_logs() as logs:
        for _ in range(3):
            fresh.handle(Tick(venue.now_ms()), venue.now_ms())
    assert unknown_fill_events(logs) == []
    assert len(asked) == 2
    assert store.count("fills") == 2


def test_an_unknown_positions_fill_is_reported_on_every_poll(
    venue: InProcessHarness, store: PositionStore
) -> None:
    ex = core(venue, store)
    ghost = Order(
        client_id="bst-ghost-en-1",
        symbol=BTC,
        role=OrderRole.ENTRY,
        type=OrderType.MARKET,
        side=Side.BUY,
        qty=D("0.01"),
        reduce_only=False,
        status=OrderStatus.SENDING,
    )
    venue.port.place_order(ghost)
    with capture_logs() as logs:
        ex.handle(Tick(venue.now_ms()), venue.now_ms())
        ex.handle(Tick(venue.now_ms()), venue.now_ms())
    assert len(unknown_fill_events(logs)) == 2  # a "no" from the store is never remembered
    assert store.count("fills") == 0
