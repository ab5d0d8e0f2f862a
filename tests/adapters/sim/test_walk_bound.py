"""The liquidation bound that lets the engine skip walking a candle is never too optimistic.

Each case runs the same orders and candles through an engine as built and one forced to walk
every symbol holding an order or a position (what the engine did before it learnt to skip);
their whole state must be equal. The first cases are situations a looser bound got wrong; the
last runs adversarial sessions: several accounts and leverages, every order kind, slippage,
market impact and volume caps, deposits and withdrawals, prices moved between candles and
candle groups missing a held symbol.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from adapters.sim.config import EngineConfig
from adapters.sim.engine import SimEngine
from adapters.sim.matching import MatchingCore
from domain.errors import PrecisionError
from domain.models import Candle
from tests.adapters.sim.conftest import BTC, ETH, T0

LTC = "PF_LTCUSD"
MINUTE = 60_000


def _pair(build: Callable[[SimEngine], None], config: EngineConfig) -> tuple[SimEngine, SimEngine]:
    """``build`` run on an engine as built and on one that walks everything."""
    engines = []
    for walk_all in (False, True):
        engine = SimEngine(config=config, seed=1, start_ts=T0)
        if walk_all:
            engine._may_act = lambda symbol, low, high: True  # type: ignore[method-assign]
        build(engine)
        engines.append(engine)
    return engines[0], engines[1]


def _state(engine: SimEngine) -> dict[str, Any]:
    state = engine.to_state()
    state["events"] = [(e["kind"], e["ts"], e["symbol"], e["data"]) for e in state["events"]]
    return state


def _liquidated(engine: SimEngine) -> list[str | None]:
    return [e.symbol for e in engine.events_since(0) if e.kind == "liquidation"]


def test_a_sell_limit_resting_below_the_range_fills_at_its_limit_and_is_charged_so() -> None:
    """Kept marketable by the volume cap, a sell limit far below the market goes on filling at
    its limit: the loss against the market counts, here enough to liquidate the BTC long that
    is never walked."""

    def build(engine: SimEngine) -> None:
        engine.create_account("acc", "100000")
        engine.set_price(BTC, 50000, ts=T0)
        engine.set_price(ETH, 3000, ts=T0)
        engine.send_order("acc", BTC, "buy", "mkt", "1")
        assert engine.send_order("acc", ETH, "sell", "lmt", "20", limit_price="3050").accepted
        for k in range(1, 4):  # ETH runs up through the limit; 1 of 10 contracts fills a candle
            o, c = 3000 + 300 * (k - 1), 3000 + 300 * k
            engine.on_candles(
                [
                    Candle(BTC, "1m", T0 + k * MINUTE, 50000, 50000, 50000, 50000, 10.0),
                    Candle(ETH, "1m", T0 + k * MINUTE, o, c, o, c, 10.0),
                ]
            )
        engine.deposit("acc", Decimal(7000) - engine.account("acc").equity)
        engine.on_candles(
            [
                Candle(BTC, "1m", T0 + 5 * MINUTE, 50000, 50000, 49500, 49600, 10.0),
                Candle(ETH, "1m", T0 + 5 * MINUTE, 3900, 4000, 3900, 3950, 1000.0),
            ]
        )

    skipping, full = _pair(build, EngineConfig(participation=Decimal("0.1")))
    assert BTC in _liquidated(full)
    assert _state(skipping) == _state(full)


def test_a_held_symbol_missing_from_a_group_keeps_the_mark_it_moved_to() -> None:
    """A band of prices ruled safe was set before ETH fell 25%; a later group without ETH must
    not be judged by that band: BTC's 9% dip then liquidates."""

    def build(engine: SimEngine) -> None:
        engine.create_account("acc", "1000000")
        engine.set_price(BTC, 50000, ts=T0)
        engine.set_price(ETH, 50000, ts=T0)
        engine.send_order("acc", BTC, "buy", "mkt", "1")
        engine.send_order("acc", ETH, "buy", "mkt", "1")
        engine.deposit("acc", Decimal(15000) - engine.account("acc").balance)
        engine.on_candles(
            [
                Candle(BTC, "1m", T0 + MINUTE, 50000, 50000, 50000, 50000, 10.0),
                Candle(ETH, "1m", T0 + MINUTE, 50000, 50000, 37500, 37500, 10.0),
            ]
        )
        engine.on_candles([Candle(BTC, "1m", T0 + 2 * MINUTE, 50000, 50000, 45500, 45500, 10.0)])

    config = EngineConfig(
        slippage_bps=Decimal(0), impact_bps_per_million=Decimal(0), participation=None
    )
    skipping, full = _pair(build, config)
    assert BTC in _liquidated(full)
    assert _state(skipping) == _state(full)


@pytest.mark.parametrize("balance", range(1055, 1075, 2))
def test_a_taker_fill_rounded_a_tick_against_the_taker_is_charged_so(balance: int) -> None:
    """With almost no slippage or fees, a tick of rounding on a low-priced coin is what decides
    whether ETH's dip liquidates: the bound must count it."""

    def build(engine: SimEngine) -> None:
        engine.create_account("acc", "1000000")
        engine.set_leverage("acc", LTC, 50)
        engine.set_price(LTC, "99.99", ts=T0)
        engine.set_price(ETH, 3000, ts=T0)
        engine.send_order("acc", ETH, "buy", "mkt", "1")
        assert engine.send_order("acc", LTC, "buy", "stp", "1000", stop_price="100").accepted
        engine.deposit("acc", Decimal(balance) - engine.account("acc").balance)
        engine.on_candles(
            [
                Candle(LTC, "1m", T0 + MINUTE, 99.99, 100.0, 99.98, 99.98, 10.0),
                Candle(ETH, "1m", T0 + MINUTE, 3000.0, 3000.0, 2990.0, 2990.0, 10.0),
            ]
        )

    config = EngineConfig(
        maker_fee=Decimal(0),
        taker_fee=Decimal(0),
        slippage_bps=Decimal("0.01"),
        impact_bps_per_million=Decimal(0),
        participation=None,
    )
    skipping, full = _pair(build, config)
    assert _state(skipping) == _state(full)


def test_a_candle_that_is_not_a_number_is_refused_before_anything_moves() -> None:
    engine = SimEngine(seed=1, start_ts=T0)
    before = _state(engine)
    nan = float("nan")
    with pytest.raises(PrecisionError, match="not finite"):
        engine.on_candles([Candle(ETH, "1m", T0, 3000.0, 3001.0, 2999.0, nan, 1.0)])
    assert _state(engine) == before


SEEDS = 20  # sessions per variant (about 0.1 s each)
TICK = {BTC: 1.0, ETH: 0.1, LTC: 0.01}
LOT = {BTC: 0.0001, ETH: 0.001, LTC: 0.01}


def _on_grid(x: float, step: float) -> float:
    return round(round(x / step) * step, 8)


def _order(engine: SimEngine, rng: random.Random, account: str, symbol: str, p: float) -> None:
    side = rng.choice(["buy", "sell"])
    sign = 1 if side == "buy" else -1
    away = rng.uniform(0.0005, 0.03) * p
    notional = rng.choice([0.2, 1, 5, 30]) * (2000 if account == "b" else 20000)
    qty = f"{max(LOT[symbol], round(notional / p / LOT[symbol]) * LOT[symbol]):.8f}"
    kind = rng.random()
    if kind < 0.3:
        engine.send_order(account, symbol, side, "mkt", qty)
    elif kind < 0.5:  # resting limits, some far beyond any candle
        limit = _on_grid(p - sign * away, TICK[symbol])
        engine.send_order(
            account, symbol, side, rng.choice(["lmt", "post"]), qty, limit_price=limit
        )
    elif kind < 0.6:
        limit = _on_grid(p + sign * away, TICK[symbol])
        engine.send_order(account, symbol, side, "ioc", qty, limit_price=limit)
    elif kind < 0.85:  # stops and stop-limits, on the last or the mark
        stop = _on_grid(p + sign * away, TICK[symbol])
        limit = None
        if rng.random() < 0.5:
            limit = _on_grid(stop + sign * away * rng.choice([0, 0.3, -0.3]), TICK[symbol])
        engine.send_order(
            account, symbol, side, "stp", qty, stop_price=stop, limit_price=limit,
            trigger_signal=rng.choice(["last", "mark"]), reduce_only=rng.random() < 0.5,
        )  # fmt: skip
    else:
        stop = _on_grid(p - sign * away, TICK[symbol])
        engine.send_order(
            account, symbol, side, "take_profit", qty, stop_price=stop,
            reduce_only=rng.random() < 0.7,
        )  # fmt: skip
    if rng.random() < 0.05:
        engine.cancel_all(account, symbol)


def _config(rng: random.Random, *, fees: bool) -> EngineConfig:
    """Slippage, impact and volume cap drawn for a session (its first three draws)."""
    return EngineConfig(
        maker_fee=Decimal("0.0002") if fees else Decimal(0),
        taker_fee=Decimal("0.0005") if fees else Decimal(0),
        slippage_bps=Decimal(rng.choice(["0", "0.01", "1"])),
        impact_bps_per_million=Decimal(rng.choice(["0", "5"])),
        participation=rng.choice([None, Decimal("0.3")]),
    )


def _session(engine: SimEngine, seed: int, *, sparse: bool, set_price: bool) -> None:
    rng = random.Random(seed)
    _config(rng, fees=True)  # the draws the engine's config was made of
    price = {BTC: 50000.0, ETH: 3000.0, LTC: rng.choice([100.0, 20.0])}
    accounts = ["a", "b", "c"]
    for account in accounts:
        engine.create_account(account, str(rng.choice([2000, 20000, 200000])))
        for symbol in price:
            engine.set_leverage(account, symbol, rng.choice([1, 10, 50]))
    for symbol, p in price.items():
        engine.set_price(symbol, _on_grid(p, TICK[symbol]), ts=T0)
    for k in range(1, 150):
        for account in accounts:
            for symbol, p in price.items():
                if rng.random() < 0.04:
                    _order(engine, rng, account, symbol, p)
            if rng.random() < 0.03:
                engine.deposit(account, str(-rng.randint(0, 3000)))
        candles = []
        for symbol in (BTC, ETH, LTC):
            o = price[symbol]
            if rng.random() > 0.05:
                c = o * (1 + rng.gauss(0, 0.01))
            else:  # a jump of 5 to 15%
                c = o * (1 + rng.choice([-1, 1]) * rng.uniform(0.05, 0.15))
            h = max(o, c) * (1 + abs(rng.gauss(0, 0.005)))
            low = min(o, c) * (1 - abs(rng.gauss(0, 0.005)))
            price[symbol] = c
            if not (sparse and symbol == ETH and (k // 5) % 2):  # ETH missing half the time
                volume = rng.choice([0.5, 5.0, 50.0])
                candles.append(Candle(symbol, "1m", T0 + k * MINUTE, o, h, low, c, volume))
        engine.on_candles(candles)
        if set_price and rng.random() < 0.1:
            symbol = rng.choice([BTC, ETH, LTC])
            price[symbol] *= 1 + rng.gauss(0, 0.01)
            at = T0 + k * MINUTE + 59_999
            engine.set_price(symbol, _on_grid(price[symbol], TICK[symbol]), ts=at)


@pytest.mark.parametrize(
    ("sparse", "set_price", "fees"),
    [(False, False, True), (False, True, False), (True, True, True)],
)
def test_adversarial_sessions_end_as_full_walks_do(
    sparse: bool, set_price: bool, fees: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    verdicts: list[bool] = []
    ruled_out = MatchingCore._liquidation_ruled_out

    def spy(self: MatchingCore, active: Any) -> bool:
        verdict = ruled_out(self, active)
        verdicts.append(verdict)
        return verdict

    monkeypatch.setattr(MatchingCore, "_liquidation_ruled_out", spy)
    liquidated = 0
    for seed in range(SEEDS):
        config = _config(random.Random(seed), fees=fees)
        skipping, full = _pair(
            lambda e, s=seed: _session(e, s, sparse=sparse, set_price=set_price), config
        )
        assert _state(skipping) == _state(full), seed
        liquidated += bool(_liquidated(full))
    assert liquidated >= SEEDS // 2, "the sessions reach liquidations"
    assert True in verdicts and False in verdicts, "the bound both ruled out and refused"
