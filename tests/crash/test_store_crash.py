"""SIGKILL a process that is committing transitions, again and again, on one store.

After every kill the store must open (the kernel drops the lock with the process), pass
``PRAGMA integrity_check``, and hold every transition the child reported as committed, each with
its journal rows and fills; nothing may be half-written.
"""

from __future__ import annotations

import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from persistence.store import PositionStore

ROOT = Path(__file__).resolve().parents[2]


def _run_and_kill(db: Path, seed: int, rng: random.Random) -> list[list[str]]:
    """Start the child, let it commit for a random while, SIGKILL it; return its reports."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.crash.store_child", str(db), str(seed)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    fd = child.stdout.fileno()
    buffer = b""
    deadline = time.monotonic() + 30
    while b"ready\n" not in buffer:  # wait for startup without sleeping blindly
        assert time.monotonic() < deadline, "child did not start"
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, child.stderr.read().decode() if child.stderr else "child died"
            buffer += chunk
    kill_at = time.monotonic() + rng.uniform(0.0, 0.25)
    while (left := kill_at - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buffer += chunk
    child.send_signal(signal.SIGKILL)
    rest, err = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL, err.decode()
    buffer += rest
    return [line.split() for line in buffer.decode().splitlines() if line.startswith("C ")]


def _check(db: Path, reports: list[list[str]]) -> None:
    with PositionStore.open(db) as store:  # opens: no stale lock, not corrupt
        assert store.integrity_check() == "ok"
        store.load_active()  # every live record still rebuilds into a machine
    raw = sqlite3.connect(db)
    try:
        for _, seq, pid, version, n_orders, n_updates, n_fills in reports:
            row = raw.execute(
                "SELECT position_id, version FROM transitions WHERE seq = ?", (int(seq),)
            ).fetchone()
            assert row == (pid, int(version)), f"committed transition {seq} is missing"
            count = raw.execute(
                "SELECT COUNT(*) FROM orders WHERE transition_seq = ?", (int(seq),)
            ).fetchone()[0]
            assert count == int(n_orders)
            events = raw.execute(
                "SELECT COUNT(*) FROM order_events WHERE transition_seq = ?", (int(seq),)
            ).fetchone()[0]
            assert events == int(n_orders) + int(n_updates)
            fills = raw.execute(
                "SELECT COUNT(*) FROM fills WHERE transition_seq = ?", (int(seq),)
            ).fetchone()[0]
            assert fills == int(n_fills)
        # nothing half-written: each position row is at the version of its last transition
        mismatched = raw.execute(
            "SELECT p.id FROM positions p JOIN (SELECT position_id, MAX(version) v, "
            "COUNT(*) n FROM transitions GROUP BY position_id) t ON t.position_id = p.id "
            "WHERE p.version != t.v OR t.n != t.v"
        ).fetchall()
        assert mismatched == []
        orphans = raw.execute(
            "SELECT COUNT(*) FROM positions WHERE id NOT IN (SELECT position_id FROM transitions)"
        ).fetchone()[0]
        assert orphans == 0
    finally:
        raw.close()


def test_sigkill_while_committing_never_loses_or_tears_a_transition(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    runs = int(request.config.getoption("--crash-runs"))
    rng = random.Random(20261122)
    db = tmp_path / "positions.db"
    total = 0
    for run in range(runs):
        reports = _run_and_kill(db, seed=run, rng=rng)
        _check(db, reports)
        total += len(reports)
    assert total > runs  # the kills landed while commits were flowing
