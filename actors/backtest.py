"""Backtests: the live pipeline's cores, dispatched synchronously on a simulated clock.

The cores are the service's own, built by :func:`actors.runtime.core_builders` from the same
configuration: analyzers, allocator, risk, execution (with its position state machines, order
journal and store) and protection. They trade the in-process matching engine
(:class:`~adapters.sim.inprocess.InProcessExchange` over a :class:`~adapters.sim.engine.SimEngine`),
the same engine and fill model the paper emulator runs. Only the dispatch differs: no threads,
no actors; each message is handled to the end, breadth first, in the order it was sent.

The clock, per base bar ``[t, t + step)`` of every symbol together:

1. the engine walks the bar's candles (:meth:`SimEngine.on_candles`): resting entries, stops and
   take-profits fill on the intra-bar path, exactly as in paper;
2. time moves to the bar's close ``t + step``; a ``Tick`` reaches execution, protection,
   allocator and risk: execution applies the fills the venue reports and protects new
   exposure, expired entries are cancelled;
3. the closed candles (longer timeframes first, aggregated from the base bars as the live feed
   aggregates 1m) reach the analyzers as ``live`` candles; their signals go to the allocator;
4. when the allocator's collect window ends (``collect_window_ms`` after its first signal)
   time moves there and a ``Tick`` closes the auction: risk sizes, execution places the orders.

Step 3's analyzers depend on nothing but the candles, so by default they run ahead in a second
process (:class:`~actors.backtest_stage.AheadStage`) while this one trades the bars they have
analysed; their signals are dispatched at step 3 in the order the analyzers gave them, exactly
as in process (``parallel=False``, also used when ``seen`` records the pipeline).

Candles that close before ``start_ms`` only fill the analyzers' buffers (``rest`` candles, the
live warm-up); nothing trades before it. Everything is a function of the configuration, the
candles and the seed, so two runs give identical trades.

Departures from the service, each because the backtest has nothing to learn from it: no
history writer, Telegram or operators' inbox; mark prices come from the engine, not a ticker
feed; the position store is scratch (written without fsync, in batches of transactions,
deleted with the run); and the periodic reconciliation runs once a day instead of once a
minute (a backtest's venue changes only through this process; the start-up pass, which gates
entries, is the live one).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from multiprocessing import get_all_start_methods
from pathlib import Path
from typing import Any

import structlog

from actors import control
from actors.backtest_stage import AheadStage, CandleStage, PacedCollector
from actors.core import ALLOCATOR, EXECUTION, Core, Outbox
from actors.execution import ExecutionCore
from actors.messages import Tick
from actors.runtime import TICK_TARGETS, Limits, core_builders, execution_params
from adapters.settings import Settings
from adapters.sim.config import EngineConfig
from adapters.sim.datasets import History
from adapters.sim.engine import SimEngine
from adapters.sim.inprocess import InProcessExchange
from adapters.sim.instruments import SimInstrument
from adapters.sim.marketdata import merge_minutes
from domain.models import Candle
from domain.performance import ClosedTrade
from domain.timeframes import TIMEFRAME_MS
from persistence.history.tail import Cursor, StoreTail
from persistence.store import PositionStore

log = structlog.get_logger(__name__)
ACCOUNT = "backtest"
DAY_MS = 86_400_000
EQUITY_EVERY_MS = 3_600_000  # the equity curve's sampling: hourly, and at the end
RECONCILE_EVERY_S = 86_400.0
TAIL_BATCH = 5_000


def replay_engine_config() -> EngineConfig:
    """The emulator's engine config with a day of bars and 10,000 events kept, not 20,000 bars
    a symbol and 200,000 events: those serve the emulator's charts and feeds, which a replay
    has not; keeping them only gave the garbage collector more to walk. Matching, fees,
    slippage, liquidity and the orders kept for look-ups by client id are unchanged."""
    return dataclasses.replace(EngineConfig(), max_bars=1_440, max_events=10_000)


@dataclass(frozen=True, slots=True)
class BacktestSpec:
    """What to replay: the window, the starting balance and the engine's seed and config.

    The engine's fees, slippage, liquidity and liquidation are the emulator's defaults; only
    what it keeps for readers a replay does not have is shorter (``replay_engine_config``).
    """

    start_ms: int
    end_ms: int
    balance: Decimal = Decimal(100_000)  # the paper account's
    seed: int = 0
    engine: EngineConfig = field(default_factory=replay_engine_config)


@dataclass(slots=True)
class BacktestRun:
    """What a run leaves: its store (for the trades), equity samples and counters."""

    store_path: Path
    equity: list[tuple[int, Decimal]]
    start_equity: Decimal
    candles: int = 0
    elapsed_s: float = 0.0
    latches: list[tuple[int, str]] = field(default_factory=list)  # kill switch: (at, reason)


class Dispatcher:
    """The synchronous directory: each message to its core, breadth first, in send order.

    Destinations without a core here (history, Telegram, control) are dropped; ``seen`` (when
    given) is shown every message delivered, for tests that record the pipeline.
    """

    def __init__(
        self, cores: Mapping[str, Core], seen: Callable[[str, object], None] | None = None
    ) -> None:
        self.cores = dict(cores)
        self.seen = seen
        self.delivered = 0

    def send(self, outbox: Outbox, now: int) -> None:
        cores, seen = self.cores, self.seen
        queue = list(outbox)  # read in order while it grows: breadth first
        delivered = 0
        for destination, message in queue:
            core = cores.get(destination)
            if core is None:
                continue
            delivered += 1
            if seen is not None:
                seen(destination, message)
            out = core.handle(message, now)
            if out:
                queue.extend(out)
        self.delivered += delivered


def backtest_engine(
    instruments: Mapping[str, SimInstrument], spec: BacktestSpec, start_ms: int
) -> tuple[SimEngine, InProcessExchange]:
    """The engine and the account the cores trade (the port's retries never wait here)."""
    engine = SimEngine(instruments, config=spec.engine, seed=spec.seed, start_ts=start_ms)
    engine.create_account(ACCOUNT, spec.balance)
    return engine, InProcessExchange(engine, ACCOUNT)


class Backtest:
    """One replay of ``history`` through the cores ``settings`` describe (module docstring)."""

    def __init__(
        self,
        settings: Settings,
        history: History,
        instruments: Mapping[str, SimInstrument],
        spec: BacktestSpec,
        *,
        workdir: Path | None = None,
        seen: Callable[[str, object], None] | None = None,
        parallel: bool = True,
    ) -> None:
        self.settings = settings
        self.history = history
        self.spec = spec
        self.step = TIMEFRAME_MS[history.timeframe]
        first, _ = history.span()
        self.engine, self.port = backtest_engine(instruments, spec, first)
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="bastion-backtest-")
            workdir = Path(self._tmp.name)
        workdir.mkdir(parents=True, exist_ok=True)
        self.store = PositionStore.open(workdir / "positions.db", durable=False)
        params = dataclasses.replace(
            execution_params(settings), reconcile_every_s=RECONCILE_EVERY_S
        )
        builders = core_builders(
            settings, self.port, self.store, Limits.of(settings), execution=params
        )
        self.cores: dict[str, Core] = {name: build() for name, build in builders.items()}
        self.dispatcher = Dispatcher(self.cores, seen)
        execution = self.cores[EXECUTION]
        if not isinstance(execution, ExecutionCore):
            raise TypeError("the execution core is not an ExecutionCore")
        self.execution = execution
        self.allocator = self.cores[ALLOCATOR]
        unified = {venue: spec_.instrument.unified_symbol for venue, spec_ in instruments.items()}
        timeframes = {
            *settings.universe.bias_timeframes,
            *settings.universe.entry_timeframes,
        }
        higher = sorted(
            (tf for tf in timeframes if TIMEFRAME_MS[tf] > self.step),
            key=lambda tf: -TIMEFRAME_MS[tf],
        )
        for tf in higher:
            if TIMEFRAME_MS[tf] % self.step:
                raise ValueError(f"timeframe {tf} is not a multiple of {history.timeframe}")
        self.stage = CandleStage(
            self.cores, {v: unified[v] for v in history.candles}, history.timeframe, higher
        )
        # the worker is forked; where fork is missing the analyzers run here
        self.parallel = parallel and seen is None and "fork" in get_all_start_methods()
        self.bars = self._bars(list(merge_minutes(history.candles)))

    def _bars(self, groups: list[list[Candle]]) -> list[tuple[list[Candle], int, bool]]:
        """``(venue candles, close, live)`` of every bar the replay walks, in order."""
        bars = []
        for group in groups:
            close = group[0].open_time + self.step
            live = close > self.spec.start_ms
            if live and close > self.spec.end_ms:
                break
            bars.append((group, close, live))
        return bars

    @property
    def bar_count(self) -> int:
        """How many bars (candle groups) the replay walks, warm-up included."""
        return len(self.bars)

    def close(self) -> None:
        self.store.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Backtest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the replay

    def run(self, progress: Callable[[int, int], None] | None = None) -> BacktestRun:
        """Replay every bar; ``progress(done, total)`` is called now and then (bars)."""
        started = time.perf_counter()
        run = BacktestRun(self.store.path, [], self.spec.balance)
        with PacedCollector() as collector:  # before forking: the worker inherits it
            ahead = AheadStage(self.stage, self.bars) if self.parallel else None
            try:
                self._replay(run, ahead, collector, progress)
            finally:
                if ahead is not None:
                    ahead.close()
        self.store.flush()  # the run's store is read from its file afterwards
        last = max(self.engine.now, self.spec.start_ms)
        run.equity.append((last, self.port.account().equity))
        run.elapsed_s = time.perf_counter() - started
        if progress is not None:
            progress(len(self.bars), len(self.bars))
        return run

    def _replay(
        self,
        run: BacktestRun,
        ahead: AheadStage | None,
        collector: PacedCollector,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        """The bars, each as the module docstring says."""
        bars = self.bars
        send = self.dispatcher.send
        tick_targets = [name for name in TICK_TARGETS if name in self.cores]
        engine, allocator = self.engine, self.allocator
        next_sample = self.spec.start_ms
        total = len(bars)
        for done, (group, close, live) in enumerate(bars):
            collector.bar(done)
            engine.on_candles(group)
            engine.advance_time(close)
            if live:
                self._resume_next_day(run, close)
                tick = Tick(close)
                send([(name, tick) for name in tick_targets], close)
                if close >= next_sample:
                    run.equity.append((close, self.port.account().equity))
                    next_sample = close - close % EQUITY_EVERY_MS + EQUITY_EVERY_MS
            run.candles += len(group)
            if ahead is not None:
                signals = ahead.outbox(done)
            else:
                signals = self.stage.outbox(group, close, live, self.dispatcher.seen)
            if signals:
                send(signals, close)
            deadline = getattr(allocator, "deadline", None)
            if deadline is not None and live:
                # the engine stays at the next bar's open, as the emulator's does
                tick = Tick(deadline)
                send([(name, tick) for name in tick_targets], deadline)
            if progress is not None and done % 2048 == 0:
                progress(done, total)

    def _resume_next_day(self, run: BacktestRun, now: int) -> None:
        """A kill switch latched on an earlier UTC day is released, as an operator would after
        the daily loss limit (or the ladder) stopped entries; the latch is counted."""
        execution = self.execution
        latch = self.store.get_value("kill_switch") if execution.kill_latched else None
        if latch is None:
            return
        if run.latches and run.latches[-1][0] == latch["at"]:
            if latch["at"] // DAY_MS < now // DAY_MS:
                _, out = control.resume(by="backtest, next UTC day")(execution, now)
                self.dispatcher.send(out, now)
            return
        run.latches.append((int(latch["at"]), str(latch["reason"])))


def closed_trades(store_path: Path) -> list[ClosedTrade]:
    """The closed round trips in a store, as the history writer records them (the same rows
    :class:`~persistence.history.tail.StoreTail` gives the live history), oldest close first."""
    latest: dict[str, Mapping[str, Any]] = {}
    tail = StoreTail(store_path)
    try:
        cursor = Cursor()
        while True:
            rows, after = tail.read(cursor, TAIL_BATCH)
            for row in rows:
                if row.table == "trades":
                    latest[row.values["position_id"]] = row.values
            if after.order_event == cursor.order_event and after.transition == cursor.transition:
                break
            cursor = after
    finally:
        tail.close()
    trades = [_closed(v) for v in latest.values() if v["closed_at"] is not None]
    return sorted(trades, key=lambda t: (t.closed_at, t.position_id))


def _closed(values: Mapping[str, Any]) -> ClosedTrade:
    def money(key: str) -> Decimal | None:
        raw = values[key]
        return None if raw is None else Decimal(raw)

    return ClosedTrade(
        position_id=values["position_id"],
        symbol=values["symbol"],
        side=values["side"],
        strategy=values["strategy"],
        opened_at=int(values["opened_at"]),
        closed_at=int(values["closed_at"]),
        qty=Decimal(values["qty"]),
        entry_price=Decimal(values["entry_price"]),
        exit_price=money("exit_price"),
        fees=Decimal(values["fees"]),
        funding=Decimal(values["funding"]),
        realized_pnl=Decimal(values["realized_pnl"]),
        r_multiple=money("r_multiple"),
        exit_reason=values["exit_reason"],
    )


def symbols_of(instruments: Mapping[str, SimInstrument], names: Sequence[str]) -> list[str]:
    """Venue ids for ``names`` given as venue ids or unified symbols; unknown names raise."""
    by_unified = {s.instrument.unified_symbol: venue for venue, s in instruments.items()}
    out = []
    for name in names:
        venue = name if name in instruments else by_unified.get(name)
        if venue is None:
            known = ", ".join(sorted(by_unified))
            raise ValueError(f"unknown symbol {name!r}; known: {known}")
        out.append(venue)
    return out


__all__ = [
    "ACCOUNT",
    "Backtest",
    "BacktestRun",
    "BacktestSpec",
    "Dispatcher",
    "backtest_engine",
    "closed_trades",
    "symbols_of",
]
