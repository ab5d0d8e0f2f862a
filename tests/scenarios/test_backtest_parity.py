"""Parity: a paper session's market data, replayed by the backtester, gives the paper trades.

The paper service trades the emulator for a short session at high speed (ema_cross on 1m, the
paper profile's four symbols). Afterwards:

1. the 1m candles its feed delivered (the history DB ``candles`` table: the REST warm-up and the
   live minutes) must equal the generator's candles for the emulator's seed and first minute,
   which are what the emulator's engine walked;
2. those candles go through :class:`actors.backtest.Backtest` with the same settings, the
   paper account's starting balance and the emulator's seed, from the first bar of the
   analyzers' warm-up, live from the feed's first live minute (``live_from``), to the last
   minute the emulator played;
3. both position stores are read the same way (:mod:`tests.scenarios.parity_helpers`) and must
   hold the same positions in the same order: symbol, side, entry limit and quantity, every
   entry fill (engine time, price, quantity), every stop placed (trigger price, quantity) and
   every exit fill (stop / take-profit / exit order, engine time, price, quantity), up to a
   cut-off a few minutes before the session ended (the paper run stops mid-stream).

How paper keeps the backtest's clock (:mod:`actors.backtest`; it is what a real venue gives):
the emulator dates its tickers and heartbeats (every 5 s of its clock) with its own time and
plays every minute that ended before it answers anything, so the feed closes minute ``m`` at
venue time ``m + 60 s + close_grace``, before the emulator plays ``m + 1``; the runtime then
beats the timer-driven actors for the bar close before the bar's candles reach the analyzers
(fills applied, exposure protected, expired entries cancelled), and again at the allocator's
deadline, so the entries for bar ``m`` reach the venue while its engine still stands at ``m``'s
close, as the backtest's do (at 120x, some 8 of the 60 venue seconds a bar gives). Both read
equity as balance plus the open positions' unrealized PnL. The emulator prints the account's own
fills on the public trade feed, as venues do, so the feed's candle of a minute holding one of
them counts it: step 1 allows that and nothing else.

Entries, stops and exits then match trade for trade in time and price, and so do sizes:
execution reads the account every 30 venue seconds and on the first beat of each venue minute,
so the auction of a bar sizes on the account as it stood at that bar's close in both.
"""

from __future__ import annotations

import json
import math
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from actors.backtest import Backtest, BacktestSpec
from actors.runtime import System
from adapters.settings import Settings, load_settings
from adapters.sim.datasets import History, generate_history
from adapters.sim.instruments import default_instruments
from domain.models import Candle
from tests.paper_run import paper_running
from tests.scenarios.parity_helpers import (
    MINUTE_MS,
    TradeRecord,
    describe,
    emulator_facts,
    on_grid,
    read_feed_candles,
    read_trades,
    venue_ids,
)

ROOT = Path(__file__).resolve().parents[2]
SPEED = 120.0
RUN_S = 30.0
CUTOFF_BARS = 3  # the paper run's last minutes are left out: it stopped while acting on them
MIN_TRADES = 3


def _settings(tmp_path: Path) -> Settings:
    """The paper profile with ema_cross parameters that trade often."""
    config = yaml.safe_load((ROOT / "config.paper.yaml").read_text(encoding="utf-8"))
    config["strategy"]["params"] = {
        "fast": 3,
        "slow": 8,
        "atr_period": 10,
        "stop_atr": 1.0,
        "reward_risk": 1.0,
        "signal_expiry_bars": 3,
    }
    path = tmp_path / "parity.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {
        "BASTION_DATA_DIR": str(tmp_path / "data"),
        "BASTION_LOG_DIR": str(tmp_path / "logs"),
        "BASTION_HISTORY__ACCOUNT_SNAPSHOT_INTERVAL_S": "0",
    }
    return load_settings(path, env)


def _sim_state(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_sim/state", timeout=5) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data


def test_backtest_replays_a_paper_session_to_the_same_trades(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    symbols = list(settings.universe.symbols)
    seen: dict[str, Any] = {}

    def on_ready(system: System) -> None:
        state = _sim_state(system.venue_url)
        (account,) = state["accounts"]
        seen["balance"] = Decimal(account["balance"])
        seen["fills_at_ready"] = account["fills"]

    started = time.monotonic()
    with paper_running(settings, speed=SPEED, on_ready=on_ready) as run:
        time.sleep(RUN_S)
        feed = run.system.feed
        assert feed is not None
    assert run.code == 0
    paper_s = time.monotonic() - started
    assert seen["fills_at_ready"] == 0, "the paper account traded before the session"
    assert feed.stats.connects == 1, "the feed reconnected: its repaired minutes never trade"
    live_from = {feed.core.builders[s].live_from for s in symbols}
    assert len(live_from) == 1, live_from
    (first_live,) = live_from
    assert first_live is not None

    # 1. the market data: what the feed delivered is what the generator gives for the seed
    data = tmp_path / "data" / "paper"
    facts = emulator_facts(data / "exchange")
    instruments = default_instruments()
    venue = venue_ids(instruments, symbols)
    delivered = read_feed_candles(data / "history.db", symbols)
    first_bar = min(c[0].open_time for c in delivered.values())
    played_until = int(facts["start_ms"]) + int(facts["played"]) * MINUTE_MS  # last close
    # the generator is stateful: run it from the emulator's first minute, as the emulator did
    generated = {
        symbol: [
            on_grid(c, instruments[symbol], symbol) for c in candles if c.open_time >= first_bar
        ]
        for symbol, candles in generate_history(
            instruments,
            seed=int(facts["seed"]),
            start_ms=int(facts["start_ms"]),
            end_ms=played_until,
        ).candles.items()
    }
    paper = read_trades(data / "positions.db")
    own_fill_minutes = {
        (r.symbol, f.ts - f.ts % MINUTE_MS) for r in paper for f in (*r.entry_fills, *r.exits)
    }
    polluted = []
    for symbol in symbols:
        candles = delivered[symbol]
        assert candles[0].open_time == first_bar
        expected = generated[venue[symbol]][: len(candles)]
        assert len(expected) == len(candles), symbol
        for got, want in zip(candles, expected, strict=True):
            if _same_candle(got, want):
                continue
            # the venue prints the account's own fills on the trade feed, so the feed's candle
            # of a minute holding one of them counts it; nothing else may differ
            assert (symbol, got.open_time) in own_fill_minutes, (symbol, got, want)
            polluted.append((symbol, got, want))
    last_delivered = max(c[-1].open_time for c in delivered.values()) + MINUTE_MS
    history = History("1m", {venue[s]: generated[venue[s]] for s in symbols})

    # 2. the replay: same settings, balance, seed; live from the feed's first live minute
    spec = BacktestSpec(
        start_ms=first_live,
        end_ms=played_until,
        balance=seen["balance"],
        seed=int(facts["seed"]),
    )
    with Backtest(settings, history, instruments, spec, workdir=tmp_path / "backtest") as bt:
        bt.run()
        replayed = read_trades(bt.store.path)

    # 3. the same positions, entries, stops and exits, in order, up to the cut-off
    cutoff = last_delivered - CUTOFF_BARS * MINUTE_MS
    paper_seen = _before(paper, cutoff)
    replay_seen = _before(replayed, cutoff)
    print(
        f"\nparity: {len(paper_seen)} paper positions over {(cutoff - first_live) // MINUTE_MS} "
        f"live minutes; paper session {paper_s:.1f}s; feed candles holding own fills: "
        + "; ".join(f"{s} {g.open_time}: feed {g} venue {w}" for s, g, w in polluted)
    )
    assert len([r for r in paper_seen if r.exits]) >= MIN_TRADES, describe(paper_seen)
    assert replay_seen == paper_seen, (
        f"\npaper:\n{describe(paper_seen)}\nbacktest:\n{describe(replay_seen)}"
    )


def _same_candle(got: Candle, want: Candle) -> bool:
    """Equal bars: prices to the float (the feed rebuilds them from the venue's prints),
    volume to float noise (the feed sums the prints' quarters)."""
    prices = (got.open, got.high, got.low, got.close) == (
        want.open,
        want.high,
        want.low,
        want.close,
    )
    return got.open_time == want.open_time and prices and math.isclose(got.volume, want.volume)


def _before(records: list[TradeRecord], cutoff: int) -> list[TradeRecord]:
    """Positions the engine saw an order of before ``cutoff``, as they stood then."""
    return [r.until(cutoff) for r in records if r.created_at < cutoff]
