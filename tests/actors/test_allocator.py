"""The allocator core: one auction per collect window, fair, order-independent, slot-aware."""

from dataclasses import replace
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from actors.allocator import AccountEquity, AllocatorCore, entry_cost, signal_margin
from actors.core import EXECUTION, RISK
from actors.messages import (
    CloseRequested,
    OpenApproved,
    PositionChanged,
    PositionView,
    SignalProposed,
    Tick,
)
from domain.allocation import AllocatorParams
from domain.models import Instrument, PositionSide, Signal
from domain.position_table import State
from domain.risk import RiskContext, RiskParams, RiskState, assess, intent_margin
from tests.actors.outbox import audits, sent

D = Decimal
T0 = 1_735_689_600_000 + 12 * 3_600_000
WINDOW = 2_000
SYMBOLS = ("PF_A", "PF_B", "PF_C", "PF_D", "PF_E")
INSTRUMENTS = {s: Instrument(s, s[3:], "USD", D("0.01"), D("0.001"), D("0.001")) for s in SYMBOLS}
RISK_PARAMS = RiskParams()


def signal(
    symbol: str, score: float, side: PositionSide = PositionSide.LONG, **kw: object
) -> Signal:
    sign = 1 if side is PositionSide.LONG else -1
    base = {
        "symbol": symbol,
        "side": side,
        "entry_price": D(100),
        "stop_price": D(100 - 2 * sign),
        "targets": (D(100 + 4 * sign),),
        "score": score,
        "reasons": ("test",),
        "created_at": T0 - 100,
        "expires_at": T0 + 1_800_000,
        "strategy": "ema_cross",
        "timeframe": "15m",
    }
    return Signal(**{**base, **kw})  # type: ignore[arg-type]


def proposed(symbol: str, score: float, **kw: object) -> SignalProposed:
    return SignalProposed(signal(symbol, score, **kw), T0 - 900_100)


def core(**params: object) -> AllocatorCore:
    p = AllocatorParams(**{"collect_window_ms": WINDOW, **params})  # type: ignore[arg-type]
    c = AllocatorCore(p, INSTRUMENTS, RISK_PARAMS)
    assert sent(c.handle(AccountEquity(D(10_000), T0), T0)) == []
    return c


def view(symbol: str, score: float = 0.3, state: State = State.PROTECTED, **kw: object):
    base = {
        "position_id": f"pos-{symbol}",
        "symbol": symbol,
        "side": PositionSide.LONG,
        "state": state,
        "qty": D(5),
        "entry_price": D(100),
        "stop_price": D(98),
        "stop_qty": D(5),
        "strategy": "ema_cross",
        "origin": "strategy",
        "created_at": T0 - 3_600_000,
        "updated_at": T0 - 3_600_000,
        "score": score,
    }
    return PositionChanged(PositionView(**{**base, **kw}))  # type: ignore[arg-type]


def opened(out: list[tuple[str, object]]) -> list[str]:
    return [m.signal.symbol for d, m in out if d == RISK and isinstance(m, OpenApproved)]


def test_signals_are_collected_for_the_window_then_auctioned_once() -> None:
    c = core()
    assert sent(c.handle(proposed("PF_B", 0.6), T0)) == []
    assert sent(c.handle(proposed("PF_A", 0.7), T0 + 1_500)) == []
    assert sent(c.handle(Tick(T0 + WINDOW - 1), T0 + WINDOW - 1)) == []
    out = c.handle(Tick(T0 + WINDOW), T0 + WINDOW)
    assert opened(out) == ["PF_A", "PF_B"]
    assert all(isinstance(m, OpenApproved) and m.reasons == ("selected",) for _, m in out)
    assert c.cycle_start is None
    assert c.cycles == 1
    assert sent(c.handle(Tick(T0 + 10 * WINDOW), T0 + 10 * WINDOW)) == []  # nothing left to auction


def test_symbols_closing_within_the_window_compete_for_one_slot() -> None:
    c = core(max_positions=1)
    c.handle(proposed("PF_A", 0.6), T0)
    c.handle(proposed("PF_B", 0.8), T0 + 900)  # arrives later, but within the window
    assert opened(c.handle(Tick(T0 + WINDOW), T0 + WINDOW)) == ["PF_B"]
    # without a window the first arrival would have taken the slot
    eager = core(max_positions=1, collect_window_ms=0)
    assert opened(eager.handle(proposed("PF_A", 0.6), T0)) == ["PF_A"]
    assert opened(eager.handle(proposed("PF_B", 0.8), T0 + 900)) == []


def test_a_signal_arriving_at_the_deadline_opens_the_next_cycle() -> None:
    c = core()
    c.handle(proposed("PF_A", 0.6), T0)
    out = c.handle(proposed("PF_B", 0.9), T0 + WINDOW)
    assert opened(out) == ["PF_A"]
    assert c.cycle_start == T0 + WINDOW
    assert opened(c.handle(Tick(T0 + 2 * WINDOW), T0 + 2 * WINDOW)) == ["PF_B"]


def test_expired_and_held_symbols_are_dropped_on_arrival_with_a_reason() -> None:
    c = core()
    c.handle(view("PF_A"), T0)
    with capture_logs() as logs:
        c.handle(proposed("PF_A", 0.9), T0)
        c.handle(proposed("PF_B", 0.9, expires_at=T0 - 1), T0)
        c.handle(proposed("PF_ZZZ", 0.9), T0)
    dropped = [(e["symbol"], e["reason"]) for e in logs if e["event"] == "signal_dropped"]
    assert dropped == [
        ("PF_A", "symbol_held"),
        ("PF_B", "expired"),
        ("PF_ZZZ", "unknown_instrument"),
    ]
    assert c.cycle_start is None
    assert sent(c.handle(Tick(T0 + WINDOW), T0 + WINDOW)) == []


def test_a_weak_incumbent_is_swapped_out_and_locked_while_it_closes() -> None:
    c = core(max_positions=1)
    c.handle(view("PF_A", score=0.3), T0)
    c.handle(proposed("PF_B", 0.9), T0)
    out = c.handle(Tick(T0 + WINDOW), T0 + WINDOW)
    assert [d for d, _ in out] == [EXECUTION, RISK]
    close = out[0][1]
    assert isinstance(close, CloseRequested)
    assert close.symbol == "PF_A"
    assert close.reason.startswith("swapped_out")
    assert opened(out) == ["PF_B"]
    # next cycle: A is closing and B pending, both locked: no second close, no open
    c.handle(proposed("PF_C", 0.99), T0 + 3 * WINDOW)
    assert sent(c.handle(Tick(T0 + 4 * WINDOW), T0 + 4 * WINDOW)) == []
    # A closes and B's position is reported: B is young, so locked, and C still cannot get in
    c.handle(view("PF_A", state=State.CLOSED), T0 + 5 * WINDOW)
    c.handle(view("PF_B", score=0.9, created_at=T0 + 5 * WINDOW), T0 + 5 * WINDOW)
    c.handle(proposed("PF_C", 0.99), T0 + 6 * WINDOW)
    assert sent(c.handle(Tick(T0 + 7 * WINDOW), T0 + 7 * WINDOW)) == []
    assert set(c.positions) == {"pos-PF_B"}


def test_an_approved_open_holds_its_slot_until_execution_reports_it() -> None:
    c = core(max_positions=1)
    c.handle(proposed("PF_A", 0.6), T0)
    assert opened(c.handle(Tick(T0 + WINDOW), T0 + WINDOW)) == ["PF_A"]
    c.handle(proposed("PF_B", 0.7), T0 + 2 * WINDOW)
    assert sent(c.handle(Tick(T0 + 3 * WINDOW), T0 + 3 * WINDOW)) == []  # A's slot is taken
    c.handle(proposed("PF_A", 0.9), T0 + 4 * WINDOW)  # A is pending: dropped as held
    assert c.contenders == []
    c.handle(view("PF_A", state=State.CANCELLED), T0 + 5 * WINDOW)  # the entry never filled
    c.handle(proposed("PF_B", 0.7), T0 + 6 * WINDOW)
    assert opened(c.handle(Tick(T0 + 7 * WINDOW), T0 + 7 * WINDOW)) == ["PF_B"]


def test_without_equity_no_auction_runs() -> None:
    c = AllocatorCore(AllocatorParams(collect_window_ms=0), INSTRUMENTS, RISK_PARAMS)
    with capture_logs() as logs:
        out = c.handle(proposed("PF_A", 0.9), T0)
    assert sent(out) == []
    assert [e["reason"] for e in logs if e["event"] == "signal_dropped"] == ["no_equity"]
    (audit,) = audits(out)
    assert (audit.kind, audit.reason_code, audit.symbol) == (
        "allocator_decision",
        "dropped:no_equity",
        "PF_A",
    )


def test_margin_estimate_matches_what_risk_sizes_and_costs_are_fees_in_r() -> None:
    inst = replace(INSTRUMENTS["PF_A"], lot_size=D("0.1"), min_size=D("1"))
    sig = signal("PF_A", 0.8)
    ctx = RiskContext(T0, D(10_000), D(0), frozenset(), T0)
    intent = assess(sig, inst, ctx, RiskState(), RISK_PARAMS).approved
    assert intent is not None
    assert signal_margin(sig, inst, D(10_000), RISK_PARAMS) == intent_margin(
        intent, inst, RISK_PARAMS
    )
    # 0.0005 * (100 + 98) / 2 = 0.0495 R of fees, at pnl_weight 0.1 per R
    assert entry_cost(sig, RISK_PARAMS, 0.1) == 0.1 * 0.0495


@settings(max_examples=60, deadline=None)
@given(st.permutations(range(6)))
def test_outbox_does_not_depend_on_arrival_order(order: list[int]) -> None:
    messages = [
        proposed("PF_A", 0.6),
        proposed("PF_B", 0.8),
        proposed("PF_C", 0.8),  # ties PF_B: broken on the symbol
        proposed("PF_D", 0.7, side=PositionSide.SHORT),
        proposed("PF_E", 0.9),
        proposed("PF_E", 0.9, side=PositionSide.SHORT),  # same symbol, same score
    ]
    reference = core(max_positions=3, max_opens_per_cycle=2)
    reference.handle(view("PF_Z", score=0.1), T0)
    for i, m in enumerate(messages):
        reference.handle(m, T0 + i)
    expected = reference.handle(Tick(T0 + WINDOW), T0 + WINDOW)
    assert opened(expected) == ["PF_B", "PF_E"]
    assert [m.signal.side for _, m in expected if isinstance(m, OpenApproved)] == [
        PositionSide.LONG,
        PositionSide.LONG,
    ]

    c = core(max_positions=3, max_opens_per_cycle=2)
    c.handle(view("PF_Z", score=0.1), T0)
    for k, i in enumerate(order):
        c.handle(messages[i], T0 + k)
    assert c.handle(Tick(T0 + WINDOW), T0 + WINDOW) == expected


def test_a_pending_open_never_reported_lapses_after_its_ttl() -> None:
    c = core(max_positions=1)
    c.handle(proposed("PF_A", 0.6), T0)
    assert opened(c.handle(Tick(T0 + WINDOW), T0 + WINDOW)) == ["PF_A"]
    later = T0 + WINDOW + 60_000  # risk refused it: execution never reports PF_A
    c.handle(proposed("PF_B", 0.7), later)
    assert c.pending == {}
    assert opened(c.handle(Tick(later + WINDOW), later + WINDOW)) == ["PF_B"]
