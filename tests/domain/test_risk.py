"""The risk manager: sizing, every refusal rule, and the replayable risk state."""

from dataclasses import replace
from decimal import Decimal

import pytest

from adapters.settings import AllocatorSettings, RiskSettings
from domain.allocation import AllocatorParams
from domain.models import Instrument, OrderType, PositionSide, Signal
from domain.precision import is_multiple
from domain.risk import (
    ClosedTrade,
    RiskConfigError,
    RiskContext,
    RiskParams,
    RiskRefusal,
    RiskState,
    assess,
    intent_margin,
    latch_kill_switch,
    record_equity,
    record_trade,
    release_kill_switch,
)

D = Decimal
DAY = 86_400_000
NOW = 1_735_689_600_000 + 12 * 3_600_000  # noon UTC
INST = Instrument("PF_TEST", "TST", "USD", D("0.01"), D("0.1"), D("1"))
PARAMS = RiskParams()


def signal(
    entry: str = "100",
    stop: str = "98",
    side: PositionSide = PositionSide.LONG,
    targets: tuple[str, ...] = ("104", "106"),
    symbol: str = "PF_TEST",
) -> Signal:
    return Signal(
        symbol,
        side,
        D(entry),
        D(stop),
        tuple(D(t) for t in targets),
        0.8,
        ("smc",),
        NOW - 1000,
        NOW + 600_000,
        "smc",
        "15m",
    )


def ctx(**kw: object) -> RiskContext:
    base = {
        "now_ms": NOW,
        "equity": D(10_000),
        "used_margin": D(0),
        "open_symbols": frozenset(),
        "data_ts_ms": NOW - 5_000,
    }
    return RiskContext(**{**base, **kw})  # type: ignore[arg-type]


def run(
    sig: Signal | None = None,
    state: RiskState | None = None,
    params: RiskParams = PARAMS,
    inst: Instrument = INST,
    **kw: object,
):
    return assess(sig or signal(), inst, ctx(**kw), state or RiskState(), params)


def test_size_from_stop_distance_rounded_down_to_the_lot() -> None:
    decision = run()
    assert decision.refusal is None
    intent = decision.approved
    # 0.5% of 10000 = 50 at risk; per contract 2 + fees 0.0005 * 198 = 2.099 -> 23.82 -> 23.8
    assert intent.qty == D("23.8")
    assert is_multiple(intent.qty, INST.lot_size)
    assert intent.entry_type is OrderType.LIMIT
    assert (intent.entry_price, intent.stop_price) == (D("100"), D("98"))
    assert intent.take_profits == ((D("104"), D("11.9")), (D("106"), D("11.9")))
    assert intent.created_at == NOW
    assert "bound by risk" in decision.detail
    loss = intent.qty * (D(2) + D("0.099"))
    assert loss <= D(50)
    assert intent_margin(intent, INST, PARAMS) == D("23.8") * 100 / D(3)


def test_contract_size_scales_notional() -> None:
    inst = replace(INST, contract_size=D("10"))
    assert run(inst=inst).approved.qty == D("2.3")


def test_target_split_uses_fewer_parts_when_parts_fall_below_minimum() -> None:
    intent = run(signal(stop="90", targets=("104", "106", "110"))).approved
    # 50 / (10 + 0.095) = 4.95 -> 4.9: three parts of 1.6 fit the minimum 1
    assert [q for _, q in intent.take_profits] == [D("1.6"), D("1.6"), D("1.7")]
    intent = run(signal(stop="80", targets=("104", "106", "110"))).approved
    assert intent.qty == D("2.4")
    assert [q for _, q in intent.take_profits] == [D("1.2"), D("1.2")]


def test_size_that_rounds_below_the_minimum_is_refused_not_sent() -> None:
    decision = run(signal(stop="10"))  # 50 / 90.06 = 0.55 -> 0.5 < 1
    assert decision.approved is None
    assert decision.refusal is RiskRefusal.SIZE_BELOW_MINIMUM
    assert "rounds to 0.5" in decision.detail
    zero = run(signal(entry="100", stop="1"), inst=replace(INST, lot_size=D(1)))
    assert zero.refusal is RiskRefusal.SIZE_BELOW_MINIMUM
    assert "rounds to 0" in zero.detail


def test_minimum_notional() -> None:
    decision = run(params=replace(PARAMS, min_notional_usd=5000.0))
    assert decision.refusal is RiskRefusal.BELOW_MIN_NOTIONAL


def test_leverage_cap_on_open_exposure() -> None:
    bounded = run(open_notional=D(29_000))  # room for 1000 of notional: 10 contracts
    assert bounded.approved.qty == D("10.0")
    assert "bound by leverage" in bounded.detail
    refused = run(open_notional=D(30_000))
    assert refused.refusal is RiskRefusal.LEVERAGE_CAP


def test_single_position_margin_cap() -> None:
    # tight stop: risk sizing wants 333 contracts; 15% of equity at 3x with 10% buffer is 40.9
    decision = run(signal(stop="99.95"), params=replace(PARAMS, max_loss_per_trade_frac=0.05))
    assert decision.approved.qty == D("40.9")
    assert "bound by position_margin" in decision.detail


def test_aggregate_margin_cap_with_buffer() -> None:
    bounded = run(used_margin=D(4_800))  # 200 of room / 36.67 per contract = 5.4
    assert bounded.approved.qty == D("5.4")
    assert "bound by aggregate_margin" in bounded.detail
    assert run(used_margin=D(4_990)).refusal is RiskRefusal.MARGIN_CAP  # 0.27 contracts
    assert run(used_margin=D(5_000)).refusal is RiskRefusal.MARGIN_CAP


def test_max_loss_per_trade_counts_stop_slippage() -> None:
    loose = replace(PARAMS, max_position_margin_frac=0.5, max_margin_util=0.9, max_leverage=20.0)
    ok = run(signal(stop="99.95"), params=loose)
    assert ok.approved is not None
    tight = replace(loose, max_loss_per_trade_frac=0.006)
    decision = run(signal(stop="99.95"), params=tight)
    assert decision.refusal is RiskRefusal.MAX_LOSS_PER_TRADE


def test_max_concurrent_positions_and_one_per_symbol() -> None:
    five = frozenset({"A", "B", "C", "D", "E"})
    assert run(open_symbols=five).refusal is RiskRefusal.MAX_POSITIONS
    held = frozenset({"PF_TEST"})
    assert run(open_symbols=held).refusal is RiskRefusal.SYMBOL_HAS_POSITION


def test_stale_or_missing_market_data() -> None:
    assert run(data_ts_ms=NOW - 60_000).approved is not None
    assert run(data_ts_ms=NOW - 60_001).refusal is RiskRefusal.STALE_DATA
    assert run(data_ts_ms=None).refusal is RiskRefusal.STALE_DATA


def test_kill_switch_latch_and_release() -> None:
    state = latch_kill_switch(RiskState())
    assert run(state=state).refusal is RiskRefusal.KILL_SWITCH
    assert run(state=release_kill_switch(state)).approved is not None


def test_expired_signal_invalid_stop_and_no_equity() -> None:
    assert run(now_ms=NOW + 600_000, data_ts_ms=NOW + 600_000).refusal is RiskRefusal.SIGNAL_EXPIRED
    assert run(signal(stop="101")).refusal is RiskRefusal.INVALID_STOP
    assert run(signal(stop="100")).refusal is RiskRefusal.INVALID_STOP
    short = signal(entry="100", stop="102", side=PositionSide.SHORT, targets=("96",))
    assert run(short).approved.qty == D("23.7")  # fees on 100 + 102 are a little higher
    assert run(equity=D(0)).refusal is RiskRefusal.NO_EQUITY


def test_daily_loss_limit_latches_until_the_next_utc_day() -> None:
    state = record_equity(RiskState(), D(10_000), NOW - 3_600_000, PARAMS)
    for i in range(3):
        state = record_trade(
            state, ClosedTrade(f"S{i}", D(-100), NOW - 1000 + i), D(10_000) - 100 * (i + 1), PARAMS
        )
    assert state.realized_pnl == D(-300)
    assert state.daily_latched  # 300 = 3% of 10000
    decision = run(state=state, equity=D(9_700))
    assert decision.refusal is RiskRefusal.DAILY_LOSS_LIMIT
    # a recovery later the same day does not release the latch
    assert run(state=state, equity=D(11_000)).refusal is RiskRefusal.DAILY_LOSS_LIMIT
    next_day = NOW + DAY - 11 * 3_600_000
    assert (
        run(
            state=state,
            now_ms=next_day,
            data_ts_ms=next_day,
            equity=D(9_700),
            sig=replace(signal(), expires_at=next_day + 1),
        ).approved
        is not None
    )
    rolled = record_equity(state, D(9_700), next_day, PARAMS)
    assert not rolled.daily_latched and rolled.realized_pnl == 0
    assert rolled.day_start_equity == D(9_700)


def test_equity_drawdown_alone_hits_the_daily_limit() -> None:
    state = record_equity(RiskState(), D(10_000), NOW - 3_600_000, PARAMS)
    assert run(state=state, equity=D(9_750)).approved is not None
    assert run(state=state, equity=D(9_700)).refusal is RiskRefusal.DAILY_LOSS_LIMIT
    latched = record_equity(state, D(9_700), NOW, PARAMS)
    assert latched.daily_latched


def test_loss_streak_starts_a_per_symbol_cooldown() -> None:
    state = record_equity(RiskState(), D(100_000), NOW - DAY // 3, PARAMS)
    t = NOW - 10 * 60_000
    for i in range(3):
        state = record_trade(state, ClosedTrade("PF_TEST", D(-10), t + i), D(100_000), PARAMS)
    state = record_trade(state, ClosedTrade("PF_TEST", D(5), t + 3), D(100_000), PARAMS)
    assert state.streak("PF_TEST") == 0  # a win resets the streak
    for i in range(4):
        state = record_trade(state, ClosedTrade("PF_TEST", D(-10), t + 10 + i), D(100_000), PARAMS)
    until = t + 13 + 60 * 60_000
    assert state.cooldown_until("PF_TEST") == until
    assert state.streak("PF_TEST") == 0
    assert run(state=state, equity=D(100_000)).refusal is RiskRefusal.COOLDOWN
    other = signal(symbol="PF_OTHER")
    assert run(other, state=state, equity=D(100_000)).approved is not None
    later = until
    assert (
        run(
            replace(signal(), expires_at=later + 1),
            state=state,
            equity=D(100_000),
            now_ms=later,
            data_ts_ms=later,
        ).approved
        is not None
    )


def test_state_is_a_replayable_value() -> None:
    trades = [ClosedTrade("A", D(-5), NOW + i) for i in range(6)]
    one = two = record_equity(RiskState(), D(1000), NOW - 1, PARAMS)
    for trade in trades:
        one = record_trade(one, trade, D(1000), PARAMS)
    for trade in trades:
        two = record_trade(two, trade, D(1000), PARAMS)
    assert one == two
    assert hash(one) == hash(two)


def test_params_map_the_config_sections_one_to_one() -> None:
    assert RiskParams.from_mapping(RiskSettings().model_dump()) == RiskParams()
    assert AllocatorParams.from_mapping(AllocatorSettings().model_dump()) == AllocatorParams()
    with pytest.raises(RiskConfigError, match="unknown"):
        RiskParams.from_mapping({"max_leverag": 2})
    with pytest.raises(RiskConfigError, match="max_position_margin_frac"):
        RiskParams(max_position_margin_frac=0.6)
    assert RiskParams(risk_per_trade=0.02).max_loss_frac == 0.04
