"""The ``store`` benchmark: durable position transitions per second through ``PositionStore``.

A real store (WAL, ``synchronous=FULL``, one ``BEGIN IMMEDIATE`` transaction per commit) in a
temporary directory under ``$TMPDIR``; set ``TMPDIR`` to a directory on the disk that will hold
``data_dir`` to measure that disk (``params.fs_type`` shows what was measured; ``tmpfs`` makes
fsync free). The directory is removed afterwards.

1. Seed active positions (entry filled, stop resting), as a restarted service would find them.
2. Workload, timed: rounds of positions driven through a whole life, round-robin so commits of
   different positions interleave: open, entry fill, stop submitted, stop acked, stop replaced
   (submitted, acked), take-profit submitted, take-profit partial fill, stop resized (submitted,
   acked), then an exit (requested, filled) or the stop (triggered, filled). Each event is one
   ``store.commit(position, change)``, as in the live system.
3. ``store.load_active()`` of the seeded positions, timed (median of a few runs).
"""

from __future__ import annotations

import itertools
import math
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from domain.models import Fill, OrderRole, PositionSide
from domain.position import MACHINE, Change, Position
from ops.bench.harness import BenchResult
from persistence.store import PositionStore

TRANSITIONS_PER_POSITION = 12
SYNCHRONOUS_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
START_MS = 1_700_000_000_000
STEP_MS = 250


@dataclass(frozen=True, slots=True)
class Plan:
    """Sizes of one run."""

    active_positions: int  # seeded, then loaded by load_active
    concurrency: int  # positions in flight per workload round
    min_transitions: int
    min_seconds: float
    max_seconds: float  # no new round starts after this much workload time
    load_repeats: int


FULL = Plan(
    active_positions=500,
    concurrency=25,
    min_transitions=3000,
    min_seconds=3.0,
    max_seconds=60.0,
    load_repeats=5,
)
QUICK = Plan(
    active_positions=20,
    concurrency=9,
    min_transitions=100,
    min_seconds=0.0,
    max_seconds=0.0,
    load_repeats=3,
)


class _Counters:
    """Deterministic position ids, fill ids and event times."""

    def __init__(self) -> None:
        self._positions = itertools.count(1)
        self._fills = itertools.count(1)
        self._clock = itertools.count(START_MS, STEP_MS)

    def position_id(self) -> str:
        return f"bench{next(self._positions):06d}"

    def fill_id(self) -> str:
        return f"bf{next(self._fills):08d}"

    def now(self) -> int:
        return next(self._clock)


def _fill(
    c: _Counters, pos: Position, role: OrderRole, qty: str, *, price: Decimal, client_id: str
) -> Change:
    side = pos.side.exit_side if role.reduces else pos.side.entry_side
    fill = Fill(c.fill_id(), pos.symbol, side, Decimal(qty), price, c.now(), client_id=client_id)
    change = pos.apply_fill(fill, role, at=c.now())
    if change is None:
        raise RuntimeError(f"fill {fill.fill_id} of {pos.id} was ignored as a duplicate")
    return change


def _protected(c: _Counters, n: int) -> Generator[tuple[Position, Change], None, Position]:
    """Open, entry fill, stop submitted, stop acked: a protected position of qty 2."""
    side = PositionSide.LONG if n % 2 == 0 else PositionSide.SHORT
    pos, change = Position.open(
        c.position_id(), f"PF_B{n}USD", side, Decimal(2), at=c.now(), strategy="bench"
    )
    yield pos, change
    entry = pos.entry_client_id
    yield pos, _fill(c, pos, OrderRole.ENTRY, "2", price=_price(pos, 0), client_id=entry)
    stop = pos.submit_stop(_price(pos, -10), at=c.now())
    yield pos, stop
    yield pos, pos.on_stop_acked(stop.orders[0].client_id, at=c.now(), exchange_id="x")
    return pos


def _lifecycle(c: _Counters, n: int) -> Iterator[tuple[Position, Change]]:
    """A whole life of TRANSITIONS_PER_POSITION events, ending closed."""
    pos = yield from _protected(c, n)
    trail = pos.submit_stop(_price(pos, -5), at=c.now())
    yield pos, trail
    yield pos, pos.on_stop_acked(trail.orders[0].client_id, at=c.now(), exchange_id="x")
    tp = pos.submit_take_profit(_price(pos, 10), Decimal(1), at=c.now())
    yield pos, tp
    tp_id = tp.orders[0].client_id
    yield pos, _fill(c, pos, OrderRole.TAKE_PROFIT, "1", price=_price(pos, 10), client_id=tp_id)
    resize = pos.submit_stop(_price(pos, -5), at=c.now())
    yield pos, resize
    stop_id = resize.orders[0].client_id
    yield pos, pos.on_stop_acked(stop_id, at=c.now(), exchange_id="x")
    if n % 2 == 0:
        exit_change = pos.request_exit(at=c.now(), reason="bench")
        yield pos, exit_change
        exit_id = exit_change.orders[0].client_id
        yield pos, _fill(c, pos, OrderRole.EXIT, "1", price=_price(pos, 3), client_id=exit_id)
    else:
        yield pos, pos.on_stop_triggered(stop_id, at=c.now())
        yield pos, _fill(c, pos, OrderRole.STOP, "1", price=_price(pos, -5), client_id=stop_id)
    if not pos.is_terminal:
        raise RuntimeError(f"{pos!r} did not close")


def _price(pos: Position, offset: int) -> Decimal:
    """100 moved ``offset`` in the position's favour (negative: against it)."""
    return Decimal(100 + offset if pos.side is PositionSide.LONG else 100 - offset)


def _drive(
    store: PositionStore, lives: list[Iterator[tuple[Position, Change]]], latencies: list[float]
) -> int:
    """Step the lives round-robin, committing each change; returns the number committed."""
    committed = 0
    while lives:
        still: list[Iterator[tuple[Position, Change]]] = []
        for life in lives:
            step = next(life, None)
            if step is None:
                continue
            pos, change = step
            started = time.perf_counter()
            store.commit(pos, change)
            latencies.append(time.perf_counter() - started)
            committed += 1
            still.append(life)
        lives = still
    return committed


def _percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _fs_type(path: Path) -> str:
    """The type of the filesystem holding ``path`` (Linux ``/proc/mounts``), else ``unknown``."""
    target = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace("\\040", " ")
                inside = target == point or target.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, kind = point, fields[2]
    except OSError:
        return "unknown"
    return kind


def _log(message: str) -> None:
    print(f"store: {message}", file=sys.stderr, flush=True)


def _load_active_ms(store: PositionStore, expected: int, repeats: int) -> float:
    timings: list[float] = []
    for _ in range(repeats):
        started = time.perf_counter()
        loaded = store.load_active()
        timings.append((time.perf_counter() - started) * 1000)
        if len(loaded) != expected:
            raise RuntimeError(f"load_active returned {len(loaded)} positions, not {expected}")
        for pos in loaded:  # loaded positions join the shared machine; leave it as found
            MACHINE.remove_model(pos)
    return statistics.median(timings)


def run(quick: bool) -> BenchResult:
    """Run the benchmark at the sizes of :data:`QUICK` or :data:`FULL`."""
    plan = QUICK if quick else FULL
    counters = _Counters()
    numbers = itertools.count()
    with tempfile.TemporaryDirectory(prefix="bastion-bench-store-") as tmp:
        directory = Path(tmp)
        with PositionStore.open(directory / "positions.sqlite") as store:
            _log(f"seeding {plan.active_positions} active positions in {directory}")
            seeds = [_protected(counters, next(numbers)) for _ in range(plan.active_positions)]
            _drive(store, seeds, [])

            _log("running the workload")
            latencies: list[float] = []
            transitions = positions = 0
            started = time.perf_counter()
            while True:
                lives = [_lifecycle(counters, next(numbers)) for _ in range(plan.concurrency)]
                transitions += _drive(store, lives, latencies)
                positions += plan.concurrency
                elapsed = time.perf_counter() - started
                enough = transitions >= plan.min_transitions and elapsed >= plan.min_seconds
                if enough or elapsed >= plan.max_seconds:
                    break
            _log(f"{transitions} transitions of {positions} positions in {elapsed:.2f} s")

            load_ms = _load_active_ms(store, plan.active_positions, plan.load_repeats)
            journal_mode = str(store.pragma("journal_mode")).lower()
            sync = int(store.pragma("synchronous"))

    result = BenchResult(
        params={
            "quick": quick,
            "positions": positions,
            "transitions": transitions,
            "transitions_per_position": TRANSITIONS_PER_POSITION,
            "concurrency": plan.concurrency,
            "active_positions": plan.active_positions,
            "load_active_repeats": plan.load_repeats,
            "journal_mode": journal_mode,
            "synchronous": SYNCHRONOUS_NAMES.get(sync, str(sync)),
            "sqlite_version": sqlite3.sqlite_version,
            "dir": str(directory.parent),
            "fs_type": _fs_type(directory.parent),
        }
    )
    result.add("durable_transitions_per_s", transitions / elapsed, "per_s")
    result.add("commit_p50_ms", _percentile(latencies, 50) * 1000, "ms")
    result.add("commit_p99_ms", _percentile(latencies, 99) * 1000, "ms")
    result.add("load_active_ms", load_ms, "ms")
    result.add("transitions", transitions, "count")
    return result
