"""The analyzer core: buffers fill from any source, only live entry-bar closes propose."""

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

from actors.analyzer import AnalyzerCore, CandleBuffer
from actors.core import ALLOCATOR
from actors.messages import CandleClosed, FeedFresh, FeedStale, SignalProposed
from domain.models import Candle, Instrument, PositionSide, Signal
from domain.strategy import Bars, load_strategy
from domain.strategy.smc import SmcStrategy
from tests.domain.strategy.builders import INSTRUMENT, START_MS, aggregate, random_walk

SYMBOL = INSTRUMENT.symbol
M15 = 900_000
# ema_cross(2, 4) on these closes: a long cross at bar 7 and a short cross at bar 10.
CLOSES = [10, 9.8, 9.6, 9.4, 9.2, 9.0, 8.8, 9.6, 10.0, 10.4, 9.0]
EMA = {"fast": 2, "slow": 4, "atr_period": 2}


def candle(i: int, close: float, tf: str = "15m", symbol: str = SYMBOL, step: int = M15) -> Candle:
    return Candle(symbol, tf, START_MS + i * step, close, close + 0.5, close - 0.5, close, 1.0)


def closed(c: Candle, source: str = "live") -> CandleClosed:
    return CandleClosed(c.symbol, c.timeframe, c, source)


def ema_core(**kw: Any) -> AnalyzerCore:
    strategy = load_strategy("ema_cross", EMA, ("4h",), ("15m",))
    return AnalyzerCore(SYMBOL, INSTRUMENT, strategy, ("4h",), ("15m",), **kw)


def feed(core: AnalyzerCore, messages: list[object]) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for m in messages:
        out += core.handle(m, START_MS + 10**9)
    return out


def test_rest_candles_fill_buffers_but_never_propose() -> None:
    core = ema_core()
    out = feed(core, [closed(candle(i, c), "rest") for i, c in enumerate(CLOSES[:8])])
    assert out == []
    assert len(core.buffers["15m"]) == 8
    # the same bars would have produced a signal: it is the source that kept it quiet
    assert core.strategy.analyze(core.bars(), INSTRUMENT) is not None


def test_live_entry_bar_close_proposes_the_strategys_signal() -> None:
    core = ema_core()
    out = feed(core, [closed(candle(i, c), "rest") for i, c in enumerate(CLOSES[:7])])
    out += feed(core, [closed(candle(7, CLOSES[7]))])
    assert len(out) == 1
    destination, message = out[0]
    assert destination == ALLOCATOR
    assert isinstance(message, SignalProposed)
    assert message.bar_time == START_MS + 7 * M15
    signal = message.signal
    assert signal.symbol == SYMBOL
    assert signal.side is PositionSide.LONG
    assert signal.entry_price == Decimal("9.60")
    assert signal.created_at == START_MS + 8 * M15  # the bar's close
    assert core.proposed == 1


def test_duplicate_and_out_of_order_candles_are_dropped() -> None:
    core = ema_core()
    feed(core, [closed(candle(i, c), "rest") for i, c in enumerate(CLOSES[:7])])
    assert len(feed(core, [closed(candle(7, CLOSES[7]))])) == 1
    # the same bar again (a replay), a revised copy of it, and an older bar: all dropped
    replays = [closed(candle(7, CLOSES[7])), closed(candle(7, 50.0)), closed(candle(3, 1))]
    assert feed(core, replays) == []
    bars = core.buffers["15m"].bars()
    assert len(bars) == 8
    assert bars.close[-1] == CLOSES[7]
    assert bars.open_time.tolist() == [START_MS + i * M15 for i in range(8)]


def test_stale_feed_blocks_proposals_until_fresh() -> None:
    core = ema_core()
    feed(core, [closed(candle(i, c), "rest") for i, c in enumerate(CLOSES[:7])])
    out = feed(core, [FeedStale(SYMBOL, since_ms=START_MS), closed(candle(7, CLOSES[7]))])
    assert out == []
    assert len(core.buffers["15m"]) == 8  # still stored while stale
    out = feed(core, [closed(candle(8, CLOSES[8])), closed(candle(9, CLOSES[9]))])
    out += feed(core, [FeedFresh(SYMBOL), closed(candle(10, CLOSES[10]))])
    assert [m.signal.side for _, m in out if isinstance(m, SignalProposed)] == [PositionSide.SHORT]


def test_messages_for_other_symbols_and_timeframes_are_ignored() -> None:
    core = ema_core()
    feed(core, [closed(candle(i, c), "rest") for i, c in enumerate(CLOSES[:7])])
    other = [
        FeedStale("PF_ETHUSD", since_ms=0),
        closed(candle(7, CLOSES[7], symbol="PF_ETHUSD")),
        closed(candle(0, 100.0, tf="4h", step=4 * 4 * M15)),  # ema_cross does not read 4h
    ]
    assert feed(core, other) == []
    assert set(core.buffers) == {"15m"}
    assert len(feed(core, [closed(candle(7, CLOSES[7]))])) == 1


def test_a_failing_strategy_is_logged_and_yields_nothing() -> None:
    class Broken:
        name = "broken"
        timeframes = ("15m",)

        def analyze(self, data: Mapping[str, Any], instrument: Instrument) -> Signal | None:
            raise IndexError("boom")

    core = AnalyzerCore(SYMBOL, INSTRUMENT, Broken(), (), ("15m",))
    with capture_logs() as logs:
        out = feed(core, [closed(candle(0, 10.0))])
        out += feed(core, [closed(candle(1, 10.0))])
    assert out == []
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["strategy_failed"] * 2
    assert len(core.buffers["15m"]) == 2


def test_entry_timeframes_must_be_read_by_the_strategy() -> None:
    strategy = load_strategy("ema_cross", EMA, (), ("15m",))
    with pytest.raises(ValueError, match="none of the entry timeframes"):
        AnalyzerCore(SYMBOL, INSTRUMENT, strategy, (), ("5m",))


def test_buffer_keeps_the_newest_bars_in_bounded_memory_and_views_stay_valid() -> None:
    buffer = CandleBuffer("15m", max_bars=5)
    views = []
    for i in range(23):
        assert buffer.append(candle(i, float(i)))
        views.append((i, buffer.bars()))
        assert len(buffer._times) == 10  # capacity never grows
    assert len(buffer) == 5
    assert buffer.bars().close.tolist() == [18.0, 19.0, 20.0, 21.0, 22.0]
    for i, view in views:  # data taken earlier is never overwritten by later appends
        expected = list(range(max(0, i - 4), i + 1))
        assert view.close.tolist() == [float(x) for x in expected]
    assert not buffer.bars().close.flags.writeable


def _candles(bars: Bars) -> Iterator[Candle]:
    for t, o, h, lo, c, v in zip(
        bars.open_time.tolist(),
        bars.open.tolist(),
        bars.high.tolist(),
        bars.low.tolist(),
        bars.close.tolist(),
        bars.volume.tolist(),
        strict=True,
    ):
        yield Candle(SYMBOL, bars.timeframe, t, o, h, lo, c, v)


def _smc_messages(n: int, warmup: int, seed: int) -> tuple[dict[str, Bars], list[CandleClosed]]:
    """15m random walk and its 4h bars in close order (4h first on a shared close)."""
    b15 = random_walk("15m", n, seed)
    data = {"15m": b15, "4h": aggregate(b15, "4h")}
    keyed = []
    for tf, bars in data.items():
        for c in _candles(bars):
            close = c.open_time + bars.tf_ms
            source = "live" if close > START_MS + warmup * M15 else "rest"
            keyed.append(((close, -bars.tf_ms), CandleClosed(SYMBOL, tf, c, source)))
    return data, [m for _, m in sorted(keyed, key=lambda item: item[0])]


def test_smc_through_the_analyzer_matches_the_full_series_model() -> None:
    strategy = SmcStrategy({"swing_left": 3, "swing_right": 2, "min_rr": 1.5}, ("4h",), ("15m",))
    data, messages = _smc_messages(n=900, warmup=200, seed=4)
    core = AnalyzerCore(SYMBOL, INSTRUMENT, strategy, ("4h",), ("15m",), max_bars=1000)
    got = [m.signal for _, m in feed(core, list(messages)) if isinstance(m, SignalProposed)]
    model = strategy.model(data)
    live = data["15m"].close_time[200:].tolist()
    expected = [s for at in live if (s := model.signal_at(at, INSTRUMENT)) is not None]
    assert len(expected) >= 3  # not vacuous
    assert got == expected


def test_smc_runs_on_a_short_rolling_window() -> None:
    strategy = SmcStrategy({"swing_left": 3, "swing_right": 2, "min_rr": 1.5}, ("4h",), ("15m",))
    _, messages = _smc_messages(n=1200, warmup=100, seed=3)
    core = AnalyzerCore(SYMBOL, INSTRUMENT, strategy, ("4h",), ("15m",), max_bars=300)
    out = feed(core, list(messages))
    assert len(core.buffers["15m"]) == 300
    closes = np.asarray([m.candle.open_time + M15 for m in messages if m.timeframe == "15m"])
    assert len(out) >= 2
    for _, message in out:
        assert isinstance(message, SignalProposed)
        assert message.signal.created_at == message.bar_time + M15
        assert message.signal.created_at in closes
