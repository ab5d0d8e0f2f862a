"""The replay: the live cores on a simulated clock against the in-process engine."""

import gc
import os
import weakref
from decimal import Decimal
from pathlib import Path

import pytest

from actors.backtest import Backtest, BacktestSpec, closed_trades, symbols_of
from actors.backtest_stage import PacedCollector, StageFailed
from actors.core import analyzer
from actors.messages import CandleClosed
from adapters.settings import Settings
from adapters.sim.datasets import History, generate_history
from adapters.sim.instruments import default_instruments
from domain.models import OrderRole
from persistence.store import PositionStore

START = 1_735_689_600_000  # 2025-01-01
DAY = 86_400_000
HOUR = 3_600_000
SYMBOLS = ["PF_XBTUSD", "PF_ETHUSD", "PF_SOLUSD"]
INSTRUMENTS = default_instruments()


def _history(days: float, warmup_h: int = 6) -> History:
    full = generate_history(
        INSTRUMENTS,
        seed=5,
        start_ms=START - warmup_h * HOUR,
        end_ms=START + int(days * DAY),
        timeframe="5m",
    )
    return History("5m", {s: full.candles[s] for s in SYMBOLS})


def _settings(**overrides: object) -> Settings:
    unified = [INSTRUMENTS[s].instrument.unified_symbol for s in SYMBOLS]
    return Settings(
        universe={"symbols": unified, "bias_timeframes": ["1h"], "entry_timeframes": ["5m"]},
        strategy={"name": "ema_cross", "params": {}},
        **overrides,
    )


def _replay(tmp: Path, settings: Settings, history: History, days: float, parallel: bool = True):
    spec = BacktestSpec(start_ms=START, end_ms=START + int(days * DAY), balance=Decimal(10_000))
    with Backtest(settings, history, INSTRUMENTS, spec, workdir=tmp, parallel=parallel) as bt:
        assert bt.parallel is parallel
        run = bt.run()
        trades = closed_trades(run.store_path)
        with PositionStore.open(run.store_path, readonly=True) as store:
            orders = store.orders()
    return run, trades, orders


@pytest.fixture(scope="module")
def two_days(tmp_path_factory: pytest.TempPathFactory):
    history = _history(2)
    first = _replay(tmp_path_factory.mktemp("a"), _settings(), history, 2)
    second = _replay(tmp_path_factory.mktemp("b"), _settings(), history, 2)
    return first, second


def test_same_input_gives_the_same_trades_and_equity(two_days) -> None:
    (run_a, trades_a, _), (run_b, trades_b, _) = two_days
    assert len(trades_a) >= 5  # the replay trades, so the comparison means something
    assert trades_a == trades_b
    assert run_a.equity == run_b.equity
    assert run_a.candles == run_b.candles


def test_analyzers_in_a_worker_process_give_the_in_process_trades(tmp_path: Path, two_days) -> None:
    (run_a, trades_a, orders_a), _ = two_days  # analyzers ran ahead in a worker process
    run_b, trades_b, orders_b = _replay(tmp_path, _settings(), _history(2), 2, parallel=False)
    assert trades_b == trades_a
    assert orders_b == orders_a
    assert run_b.equity == run_a.equity


def test_a_failing_analyzer_worker_ends_the_replay_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(self: object, message: object, now: int) -> list[object]:
        raise RuntimeError("analyzer exploded")

    monkeypatch.setattr("actors.analyzer.AnalyzerCore.handle", explode)
    with pytest.raises(StageFailed, match="analyzer exploded"):
        _replay(tmp_path, _settings(), _history(0.1, warmup_h=1), 0.1)


def test_nothing_trades_during_the_warm_up_and_every_exposure_got_a_stop(two_days) -> None:
    (run, trades, orders), _ = two_days
    assert all(t.opened_at >= START for t in trades)
    assert run.candles == (6 * 12 + 2 * 288) * len(SYMBOLS)  # warm-up bars are replayed too
    stops = {o.position_id for o in orders if o.role is OrderRole.STOP}
    assert {t.position_id for t in trades} <= stops
    # every closed trade is booked at the engine: its PnL moved the account
    booked = sum((t.realized_pnl for t in trades), Decimal(0))
    assert run.equity[-1][1] - Decimal(10_000) == pytest.approx(booked, abs=Decimal(200))


def test_equity_is_sampled_hourly_from_the_start(two_days) -> None:
    (run, *_), _ = two_days
    times = [at for at, _ in run.equity]
    assert times[0] == START + 5 * 60_000  # the first bar's close
    assert times == sorted(times)
    assert len(times) >= 47


def test_longer_timeframes_are_aggregated_from_the_base_bars(tmp_path: Path) -> None:
    history = _history(0.5, warmup_h=2)
    seen: list[CandleClosed] = []

    def record(destination: str, message: object) -> None:
        if isinstance(message, CandleClosed) and destination == analyzer("ETH/USD:USD"):
            seen.append(message)

    spec = BacktestSpec(start_ms=START, end_ms=START + DAY // 2)
    with Backtest(_settings(), history, INSTRUMENTS, spec, workdir=tmp_path, seen=record) as bt:
        bt.run()
    hours = [m for m in seen if m.timeframe == "1h"]
    bars = [m for m in seen if m.timeframe == "5m"]
    assert [h.candle.open_time for h in hours] == [START - 2 * HOUR + k * HOUR for k in range(14)]
    for hour in hours:
        parts = [b.candle for b in bars if 0 <= b.candle.open_time - hour.candle.open_time < HOUR]
        assert len(parts) == 12
        assert hour.candle.open == parts[0].open and hour.candle.close == parts[-1].close
        assert hour.candle.high == max(p.high for p in parts)
        assert hour.candle.low == min(p.low for p in parts)
        assert hour.candle.symbol == "ETH/USD:USD"
    # the hour arrives before the 5m bar that closes it, and only live ones after the start
    last_of_first = next(i for i, b in enumerate(seen) if b.timeframe == "1h")
    assert seen[last_of_first + 1].timeframe == "5m"
    assert {m.source for m in seen if m.candle.open_time >= START} == {"live"}
    assert {m.source for m in bars if m.candle.open_time + 300_000 <= START} == {"rest"}


def test_a_daily_loss_latch_is_released_the_next_utc_day(tmp_path: Path) -> None:
    history = _history(3)
    settings = _settings(risk={"daily_loss_limit_frac": 0.006})
    spec = BacktestSpec(start_ms=START, end_ms=START + 3 * DAY, balance=Decimal(10_000))
    with Backtest(settings, history, INSTRUMENTS, spec, workdir=tmp_path) as bt:
        run = bt.run()
        trades = closed_trades(run.store_path)
    assert run.latches, "a 0.6% daily loss limit latches within three days"
    assert all("daily loss" in reason for _, reason in run.latches)
    days = {at // DAY for at, _ in run.latches}
    assert len(days) == len(run.latches)  # at most one latch per day: released only next day
    first_latch = run.latches[0][0]
    later = [t for t in trades if t.opened_at // DAY > first_latch // DAY]
    assert later, "entries start again on the following day"
    same_day = [t for t in trades if first_latch < t.opened_at < (first_latch // DAY + 1) * DAY]
    assert same_day == []


def test_symbols_are_named_by_venue_or_unified_symbol() -> None:
    assert symbols_of(INSTRUMENTS, ["PF_XBTUSD", "ETH/USD:USD"]) == ["PF_XBTUSD", "PF_ETHUSD"]
    with pytest.raises(ValueError, match="unknown symbol 'NOPE'"):
        symbols_of(INSTRUMENTS, ["NOPE"])


def test_the_paced_collector_frees_cycles_each_period_and_restores_the_collector() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the cyclic collector frees it

    freed: list[int] = []
    assert gc.isenabled()
    with PacedCollector(every=4) as collector:
        assert not gc.isenabled()
        frozen = gc.get_freeze_count()
        assert frozen > 0  # what existed before is frozen: no collection walks it
        for bar in range(4):
            node = Node()
            weakref.finalize(node, freed.append, bar)
            del node
            collector.bar(bar)
        assert freed == [0, 1, 2, 3]  # collected at the period's last bar
        assert gc.get_freeze_count() >= frozen
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_a_worker_that_dies_ends_the_replay_with_its_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def die(self: object, message: object, now: int) -> list[object]:
        os._exit(3)

    monkeypatch.setattr("actors.analyzer.AnalyzerCore.handle", die)
    with pytest.raises(StageFailed, match="exit 3"):
        _replay(tmp_path, _settings(), _history(0.1, warmup_h=1), 0.1)


def test_the_paced_collector_leaves_a_freeze_made_before_it() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with PacedCollector(every=2) as collector:
            collector.bar(1)
        assert gc.get_freeze_count() >= frozen
        assert gc.isenabled()
    finally:
        gc.unfreeze()
