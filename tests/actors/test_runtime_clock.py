"""The service's clock beats the timer-driven actors as a backtest's does: at each bar close
before the bar's candles reach the analyzers, and when a core's deadline comes (besides the
regular beat). Real actors (:class:`CoreActor`) around small recording cores."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pykka
import pytest

from actors.core import EXECUTION, RISK, Outbox, analyzer
from actors.messages import CandleClosed, FeedFresh, FeedStale, Tick
from actors.runtime import TICK_TARGETS, Call, CoreActor, Ticker, VenueClock
from actors.runtime_feed import FeedRelay
from actors.supervisor import Directory
from adapters.marketdata.events import CandleSource
from domain.models import Candle

BTC, ETH = "BTC/USD:USD", "ETH/USD:USD"
T0 = 1_800_000_000_000  # a minute's open
MINUTE = 60_000
WAIT_S = 5.0


@dataclass
class Log:
    """What the cores handled, in order, across threads."""

    entries: list[tuple[str, object, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    def add(self, name: str, message: object, now: int) -> None:
        with self.changed:
            self.entries.append((name, message, now))
            self.changed.notify_all()

    def wait_for(self, count: int) -> list[tuple[str, object, int]]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.entries) >= count, WAIT_S), self.entries
            return list(self.entries)


class Recording:
    """A core that logs every message; a ``Tick`` takes ``tick_s`` (an execution at work)."""

    def __init__(self, name: str, log: Log, tick_s: float = 0.0) -> None:
        self.name = name
        self.log = log
        self.tick_s = tick_s

    def handle(self, message: object, now: int) -> Outbox:
        if isinstance(message, Tick):
            time.sleep(self.tick_s)
        self.log.add(self.name, message, now)
        return []


class Deadline(Recording):
    """A core with a deadline ``window_ms`` after its first message, cleared by a later one at or
    after it (the allocator's collect window)."""

    def __init__(self, name: str, log: Log, window_ms: int) -> None:
        super().__init__(name, log)
        self.window_ms = window_ms
        self.deadline: int | None = None

    def handle(self, message: object, now: int) -> Outbox:
        if self.deadline is not None and now >= self.deadline:
            self.deadline = None
            self.log.add(self.name, "closed", now)
        elif self.deadline is None and not isinstance(message, Tick):
            self.deadline = now + self.window_ms
        return super().handle(message, now)


@pytest.fixture
def directory() -> Iterator[Directory]:
    directory = Directory()
    yield directory
    pykka.ActorRegistry.stop_all()


def start(
    directory: Directory, clock: VenueClock, core: Recording, ticker: Ticker | None = None
) -> None:
    wake = None if ticker is None else ticker.wake_at
    ref = CoreActor.start(lambda: core, directory, clock, wake=wake)
    directory.set(core.name, ref)


def candle(symbol: str, open_time: int, source: CandleSource = "live") -> CandleClosed:
    bar = Candle(symbol, "1m", open_time, 1.0, 1.0, 1.0, 1.0, 1.0)
    return CandleClosed(symbol, "1m", bar, source)


def observed_clock(speed: float = 1.0) -> VenueClock:
    clock = VenueClock(speed)
    clock.observe(T0 + MINUTE + 2_000)
    return clock


def test_a_bar_close_beats_the_timer_driven_actors_before_its_candles_go_on(
    directory: Directory,
) -> None:
    log = Log()
    clock = observed_clock()
    for name in TICK_TARGETS:
        start(directory, clock, Recording(name, log, tick_s=0.2 if name == EXECUTION else 0.0))
    for symbol in (BTC, ETH):
        start(directory, clock, Recording(analyzer(symbol), log))
    relay = FeedRelay(directory, TICK_TARGETS, barrier=Call(lambda core: None))
    relay.start()
    try:
        relay.put(candle(BTC, T0 - MINUTE, "rest"))  # history: beats nothing
        relay.put(candle(BTC, T0))
        relay.put(candle(ETH, T0))  # the same bar close: one beat
        relay.put(FeedStale(ETH, T0))
        relay.put(candle(BTC, T0 + MINUTE))
        entries = log.wait_for(1 + 2 * len(TICK_TARGETS) + 3 + 2)
    finally:
        relay.stop()
    names = [name for name, _, _ in entries]
    ticks = [(name, m) for name, m, _ in entries if isinstance(m, Tick)]
    assert sorted(name for name, _ in ticks) == sorted(TICK_TARGETS * 2)
    assert {m.now for _, m in ticks} == {T0 + MINUTE, T0 + 2 * MINUTE}
    first_tick = next(i for i, (_, m, _) in enumerate(entries) if isinstance(m, Tick))
    executed = names.index(EXECUTION)
    btc = [i for i, (n, m, _) in enumerate(entries) if n == analyzer(BTC)]
    assert btc[0] < first_tick  # the REST candle went straight on
    assert executed < btc[1]  # the live one waited for execution's beat (0.2 s)
    later = [i for i, (n, m, _) in enumerate(entries) if n == EXECUTION][1]
    assert later < btc[2]
    eth = [m for n, m, _ in entries if n == analyzer(ETH)]
    assert [type(m) for m in eth] == [CandleClosed, FeedStale]
    assert [m for n, m, _ in entries if n == RISK and not isinstance(m, Tick)] == [
        FeedStale(ETH, T0)
    ]


def test_a_stuck_execution_holds_the_candles_for_the_timeout_only(directory: Directory) -> None:
    log = Log()
    clock = observed_clock()
    for name in TICK_TARGETS:
        start(directory, clock, Recording(name, log, tick_s=1.5 if name == EXECUTION else 0.0))
    start(directory, clock, Recording(analyzer(BTC), log))
    relay = FeedRelay(
        directory, TICK_TARGETS, barrier=Call(lambda core: None), close_tick_timeout_s=0.2
    )
    relay.start()
    started = time.monotonic()
    try:
        relay.put(candle(BTC, T0))
        relay.put(FeedFresh(BTC))
        entries = log.wait_for(len(TICK_TARGETS) - 1 + 3)  # the others' ticks, the candle, fresh
    finally:
        relay.stop()
    assert time.monotonic() - started < 1.0  # execution is still at its beat
    assert EXECUTION not in [n for n, _, _ in entries]
    assert [m for n, m, _ in entries if n == analyzer(BTC)] == [candle(BTC, T0), FeedFresh(BTC)]


def test_a_core_is_beaten_when_the_venue_reaches_its_deadline(directory: Directory) -> None:
    """The regular beat is far off (10 s); the deadline, 2 venue seconds on at 20x (0.1 s of
    wall time), brings a Tick to every timer-driven actor, at or after it."""
    log = Log()
    clock = observed_clock(speed=20.0)
    ticker = Ticker(directory, clock, interval_s=10.0)
    core = Deadline(TICK_TARGETS[0], log, window_ms=2_000)
    start(directory, clock, core, ticker)
    for name in TICK_TARGETS[1:]:
        start(directory, clock, Recording(name, log))
    ticker.start()
    try:
        directory.tell(core.name, "signal")
        entries = log.wait_for(2 + len(TICK_TARGETS))  # signal, closed, a tick for each
    finally:
        ticker.stop()
    mine = [(m, now) for n, m, now in entries if n == core.name]
    (signal, opened), (closed, at) = mine[:2]
    assert (signal, closed) == ("signal", "closed")
    assert at >= opened + 2_000
    assert sorted(n for n, m, _ in entries if isinstance(m, Tick)) == sorted(TICK_TARGETS)
    assert core.deadline is None
