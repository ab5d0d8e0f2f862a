"""The emulator's application state: engine, keys, clock, faults, persistence, feed hook.

Everything here runs on the server's event-loop thread, one request at a time between awaits, so
the engine needs no lock. Whoever changes the engine calls :meth:`Venue.changed`, which persists
the change (a journal entry, or now and then a snapshot: :mod:`adapters.sim.server.state`) and
wakes the WebSocket publisher.

At ``speed > 0`` the clock follows wall time: a background step moves it every few
milliseconds, and :meth:`Venue.tick` is also called before each request is answered and before
the periodic feed messages, so the venue a client sees is the venue *now*, as a real one is
(a candle that closed since the last step is played first).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog

from adapters.sim.config import EngineConfig
from adapters.sim.marketdata import DEFAULT_START_MS
from adapters.sim.server.auth import (
    PAPER_API_KEY,
    PAPER_API_SECRET,
    Authenticator,
    account_id_for,
)
from adapters.sim.server.faults import FaultBook
from adapters.sim.server.journal import JournaledEngine
from adapters.sim.server.market import MINUTE_MS, MarketDriver
from adapters.sim.server.state import StateStore

log = structlog.get_logger(__name__)

SNAPSHOT_INTERVAL_S = 30.0
SNAPSHOT_MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class VenueConfig:
    """Start options. ``warmup_minutes`` of candles are played at a fresh start (history for
    OHLCV warm-up). ``start_ms``: first candle of a fresh start; default is a fixed date when
    ``speed == 0`` (deterministic tests) and the wall clock minus the warm-up otherwise."""

    state_dir: Path | None = None
    seed: int = 0
    speed: float = 0.0
    data_file: Path | None = None
    api_key: str = PAPER_API_KEY
    api_secret: str = PAPER_API_SECRET
    balance: Decimal = Decimal(100_000)
    warmup_minutes: int = 120
    start_ms: int | None = None


class Venue:
    def __init__(self, config: VenueConfig) -> None:
        self.config = config
        self.store = None if config.state_dir is None else StateStore(config.state_dir)
        self.auth = Authenticator()
        self.faults = FaultBook()
        self.on_change: Callable[[], None] | None = None
        saved = self.store.load() if self.store is not None else None
        self._journal_seq = 0
        if saved is not None:
            self.engine = JournaledEngine.from_state(saved.state["engine"])
            latest = saved.state
            for entry in saved.entries:
                self.engine.apply_delta(entry["engine"])
                latest = entry
            self._journal_seq = saved.journal_seq
            self.driver = MarketDriver(
                self.engine,
                seed=self.engine.seed,
                start_ms=0,
                data_file=config.data_file,
                state=latest["market"],
            )
            for item in latest["keys"]:
                self.auth.add(item["api_key"], item["secret"], item["account_id"])
        else:
            self.engine = JournaledEngine(
                config=EngineConfig(max_events=20_000), seed=config.seed, start_ts=0
            )
            start = config.start_ms
            if start is None:
                start = DEFAULT_START_MS if config.speed == 0 else _wall_minute()
                start -= config.warmup_minutes * MINUTE_MS
            self.engine.advance_time(start)
            self.driver = MarketDriver(
                self.engine, seed=config.seed, start_ms=start, data_file=config.data_file
            )
            self.driver.advance_to(self.driver.start_ms + config.warmup_minutes * MINUTE_MS)
        if config.api_key not in self.auth.keys:
            self.create_account(config.api_key, config.api_secret, config.balance)
        self._saved_seq = -1
        self._last_snapshot = 0.0
        self._entries_since_snapshot = 0
        self.save(snapshot=True)  # also drops a torn journal tail left by a crash
        self._anchor_wall = time.monotonic()
        self._anchor_sim = self.driver.clock_ms

    # ------------------------------------------------------------------ clock
    @property
    def now_ms(self) -> int:
        return self.driver.clock_ms

    def tick(self) -> bool:
        """At ``speed > 0``: move the clock to the scaled wall time; True when candles played."""
        if self.config.speed <= 0:
            return False
        elapsed = time.monotonic() - self._anchor_wall
        target = self._anchor_sim + int(elapsed * self.config.speed * 1000)
        played = self.driver.advance_to(target)
        if played:
            self.changed(persist=False)
        return bool(played)

    def advance(self, ms: int) -> int:
        """Admin: move the clock forward by ``ms``; returns the number of candles played."""
        if ms < 0:
            raise ValueError("time must not go back")
        played = self.driver.advance_to(self.driver.clock_ms + ms)
        self._anchor_wall, self._anchor_sim = time.monotonic(), self.driver.clock_ms
        self.changed()
        return len(played)

    # ------------------------------------------------------------------ admin actions
    def create_account(self, api_key: str, secret: str, balance: Decimal) -> str:
        if api_key in self.auth.keys:
            raise ValueError(f"api key {api_key!r} exists")
        account_id = account_id_for(api_key)
        self.auth.add(api_key, secret, account_id)
        self.engine.create_account(account_id, balance)
        log.info("account_created", account_id=account_id, balance=str(balance))
        return account_id

    def set_price(self, symbol: str, price: Decimal, mark: Decimal | None = None) -> None:
        if symbol not in self.engine.instruments:
            raise ValueError(f"unknown symbol {symbol!r}")
        self.engine.set_price(symbol, price, mark)
        self.driver.rebase(symbol, self.engine.last_price(symbol))
        self.changed()

    # ------------------------------------------------------------------ persistence
    def changed(self, persist: bool = True) -> None:
        """Something changed: save now (``persist``) and wake the feeds."""
        if persist:
            self.save()
        if self.on_change is not None:
            self.on_change()

    @property
    def dirty(self) -> bool:
        return self.engine.last_event_seq != self._saved_seq

    def flush(self) -> None:
        """Background save (every second): a snapshot when the journal is older than
        ``SNAPSHOT_INTERVAL_S``, else pending changes (candles at ``speed > 0``) as an entry.
        Periodic snapshots run here so that requests only ever pay for a journal entry."""
        if self.store is None:
            return
        age = time.monotonic() - self._last_snapshot
        if self._entries_since_snapshot and age >= SNAPSHOT_INTERVAL_S:
            self.save(snapshot=True)
        elif self.dirty or self.config.speed > 0:
            self.save()

    def save(self, snapshot: bool = False) -> None:
        """Persist every change so far: a journal entry, or a snapshot when ``snapshot`` is set
        or ``SNAPSHOT_MAX_ENTRIES`` entries piled up (bounds the replay at start)."""
        if self.store is None:
            return
        engine = self.engine
        if snapshot or self._entries_since_snapshot >= SNAPSHOT_MAX_ENTRIES:
            self.store.save(engine.to_state(), self._extra(), self._journal_seq)
            self._last_snapshot = time.monotonic()
            self._entries_since_snapshot = 0
        else:
            entry = {"seq": self._journal_seq + 1, "engine": engine.delta(), **self._extra()}
            try:
                self.store.append(entry)
            except BaseException:
                # The line may be half written: only a snapshot (which truncates) is safe next.
                self._entries_since_snapshot = SNAPSHOT_MAX_ENTRIES
                raise
            self._journal_seq += 1
            self._entries_since_snapshot += 1
        engine.mark_journaled()
        self._saved_seq = engine.last_event_seq

    def close(self) -> None:
        """Final snapshot; the journal is left empty."""
        self.save(snapshot=True)
        if self.store is not None:
            self.store.close()

    def _extra(self) -> dict[str, Any]:
        return {
            "keys": [
                {"api_key": k.api_key, "secret": k.secret, "account_id": k.account_id}
                for k in self.auth.keys.values()
            ],
            "market": self.driver.to_state(),
        }

    def summary(self) -> dict[str, Any]:
        """What ``GET /_sim/state`` shows."""
        engine = self.engine
        accounts = []
        for key in self.auth.keys.values():
            view = engine.account(key.account_id)
            accounts.append(
                {
                    "api_key": key.api_key,
                    "account_id": key.account_id,
                    "balance": str(view.balance),
                    "equity": str(view.equity),
                    "available_margin": str(view.available_margin),
                    "positions": [
                        {"symbol": p.symbol, "qty": str(p.qty), "entry_price": str(p.entry_price)}
                        for p in engine.positions(key.account_id)
                    ],
                    "open_orders": [o.to_dict() for o in engine.open_orders(key.account_id)],
                    "fills": len(engine.fills(key.account_id)),
                }
            )
        return {
            "clock_ms": self.now_ms,
            "engine_ms": engine.now,
            "speed": self.config.speed,
            "candles_played": self.driver.played,
            "prices": {
                s: {"last": str(engine.last_price(s)), "mark": str(engine.mark_price(s))}
                for s in engine.instruments
            },
            "accounts": accounts,
            "faults": [r.to_dict() for r in self.faults.rules()],
            "last_event_seq": engine.last_event_seq,
        }


def _wall_minute() -> int:
    now = int(time.time() * 1000)
    return now - now % MINUTE_MS
