"""The ``history`` benchmark: audit events per second through the history writer, per backend.

The service's own writer (:class:`actors.history.HistoryWriter`: bounded mailbox, batches of
``batch_size`` in one transaction, idempotent inserts) is handed N audit events as fast as a
producer can ``tell`` them; the clock stops when the last one is committed. Each event carries a
small JSON payload, like a risk decision.

- SQLite: a fresh WAL file (``synchronous=FULL``) under ``$TMPDIR``.
- PostgreSQL: a schema of its own at ``BASTION_BENCH_PG_URL`` (else ``BASTION_TEST_PG_URL``,
  else ``postgresql://postgres@127.0.0.1:5432/test``), dropped afterwards. If it cannot be
  reached the PostgreSQL metric is left out and ``params.postgres`` says why.

``tell_per_s`` is what a producer (an actor) pays: hand-overs per second into the mailbox.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from actors.history import HistoryWriter
from actors.messages import Audit
from adapters.settings import HistorySettings
from ops.bench.harness import BenchError, BenchResult
from persistence.history import schema
from persistence.history.engine import make_engine, safe_url
from persistence.history.models import SystemEvent

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
T0 = 1_767_225_600_000


def _pg_url() -> str:
    return os.environ.get("BASTION_BENCH_PG_URL") or os.environ.get(
        "BASTION_TEST_PG_URL", DEFAULT_PG_URL
    )


def _events(n: int) -> list[Audit]:
    return [
        Audit(
            "risk_decision",
            "approved",
            T0 + i,
            "BTC/USD:USD",
            payload={"qty": "0.0125", "price": "95123.5", "strategy": "ema_cross", "n": i},
        )
        for i in range(n)
    ]


def _through_writer(url: str, spool: Path, events: list[Audit]) -> tuple[float, float]:
    """(events per second until all are committed, tells per second)."""
    params = HistorySettings(queue_size=len(events) + 1, batch_size=500, flush_interval_s=0.05)
    writer = HistoryWriter(url, spool_path=spool, params=params)
    writer.start()
    try:
        writer.tell(Audit("alert", "warm-up", T0 - 1))  # connect and check the schema first
        if not writer.wait_idle(60):
            raise BenchError(f"the writer did not start writing: {writer.snapshot()}")
        started = time.perf_counter()
        for event in events:
            writer.tell(event)
        told = time.perf_counter() - started
        if not writer.wait_idle(600):
            raise BenchError(f"the writer did not finish: {writer.snapshot()}")
        elapsed = time.perf_counter() - started
    finally:
        writer.stop()
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            stored = connection.scalar(select(func.count()).select_from(SystemEvent))
    finally:
        engine.dispose()
    if stored != len(events) + 1:
        raise BenchError(f"{stored} events stored, {len(events) + 1} sent")
    return len(events) / elapsed, len(events) / max(told, 1e-9)


def run(quick: bool) -> BenchResult:
    n = 1_000 if quick else 20_000
    events = _events(n)
    result = BenchResult(params={"events": n, "batch_size": 500})
    with tempfile.TemporaryDirectory(prefix="bastion-bench-history-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'history.db'}"
        schema.upgrade(url)
        rate, tells = _through_writer(url, Path(tmp) / "spool-sqlite.db", events)
        result.add("sqlite_events_per_s", rate, "per_s")
        result.add("tell_per_s", tells, "per_s")

        base = _pg_url()
        name = f"bastion_bench_{uuid.uuid4().hex[:10]}"
        admin = make_engine(base)
        try:
            with admin.begin() as connection:
                connection.exec_driver_sql(f'CREATE SCHEMA "{name}"')
        except SQLAlchemyError as err:
            admin.dispose()
            first = (str(err).splitlines() or ["?"])[0]
            result.params["postgres"] = f"unreachable at {safe_url(base)}: {first}"
            return result
        separator = "&" if "?" in base else "?"
        pg_url = f"{base}{separator}options={quote(f'-csearch_path={name}')}"
        result.params["postgres"] = safe_url(base)
        try:
            schema.upgrade(pg_url)
            rate, _ = _through_writer(pg_url, Path(tmp) / "spool-pg.db", events)
            result.add("postgres_events_per_s", rate, "per_s")
        finally:
            with admin.begin() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
            admin.dispose()
    return result


__all__ = ["run"]
