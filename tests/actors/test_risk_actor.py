"""The risk core: sized intents, logged refusals, and risk state from trades and time."""

from decimal import Decimal

from structlog.testing import capture_logs

from actors.core import EXECUTION
from actors.messages import (
    AccountEquity,
    FeedFresh,
    FeedStale,
    KillSwitchChanged,
    MarkPrice,
    OpenApproved,
    PlaceIntent,
    PositionChanged,
    PositionView,
    Tick,
    TradeClosed,
)
from actors.risk import RiskCore
from domain.models import Instrument, OrderType, PositionSide, Signal
from domain.position_table import State
from domain.precision import is_multiple
from domain.risk import RiskParams, RiskState
from tests.actors.outbox import audits, sent

D = Decimal
DAY = 86_400_000
NOW = 1_735_689_600_000 + 12 * 3_600_000  # noon UTC
INST = Instrument("PF_TEST", "TST", "USD", D("0.01"), D("0.1"), D("1"))
OTHERS = {
    f"PF_{i}": Instrument(f"PF_{i}", str(i), "USD", D("0.01"), D("0.1"), D("1")) for i in range(6)
}
INSTRUMENTS = {"PF_TEST": INST, **OTHERS}


def signal(symbol: str = "PF_TEST", at: int = NOW) -> Signal:
    return Signal(
        symbol,
        PositionSide.LONG,
        D(100),
        D(98),
        (D(104), D(106)),
        0.8,
        ("ema",),
        at - 1_000,
        at + 600_000,
        "ema_cross",
        "15m",
    )


def approved(symbol: str = "PF_TEST", at: int = NOW) -> OpenApproved:
    return OpenApproved(signal(symbol, at), ("selected",))


def core(state: RiskState | None = None) -> RiskCore:
    c = RiskCore(RiskParams(), INSTRUMENTS, state)
    c.handle(AccountEquity(D(10_000), NOW - 5_000), NOW - 5_000)
    return c


def refusals(logs: list[dict]) -> list[str]:
    return [e["reason"] for e in logs if e["event"] == "risk_refused"]


def intents(out: list[tuple[str, object]]) -> list:
    assert all(d == EXECUTION and isinstance(m, PlaceIntent) for d, m in out)
    return [m.intent for _, m in out if isinstance(m, PlaceIntent)]


def test_an_approved_signal_becomes_a_sized_intent_on_the_lot_grid() -> None:
    c = core()
    (intent,) = intents(c.handle(approved(), NOW))
    # 0.5% of 10000 at risk over (2 + 0.099 fees) per contract = 23.82 -> 23.8
    assert intent.qty == D("23.8")
    assert is_multiple(intent.qty, INST.lot_size)
    assert intent.entry_type is OrderType.LIMIT
    assert (intent.entry_price, intent.stop_price) == (D(100), D(98))
    assert intent.take_profits == ((D(104), D("11.9")), (D(106), D("11.9")))
    assert intent.created_at == NOW
    # until execution reports it, the symbol counts as open
    with capture_logs() as logs:
        assert sent(c.handle(approved(), NOW + 10)) == []
    assert refusals(logs) == ["symbol_has_position"]


def test_kill_switch_refuses_until_released() -> None:
    c = core()
    c.handle(KillSwitchChanged(latched=True, reason="operator", at=NOW), NOW)
    with capture_logs() as logs:
        out = c.handle(approved(), NOW)
    assert sent(out) == []
    assert refusals(logs) == ["kill_switch"]
    refused = [(a.kind, a.reason_code, a.symbol, a.at) for a in audits(out)]
    assert refused == [("risk_decision", "kill_switch", "PF_TEST", NOW)]  # for the audit trail
    assert c.state.kill_switch
    c.handle(KillSwitchChanged(latched=False, reason="resume", at=NOW), NOW)
    assert len(intents(c.handle(approved(), NOW))) == 1


def test_persisted_kill_switch_survives_a_restart() -> None:
    c = core(RiskState(kill_switch=True))
    with capture_logs() as logs:
        assert sent(c.handle(approved(), NOW)) == []
    assert refusals(logs) == ["kill_switch"]


def test_stale_feed_refuses_until_fresh() -> None:
    c = core()
    c.handle(FeedStale("PF_TEST", since_ms=NOW - 90_000), NOW)
    c.handle(FeedStale("PF_1", since_ms=NOW - 90_000), NOW)
    with capture_logs() as logs:
        assert sent(c.handle(approved(), NOW)) == []
    assert refusals(logs) == ["stale_data"]
    c.handle(FeedFresh("PF_TEST"), NOW)
    assert len(intents(c.handle(approved(), NOW))) == 1


def test_an_old_signal_needs_newer_market_data() -> None:
    c = core()
    late = NOW + 120_000  # the signal's bar closed two minutes ago, nothing seen since
    with capture_logs() as logs:
        assert sent(c.handle(approved(), late)) == []
    assert refusals(logs) == ["stale_data"]
    c.handle(MarkPrice("PF_TEST", D(100), late - 500), late)
    assert len(intents(c.handle(approved(), late))) == 1


def test_daily_loss_latches_after_losing_trades_until_the_next_utc_day() -> None:
    c = core()
    assert sent(c.handle(TradeClosed("p1", "PF_1", D(-200), -1.0, NOW - 2_000), NOW - 2_000)) == []
    assert not c.state.daily_latched
    out = c.handle(TradeClosed("p2", "PF_2", D(-150), -1.0, NOW - 1_000), NOW - 1_000)
    assert c.state.daily_latched  # 350 lost >= 3% of 10000
    # the breach latches the kill switch once: entries and take-profits go, stops stay
    assert out == [(EXECUTION, KillSwitchChanged(True, "daily loss limit reached", NOW - 1_000))]
    assert sent(c.handle(Tick(NOW), NOW)) == []
    assert c.state.realized_pnl == D(-350)
    with capture_logs() as logs:
        assert sent(c.handle(approved(), NOW)) == []
        c.handle(Tick(NOW + 11 * 3_600_000), NOW + 11 * 3_600_000)  # 23:00, same day
        assert sent(c.handle(approved(at=NOW + 11 * 3_600_000), NOW + 11 * 3_600_000)) == []
    assert refusals(logs) == ["daily_loss_limit", "daily_loss_limit"]
    midnight = NOW + 12 * 3_600_000
    c.handle(Tick(midnight), midnight)
    assert not c.state.daily_latched
    assert c.state.realized_pnl == 0
    assert len(intents(c.handle(approved(at=midnight + 5_000), midnight + 5_000))) == 1


def test_a_loss_streak_cools_the_symbol_down() -> None:
    c = core()
    for i in range(4):
        c.handle(TradeClosed(f"p{i}", "PF_TEST", D(-10), -1.0, NOW - 4_000 + i), NOW)
    assert c.state.cooldown_until("PF_TEST") == NOW - 4_000 + 3 + 3_600_000
    with capture_logs() as logs:
        assert sent(c.handle(approved(), NOW)) == []
    assert refusals(logs) == ["cooldown"]
    assert len(intents(c.handle(approved("PF_1"), NOW))) == 1


def test_without_equity_entries_are_refused_and_trades_wait_for_it() -> None:
    c = RiskCore(RiskParams(), INSTRUMENTS)
    with capture_logs() as logs:
        assert sent(c.handle(approved(), NOW)) == []
    assert refusals(logs) == ["no_equity"]
    c.handle(TradeClosed("p1", "PF_TEST", D(-400), -1.0, NOW - 1_000), NOW)
    assert c.state.realized_pnl == 0
    c.handle(AccountEquity(D(10_000), NOW), NOW)
    assert c.state.realized_pnl == D(-400)
    assert c.state.daily_latched


def view(symbol: str, state: State = State.PROTECTED) -> PositionChanged:
    return PositionChanged(
        PositionView(
            f"pos-{symbol}",
            symbol,
            PositionSide.LONG,
            state,
            D(10),
            D(100),
            D(98),
            D(10),
            "ema_cross",
            "strategy",
            NOW - 3_600_000,
            NOW - 3_600_000,
        )
    )


def test_open_positions_count_and_terminal_ones_are_dropped() -> None:
    c = core()
    for i in range(5):
        c.handle(view(f"PF_{i}"), NOW)
    ctx = c.context("PF_TEST", NOW, NOW)
    assert ctx.open_symbols == {f"PF_{i}" for i in range(5)}
    assert ctx.open_notional == D(5_000)
    assert ctx.used_margin.quantize(D("0.01")) == D("1666.67")  # 5000 at leverage 3
    with capture_logs() as logs:
        assert sent(c.handle(approved(), NOW)) == []
    assert refusals(logs) == ["max_positions"]
    c.handle(view("PF_0", State.CLOSED), NOW)
    assert len(intents(c.handle(approved(), NOW))) == 1


def test_venue_margin_counts_when_it_is_higher_and_pending_intents_expire() -> None:
    c = core()
    c.handle(AccountEquity(D(10_000), NOW, used_margin=D(4_999)), NOW)
    with capture_logs() as logs:
        assert sent(c.handle(approved(), NOW)) == []
    assert refusals(logs) == ["margin_cap"]
    c.handle(AccountEquity(D(10_000), NOW, used_margin=D(0)), NOW)
    assert len(intents(c.handle(approved(), NOW))) == 1
    later = NOW + 60_000  # execution never reported the symbol: the pending entry lapses
    c.handle(Tick(later), later)
    assert c.pending == {}
    assert len(intents(c.handle(approved(at=later), later))) == 1
