"""Candles to PlaceIntent through analyzer, allocator and risk cores, dispatched synchronously."""

from collections import deque
from decimal import Decimal

from actors.allocator import AccountEquity, AllocatorCore
from actors.analyzer import AnalyzerCore
from actors.core import ALLOCATOR, EXECUTION, HISTORY, RISK, Core, analyzer
from actors.messages import CandleClosed, FeedStale, KillSwitchChanged, PlaceIntent, Tick
from actors.risk import RiskCore
from domain.allocation import AllocatorParams
from domain.models import Candle, Instrument, OrderIntent, PositionSide
from domain.precision import is_multiple
from domain.risk import RiskParams
from domain.strategy import load_strategy
from tests.domain.strategy.builders import INSTRUMENT, START_MS

M15 = 900_000
WINDOW = 2_000
# ema_cross(2, 4) crosses up on the last bar of this series
CLOSES = [10, 9.8, 9.6, 9.4, 9.2, 9.0, 8.8, 9.6]
ETH = Instrument("PF_ETHUSD", "ETH", "USD", Decimal("0.01"), Decimal("0.001"), Decimal("0.001"))
INSTRUMENTS = {INSTRUMENT.symbol: INSTRUMENT, ETH.symbol: ETH}
SCALE = {INSTRUMENT.symbol: 1.0, ETH.symbol: 10.0}
BAR_CLOSE = START_MS + len(CLOSES) * M15  # close of the last bar


class Dispatcher:
    """Deliver each outbox item to the named core, breadth first; keep what goes to execution."""

    def __init__(self, cores: list[Core]) -> None:
        self.cores = {c.name: c for c in cores}
        self.to_execution: list[object] = []
        self.audited: list[object] = []

    def send(self, destination: str, message: object, now: int) -> None:
        queue: deque[tuple[str, object]] = deque([(destination, message)])
        while queue:
            dest, msg = queue.popleft()
            if dest == EXECUTION:
                self.to_execution.append(msg)
            elif dest == HISTORY:
                self.audited.append(msg)
            else:
                queue.extend(self.cores[dest].handle(msg, now))

    def intents(self) -> list[OrderIntent]:
        return [m.intent for m in self.to_execution if isinstance(m, PlaceIntent)]


def build(max_positions: int = 4) -> Dispatcher:
    strategy = load_strategy("ema_cross", {"fast": 2, "slow": 4, "atr_period": 2}, (), ("15m",))
    analyzers: list[Core] = [
        AnalyzerCore(s, inst, strategy, ("4h",), ("15m",), max_bars=50)
        for s, inst in INSTRUMENTS.items()
    ]
    allocator = AllocatorCore(
        AllocatorParams(collect_window_ms=WINDOW, max_positions=max_positions),
        INSTRUMENTS,
        RiskParams(),
    )
    risk = RiskCore(RiskParams(), INSTRUMENTS)
    d = Dispatcher([*analyzers, allocator, risk])
    for dest in (ALLOCATOR, RISK):
        d.send(dest, AccountEquity(Decimal(10_000), START_MS), START_MS)
    return d


def candle(symbol: str, i: int) -> CandleClosed:
    c = CLOSES[i] * SCALE[symbol]
    half = 0.5 * SCALE[symbol]
    bar = Candle(symbol, "15m", START_MS + i * M15, c, c + half, c - half, c, 1.0)
    return CandleClosed(symbol, "15m", bar, "live" if i == len(CLOSES) - 1 else "rest")


def run(d: Dispatcher, before_live: list[tuple[str, object]] = ()) -> None:
    """Warm up from REST, then the last bar closes live on both symbols and the window passes."""
    for i in range(len(CLOSES) - 1):
        for symbol in INSTRUMENTS:
            d.send(analyzer(symbol), candle(symbol, i), START_MS + (i + 1) * M15)
    for destination, message in before_live:
        d.send(destination, message, BAR_CLOSE)
    d.send(analyzer(INSTRUMENT.symbol), candle(INSTRUMENT.symbol, 7), BAR_CLOSE + 200)
    d.send(analyzer(ETH.symbol), candle(ETH.symbol, 7), BAR_CLOSE + 900)
    assert d.to_execution == []  # the allocator is still collecting
    for destination in (ALLOCATOR, RISK):
        d.send(destination, Tick(BAR_CLOSE + 200 + WINDOW), BAR_CLOSE + 200 + WINDOW)


def test_candles_become_sized_intents_end_to_end() -> None:
    d = build()
    run(d)
    intents = d.intents()
    assert [i.symbol for i in intents] == [ETH.symbol, INSTRUMENT.symbol]  # sorted by symbol
    for intent in intents:
        scale = Decimal(repr(SCALE[intent.symbol]))
        assert intent.side is PositionSide.LONG
        assert intent.entry_price == Decimal("9.60") * scale
        assert intent.stop_price < intent.entry_price
        assert intent.strategy == "ema_cross"
        assert intent.created_at == BAR_CLOSE + 200 + WINDOW
        assert is_multiple(intent.qty, INSTRUMENTS[intent.symbol].lot_size)
        # the loss at the stop is about risk_per_trade (0.5%) of the 10000 equity
        loss = intent.qty * (intent.entry_price - intent.stop_price)
        assert Decimal(45) < loss <= Decimal(50)
    # the same bars again (a replay after a reconnect) change nothing
    later = BAR_CLOSE + 10 * WINDOW
    for i in range(len(CLOSES)):
        for symbol in INSTRUMENTS:
            d.send(analyzer(symbol), candle(symbol, i), later)
    d.send(ALLOCATOR, Tick(later + WINDOW), later + WINDOW)
    assert len(d.to_execution) == 2


def test_one_slot_goes_to_one_symbol() -> None:
    d = build(max_positions=1)
    run(d)
    assert [i.symbol for i in d.intents()] == [ETH.symbol]  # equal scores: the symbol decides


def test_a_stale_symbol_and_the_kill_switch_stop_entries() -> None:
    d = build()
    run(d, [(analyzer(ETH.symbol), FeedStale(ETH.symbol, since_ms=BAR_CLOSE - 90_000))])
    assert [i.symbol for i in d.intents()] == [INSTRUMENT.symbol]
    d = build()
    run(d, [(RISK, KillSwitchChanged(latched=True, reason="operator", at=BAR_CLOSE))])
    assert d.to_execution == []
