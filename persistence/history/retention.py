"""Retention for the history database: old candles and system events are pruned in batches.

Only two tables are ever pruned:

- ``candles``, by ``time`` (the bar's open time), older than ``candles_keep_days``;
- ``system_events``, by ``at``, older than ``events_keep_days``.

``orders``, ``order_events``, ``fills``, ``trades`` and ``account_snapshots`` are the books
and are never pruned, whatever the settings say. A keep age of None keeps that table forever.

"Older than" is strict: with ``cutoff = now_ms - keep_ms``, a row is deleted when its time is
``< cutoff``; a row exactly at the cutoff (exactly ``keep`` old) is kept.

How a batch is chosen. Every batch is one statement in its own short transaction, the same SQL
on SQLite and PostgreSQL, and finds its rows only through the time index::

    DELETE FROM candles WHERE time <= COALESCE(
        (SELECT time FROM candles WHERE time < :cutoff ORDER BY time LIMIT 1 OFFSET :batch - 1),
        :cutoff - 1)

The subquery finds the time of the batch's last row (the ``batch``-th oldest row below the
cutoff); when fewer than ``batch`` rows are left it finds nothing and the delete takes every
row below the cutoff (times are integer milliseconds, so ``<= cutoff - 1`` is ``< cutoff``).
Both backends evaluate the subquery once and then delete one range of the time index.
Alternatives were rejected: SQLite has no ``DELETE ... LIMIT`` (unless compiled with it), and
``WHERE id IN (SELECT id ... LIMIT n)`` (or a row-value IN over the candles' primary key) is
planned by PostgreSQL as a hash join over a sequential scan of the whole table, once per batch.
A batch being a time range, it may exceed ``batch`` by the rows sharing its last time: at most
one per candle series (symbol, timeframe), and only rows with an identical millisecond among
events.

Nothing sleeps between batches. Each batch commits on its own, so a writer waits at most one
batch for SQLite's write lock (PostgreSQL only locks the deleted rows), and an error loses
only the failing batch. ``max_batches`` caps one call's work so a caller can spread a large
backlog over several calls; the tables take turns, so neither starves the other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa
import structlog

from persistence.history.models import Base, Candle, SystemEvent

log = structlog.get_logger(__name__)

DAY_MS = 86_400_000


class RetentionSettings(Protocol):
    """The retention settings :meth:`RetentionPolicy.from_settings` reads (``HistorySettings``
    in ``adapters.settings`` provides them)."""

    @property
    def candles_keep_days(self) -> float | None: ...

    @property
    def events_keep_days(self) -> float | None: ...

    @property
    def prune_batch(self) -> int: ...


@dataclass(frozen=True)
class RetentionPolicy:
    """How long candles and system events are kept (ms; None keeps forever) and the batch size."""

    candles_keep_ms: int | None
    events_keep_ms: int | None
    batch: int

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ValueError(f"batch must be at least 1, got {self.batch}")
        for name in ("candles_keep_ms", "events_keep_ms"):
            keep = getattr(self, name)
            if keep is not None and keep <= 0:
                raise ValueError(f"{name} must be positive or None, got {keep}")

    @classmethod
    def from_settings(cls, history: RetentionSettings) -> RetentionPolicy:
        """The policy for the ``history`` settings section (days become milliseconds)."""
        return cls(
            candles_keep_ms=_days_to_ms(history.candles_keep_days),
            events_keep_ms=_days_to_ms(history.events_keep_days),
            batch=history.prune_batch,
        )


def _days_to_ms(days: float | None) -> int | None:
    return None if days is None else max(1, round(days * DAY_MS))


@dataclass(frozen=True)
class PruneResult:
    """What one :func:`prune` call deleted, in how many batches and how long it took."""

    candles_deleted: int
    events_deleted: int
    batches: int
    elapsed_s: float


@dataclass
class _Target:
    """One prunable table while a :func:`prune` call works on it."""

    table: sa.Table
    column: str
    cutoff: int
    deleted: int = 0
    done: bool = False


def _delete_batch(engine: sa.Engine, target: _Target, batch: int) -> int:
    """Delete the ``batch`` oldest rows below the cutoff (see module docstring); the count."""
    older = target.table.alias("older")
    last = (
        sa.select(older.c[target.column])
        .where(older.c[target.column] < target.cutoff)
        .order_by(older.c[target.column])
        .limit(1)
        .offset(batch - 1)
        .scalar_subquery()
    )
    statement = sa.delete(target.table).where(
        target.table.c[target.column]
        <= sa.func.coalesce(last, sa.literal(target.cutoff - 1, sa.BigInteger))
    )
    with engine.begin() as connection:
        return connection.execute(statement).rowcount


def prune(
    engine: sa.Engine,
    policy: RetentionPolicy,
    now_ms: int,
    *,
    max_batches: int | None = None,
) -> PruneResult:
    """Delete candles and system events older than ``policy`` allows at ``now_ms``.

    Works batch by batch (each its own transaction) until nothing older is left or
    ``max_batches`` batches have deleted rows; what is left is for the next call. A batch
    that deletes nothing is not counted. Database errors propagate; batches committed before
    the error stay deleted.
    """
    if max_batches is not None and max_batches < 0:
        raise ValueError(f"max_batches must be zero or more, got {max_batches}")
    started = time.monotonic()
    tables = Base.metadata.tables
    targets = {
        name: _Target(tables[table], column, now_ms - keep)
        for name, table, column, keep in (
            ("candles", Candle.__tablename__, "time", policy.candles_keep_ms),
            ("events", SystemEvent.__tablename__, "at", policy.events_keep_ms),
        )
        if keep is not None
    }
    batches = 0
    while max_batches is None or batches < max_batches:
        pending = [target for target in targets.values() if not target.done]
        if not pending:
            break
        for target in pending:
            if max_batches is not None and batches >= max_batches:
                break
            deleted = _delete_batch(engine, target, policy.batch)
            if deleted:
                batches += 1
                target.deleted += deleted
            # A short batch took everything below the cutoff; a full one may have left more.
            target.done = deleted < policy.batch
    candles = targets.get("candles")
    events = targets.get("events")
    result = PruneResult(
        candles_deleted=candles.deleted if candles else 0,
        events_deleted=events.deleted if events else 0,
        batches=batches,
        elapsed_s=time.monotonic() - started,
    )
    log.info(
        "history_pruned",
        candles_deleted=result.candles_deleted,
        events_deleted=result.events_deleted,
        batches=result.batches,
        capped=any(not target.done for target in targets.values()),
        elapsed_s=round(result.elapsed_s, 3),
    )
    return result


__all__ = ["PruneResult", "RetentionPolicy", "RetentionSettings", "prune"]
