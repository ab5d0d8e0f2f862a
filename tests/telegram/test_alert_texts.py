"""Which messages become alerts for the operators' chats, with what text and grouping key."""

from __future__ import annotations

from decimal import Decimal

from actors.alerting import AlertRelay, AlertTexts
from actors.audit import Observed
from actors.messages import (
    Alert,
    KillSwitchChanged,
    PositionChanged,
    PositionView,
    Severity,
    TradeClosed,
)
from adapters.marketdata.events import FeedStale
from adapters.telegram.alerts import AlertQueue
from domain.models import PositionSide
from domain.position_table import State

D = Decimal


def view(state: State, position_id: str = "p1", stop: str | None = "90") -> PositionView:
    return PositionView(
        position_id=position_id,
        symbol="BTC/USD:USD",
        side=PositionSide.LONG,
        state=state,
        qty=D("0.5"),
        entry_price=D(100),
        stop_price=D(stop) if stop else None,
        stop_qty=D("0.5"),
        strategy="ema_cross",
        origin="strategy",
        created_at=1,
        updated_at=2,
    )


def test_a_position_is_announced_once_when_first_exposed() -> None:
    texts = AlertTexts()
    assert texts.text_of(PositionChanged(view(State.PENDING, stop=None))) is None  # no exposure
    opened = texts.text_of(
        Observed("execution", 1, PositionChanged(view(State.UNPROTECTED, stop=None)))
    )
    assert opened is not None and opened.key is None
    assert opened.text == "opened BTC/USD:USD long 0.5 @ 100 (strategy), stop pending"
    assert texts.text_of(PositionChanged(view(State.PROTECTED))) is None  # already announced
    assert texts.text_of(PositionChanged(view(State.PROTECTED, "p2"))) is not None


def test_closed_trades_kill_switch_and_stale_feeds() -> None:
    texts = AlertTexts()
    closed = texts.text_of(TradeClosed("p1", "ETH/USD:USD", D("-12.5"), -0.5, 9))
    assert closed is not None and closed.text == "closed ETH/USD:USD: PnL -12.50, -0.50 R"
    adopted = texts.text_of(TradeClosed("p2", "ETH/USD:USD", D("3"), None, 9))
    assert adopted is not None and adopted.text == "closed ETH/USD:USD: PnL +3.00"
    on = texts.text_of(KillSwitchChanged(True, "daily loss limit reached", 1))
    assert on is not None and on.text == "KILL SWITCH ON: daily loss limit reached"
    assert (on.key, on.subject) == (None, "kill")  # every change of the switch is announced
    off = texts.text_of(KillSwitchChanged(False, "resumed by telegram:7", 2))
    assert off is not None and off.text == "kill switch off (resumed by telegram:7)"
    stale = texts.text_of(FeedStale("SOL/USD:USD", since_ms=0))
    assert stale is not None and stale.key == "stale:SOL/USD:USD"


def test_critical_alerts_are_never_grouped_and_plain_text_passes() -> None:
    texts = AlertTexts()
    warning = texts.text_of(Alert("ladder_retry", Severity.WARNING, "BTC/USD:USD", "retry", 1))
    assert warning is not None and warning.key == "alert:ladder_retry:BTC/USD:USD"
    critical = texts.text_of(Alert("quarantine", Severity.CRITICAL, "BTC/USD:USD", "q", 1))
    assert critical is not None and critical.key is None and critical.text == "CRITICAL: q"
    ready = texts.text_of("Bastion paper READY")
    assert ready is not None and ready.text == "Bastion paper READY"
    assert texts.text_of(object()) is None


def test_the_relay_never_blocks_and_its_queue_drops_the_oldest() -> None:
    relay = AlertRelay(AlertQueue(maxsize=3))
    for i in range(5):
        relay.tell(f"a{i}")
    relay.tell(object())  # not an alert: nothing queued
    assert relay.queue.take_dropped() == 2
    assert [a.text for a in relay.queue.drain()] == ["a2", "a3", "a4"]
    assert relay.queue.drain() == []
