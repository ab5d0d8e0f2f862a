"""The SMC engine on a hand-built long setup, and the strategy's signals on random walks."""

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from domain.models import Candle, PositionSide
from domain.precision import is_multiple
from domain.strategy.base import Bars, StrategyConfigError, StrategyError
from domain.strategy.smc import SmcStrategy
from domain.strategy.smc_engine import SmcEngine
from domain.strategy.smc_params import SmcParams
from domain.strategy.smc_structure import Trend
from tests.domain.strategy.builders import INSTRUMENT, aggregate, bars, random_walk

# A long setup, left=right=1: swing high 103 at bar 1, the leg's origin (and a bearish order
# block) at bar 3 (low 98), a break at bar 5 (close 103.8 > 103), an impulse to 108 with fair
# value gaps 100..103.5 (bar 6) and 104..105 (bar 7), then bar 8 retraces into the OTE zone.
OHLC = [
    (100, 101, 99, 100.5),
    (100.5, 103, 100, 102),
    (102, 102.5, 100.5, 101),
    (101, 101.5, 98, 98.5),
    (98.5, 100, 98.2, 99.8),
    (99.8, 104, 99.5, 103.8),
    (103.8, 108, 103.5, 107.5),
    (107.5, 107.8, 105, 105.5),
    (105.5, 106, 101, 101.5),
]
HAND_PARAMS = SmcParams(
    swing_left=1, swing_right=1, atr_period=3, fvg_min_atr=0, min_leg_atr=0, stop_buffer_atr=0
)


def hand_bars(mirror: bool = False) -> Bars:
    o, h, lo, c = (np.array(col, dtype=float) for col in zip(*OHLC, strict=True))
    if mirror:
        o, h, lo, c = 200 - o, 200 - lo, 200 - h, 200 - c
    return bars("15m", h, lo, opens=o, closes=c)


def test_engine_finds_the_hand_built_long_at_the_retracement() -> None:
    engine = SmcEngine(hand_bars(), HAND_PARAMS)
    assert engine.structure.breaks.bar.tolist() == [5]
    assert engine.evaluate(7, Trend.UP) is None  # bar 7 has not retraced into the OTE zone
    assert engine.evaluate(8, Trend.DOWN) is None  # against the structure
    setup = engine.evaluate(8, Trend.UP)
    assert setup is not None
    # leg 98..108: OTE 100.14..101.82; order block 98..101.5 and gap 100..103.5 both touched
    assert setup.order_block and setup.fair_value_gap
    assert not setup.choch and not setup.sweep
    assert setup.zone == pytest.approx((100.14, 101.82))
    assert setup.entry == 101.5
    assert setup.stop == 98  # the origin, no ATR buffer
    assert setup.targets == (108,)  # the leg high / swing high at bar 6, untouched
    assert setup.break_bar == 5


def test_engine_mirrors_shorts() -> None:
    setup = SmcEngine(hand_bars(mirror=True), HAND_PARAMS).evaluate(8, Trend.DOWN)
    assert setup is not None
    assert setup.direction is Trend.DOWN
    assert setup.entry == pytest.approx(98.5)
    assert setup.stop == pytest.approx(102)
    assert setup.targets == pytest.approx((92,))
    assert setup.zone == pytest.approx((98.18, 99.86))


def test_engine_refuses_a_shallow_leg_and_a_missing_reward() -> None:
    shallow = SmcParams(**{**_fields(HAND_PARAMS), "min_leg_atr": 50})
    assert SmcEngine(hand_bars(), shallow).evaluate(8, Trend.UP) is None
    late = SmcParams(**{**_fields(HAND_PARAMS), "setup_max_bars": 2})
    assert SmcEngine(hand_bars(), late).evaluate(8, Trend.UP) is None


def _fields(p: SmcParams) -> dict:
    return {name: getattr(p, name) for name in p.__dataclass_fields__}


def walk_data(n: int, seed: int) -> dict[str, Bars]:
    b15 = random_walk("15m", n, seed)
    return {"15m": b15, "1h": aggregate(b15, "1h"), "4h": aggregate(b15, "4h")}


LOOSE = {"swing_left": 3, "swing_right": 2, "min_rr": 1.5}


def all_signals(strategy: SmcStrategy, data: dict[str, Bars]) -> list:
    model = strategy.model(data)
    found = []
    for at in data["15m"].close_time.tolist():
        signal = model.signal_at(at, INSTRUMENT)
        if signal is not None:
            found.append((signal, model.bias_at(at)))
    return found


def test_signals_are_well_formed_on_the_grid_and_follow_the_bias() -> None:
    strategy = SmcStrategy(LOOSE, ("4h",), ("15m", "1h"))
    found = all_signals(strategy, walk_data(6000, seed=3))
    assert len(found) >= 10
    sides = {signal.side for signal, _ in found}
    assert sides == {PositionSide.LONG, PositionSide.SHORT}
    for signal, bias in found:
        sign = 1 if signal.side is PositionSide.LONG else -1
        assert bias is (Trend.UP if sign > 0 else Trend.DOWN)
        risk = (signal.entry_price - signal.stop_price) * sign
        assert risk > 0
        assert 1 <= len(signal.targets) <= 3
        assert [(t - signal.entry_price) * sign / risk >= Decimal("1.5") for t in signal.targets]
        assert list(signal.targets) == sorted(signal.targets, reverse=sign < 0)
        for price in (signal.entry_price, signal.stop_price, *signal.targets):
            assert is_multiple(price, INSTRUMENT.tick_size)
        lo, hi = signal.entry_zone
        assert lo <= signal.entry_price <= hi
        assert 0 < signal.score <= 1
        assert signal.reasons[0] == f"bias_{'up' if sign > 0 else 'down'}_4h"
        assert any(r.startswith(("order_block", "fair_value_gap")) for r in signal.reasons)
        assert signal.expires_at - signal.created_at == 2 * (
            900_000 if signal.timeframe == "15m" else 3_600_000
        )


def test_no_look_ahead_every_bar() -> None:
    """The signal at t from bars up to t equals the full-series model's signal at t."""
    strategy = SmcStrategy(LOOSE, ("4h",), ("15m", "1h"))
    data = walk_data(1500, seed=7)
    model = strategy.model(data)
    signals = 0
    for at in data["15m"].close_time.tolist():
        prefix = {tf: b.closed_by(at) for tf, b in data.items()}
        expected = model.signal_at(at, INSTRUMENT)
        assert strategy.analyze(prefix, INSTRUMENT) == expected, at
        signals += expected is not None
    assert signals >= 5  # the property is not vacuous


def test_no_look_ahead_sampled_on_a_long_series() -> None:
    strategy = SmcStrategy({}, ("4h", "1d"), ("15m", "1h"))
    b15 = random_walk("15m", 12_000, seed=11)
    data = {tf: aggregate(b15, tf) for tf in ("1h", "4h", "1d")} | {"15m": b15}
    model = strategy.model(data)
    times = data["15m"].close_time
    rng = np.random.default_rng(0)
    sampled = sorted(rng.choice(len(times), 150, replace=False).tolist())
    # add every bar that has a signal in the full model, so positives are checked too
    positives = [i for i, at in enumerate(times.tolist()) if model.signal_at(at, INSTRUMENT)]
    assert positives
    for i in sorted(set(sampled) | set(positives[:60])):
        at = int(times[i])
        prefix = {tf: b.closed_by(at) for tf, b in data.items()}
        assert strategy.analyze(prefix, INSTRUMENT) == model.signal_at(at, INSTRUMENT), i


def test_engine_state_does_not_depend_on_future_bars() -> None:
    """Structure known at t (breaks, trend) is the same with or without later bars."""
    params = SmcParams(swing_left=3, swing_right=2)
    full_bars = random_walk("15m", 800, seed=5)
    full = SmcEngine(full_bars, params)
    for t in range(0, 800, 7):
        prefix = SmcEngine(full_bars.head(t + 1), params)
        k = full.structure.breaks.last_before(t)
        assert prefix.structure.breaks.bar.tolist() == full.structure.breaks.bar[: k + 1].tolist()
        assert prefix.trend_at(t) == full.trend_at(t)
        for direction in (Trend.UP, Trend.DOWN):
            assert prefix.evaluate(t, direction) == full.evaluate(t, direction)


def test_bias_timeframes_must_agree() -> None:
    strategy = SmcStrategy(LOOSE, ("4h", "1d"), ("15m",))
    b15 = random_walk("15m", 8000, seed=3)
    data = {"15m": b15, "4h": aggregate(b15, "4h"), "1d": aggregate(b15, "1d")}
    model = strategy.model(data)
    for at in b15.close_time[::37].tolist():
        bias = model.bias_at(at)
        each = set()
        for tf in ("4h", "1d"):
            engine = SmcEngine(data[tf].closed_by(at), strategy.params)
            each.add(engine.trend_at(len(data[tf].closed_by(at)) - 1))
        assert bias is (each.pop() if len(each) == 1 else Trend.NONE)


def test_analyze_accepts_frames_and_candles() -> None:
    strategy = SmcStrategy(LOOSE, ("4h",), ("1h",))
    data = walk_data(4000, seed=3)
    frames = {
        tf: pd.DataFrame(
            {
                "open_time": b.open_time,
                "open": b.open,
                "high": b.high,
                "low": b.low,
                "close": b.close,
                "volume": b.volume,
            }
        )
        for tf, b in data.items()
        if tf != "15m"
    }
    candles_4h = [
        Candle("X", "4h", int(t), float(o), float(h), float(lo), float(c), 1.0)
        for t, o, h, lo, c in zip(
            data["4h"].open_time,
            data["4h"].open,
            data["4h"].high,
            data["4h"].low,
            data["4h"].close,
            strict=True,
        )
    ]
    expected = strategy.analyze({"1h": data["1h"], "4h": data["4h"]}, INSTRUMENT)
    assert strategy.analyze(frames, INSTRUMENT) == expected
    assert strategy.analyze({"1h": frames["1h"], "4h": candles_4h}, INSTRUMENT) == expected


def test_missing_timeframe_and_bad_params_are_refused() -> None:
    strategy = SmcStrategy({}, ("4h",), ("15m",))
    with pytest.raises(StrategyError, match="missing bars"):
        strategy.analyze({"15m": random_walk("15m", 50, 1)}, INSTRUMENT)
    with pytest.raises(StrategyConfigError, match="unknown parameters"):
        SmcStrategy({"swing_lft": 3})
    with pytest.raises(StrategyConfigError, match="ote_low"):
        SmcStrategy({"ote_low": 0.8, "ote_high": 0.7})
    with pytest.raises(StrategyConfigError, match="integer"):
        SmcStrategy({"swing_left": 2.5})
    with pytest.raises(StrategyConfigError, match="longer"):
        SmcStrategy({}, ("15m",), ("1h",))
    assert SmcStrategy({"min_rr": 3, "require_discount": False}).params.min_rr == 3.0


def test_bars_validate_their_columns() -> None:
    with pytest.raises(StrategyError, match="increasing"):
        bars("15m", [2, 3], [1, 2], start_ms=0).__class__(
            "15m", [0, 0], [1, 1], [2, 2], [0, 0], [1, 1], [1, 1]
        )
    with pytest.raises(StrategyConfigError, match="unknown timeframe"):
        Bars("2m", [0], [1], [1], [1], [1], [1])
    with pytest.raises(StrategyError, match="lengths"):
        Bars("15m", [0, 1], [1], [1], [1], [1], [1])
