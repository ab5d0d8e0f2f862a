"""The write-ahead journal: deltas replay exactly, a crash loses no persisted change, a torn
tail and entries already in the snapshot are skipped, and a request writes no snapshot."""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path
from typing import Any

from adapters.sim.config import EngineConfig
from adapters.sim.server.journal import JournaledEngine
from adapters.sim.server.state import JOURNAL_FILE, STATE_FILE
from adapters.sim.server.venue import Venue, VenueConfig

SYMBOL = "PF_XBTUSD"


def _without_bars(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k != "bars"}


def _random_step(engine: JournaledEngine, rng: random.Random, account: str) -> None:
    price = engine.last_price(SYMBOL)
    roll = rng.random()
    if roll < 0.35:
        offset = Decimal(rng.randint(-40, 40)) * 50
        engine.send_order(
            account, SYMBOL, rng.choice(["buy", "sell"]), "lmt", "0.01", limit_price=price + offset
        )
    elif roll < 0.45:
        engine.send_order(account, SYMBOL, rng.choice(["buy", "sell"]), "mkt", "0.02")
    elif roll < 0.55:
        side = rng.choice(["buy", "sell"])
        stop = price - 500 if side == "sell" else price + 500
        engine.send_order(account, SYMBOL, side, "stp", "0.01", stop_price=stop)
    elif roll < 0.7:
        orders = engine.open_orders(account)
        if orders:
            engine.cancel_order(account, rng.choice(orders).order_id)
    elif roll < 0.75:
        orders = [o for o in engine.open_orders(account) if o.limit_price is not None]
        if orders:
            engine.edit_order(account, orders[0].order_id, limit_price=price - 1000)
    else:
        engine.set_price(SYMBOL, price + Decimal(rng.randint(-20, 20)) * 50)


def test_deltas_replay_to_the_same_engine_state() -> None:
    rng = random.Random(3)
    # Small retention limits so that closed-order retention and event trimming happen.
    config = EngineConfig(max_events=40, max_closed_orders=6)
    live = JournaledEngine(config=config, seed=11, start_ts=1_000)
    live.create_account("a", 1_000_000)
    replica = JournaledEngine.from_state(live.to_state())
    live.mark_journaled()
    for _ in range(60):
        for _ in range(rng.randint(0, 8)):
            _random_step(live, rng, "a")
        replica.apply_delta(live.delta())
        live.mark_journaled()
        assert _without_bars(replica.to_state()) == _without_bars(live.to_state())
    assert live._fills and len(live._closed) == 6
    assert live._events[0].seq > 1  # trimmed


def _venue(state_dir: Path) -> Venue:
    return Venue(VenueConfig(state_dir=state_dir, seed=4, warmup_minutes=5))


def _trade(venue: Venue, orders: int) -> list[str]:
    """Orders, fills, a cancel, a price move and a clock advance, each persisted as a request."""
    engine, account = venue.engine, venue.auth.keys[venue.config.api_key].account_id
    ids = []
    for i in range(orders):
        result = engine.send_order(account, SYMBOL, "buy", "lmt", "0.01", limit_price=1_000 + i)
        venue.changed()
        assert result.order is not None
        ids.append(result.order.order_id)
    engine.cancel_order(account, ids[0])
    venue.changed()
    engine.send_order(account, SYMBOL, "buy", "mkt", "0.05")
    venue.changed()
    venue.set_price(SYMBOL, engine.last_price(SYMBOL) + 500)
    venue.advance(3 * 60_000)
    return ids


def _assert_same(first: Venue, second: Venue) -> None:
    assert _without_bars(second.engine.to_state()) == _without_bars(first.engine.to_state())
    assert second.summary() == first.summary()
    assert second.driver.to_state() == first.driver.to_state()


def _journal_lines(state_dir: Path) -> list[bytes]:
    return (state_dir / JOURNAL_FILE).read_bytes().splitlines(keepends=True)


def test_crash_loses_no_persisted_change_and_requests_write_no_snapshot(tmp_path: Path) -> None:
    first = _venue(tmp_path)
    snapshot_mtime = (tmp_path / STATE_FILE).stat().st_mtime_ns
    ids = _trade(first, 25)
    # Every change went to the journal; the snapshot was not rewritten.
    assert len(_journal_lines(tmp_path)) == 25 + 4
    assert (tmp_path / STATE_FILE).stat().st_mtime_ns == snapshot_mtime
    # No close(): as after a SIGKILL, only the snapshot of the start and the journal are on disk.
    second = _venue(tmp_path)
    _assert_same(first, second)
    assert {
        o.order_id for o in second.engine.open_orders(second.summary()["accounts"][0]["account_id"])
    } == set(ids[1:])
    assert (tmp_path / JOURNAL_FILE).stat().st_size == 0  # replayed into a fresh snapshot


def test_torn_journal_tail_is_ignored(tmp_path: Path) -> None:
    first = _venue(tmp_path)
    _trade(first, 5)
    with (tmp_path / JOURNAL_FILE).open("ab") as fh:
        fh.write(b'{"seq":999,"engine":{"now":')  # crash in the middle of a write
    second = _venue(tmp_path)
    _assert_same(first, second)
    # The torn line is gone: changes after the restart replay too.
    _trade(second, 3)
    third = _venue(tmp_path)
    _assert_same(second, third)


def test_entries_already_in_the_snapshot_are_skipped(tmp_path: Path) -> None:
    first = _venue(tmp_path)
    _trade(first, 4)
    journal = (tmp_path / JOURNAL_FILE).read_bytes()
    first.save(snapshot=True)
    # A crash between the snapshot's rename and the journal's truncation leaves both.
    (tmp_path / JOURNAL_FILE).write_bytes(journal)
    second = _venue(tmp_path)
    _assert_same(first, second)


def test_clean_close_leaves_an_empty_journal(tmp_path: Path) -> None:
    first = _venue(tmp_path)
    _trade(first, 3)
    first.close()
    assert (tmp_path / JOURNAL_FILE).stat().st_size == 0
    second = _venue(tmp_path)
    _assert_same(first, second)
    assert second.engine.ohlcv(SYMBOL) == first.engine.ohlcv(SYMBOL)
