"""``run.py pause``, ``unpause`` and ``close`` end to end with no service running (each starts the
paper emulator from its saved state and acts through an execution core of its own)."""

from __future__ import annotations

import json
from pathlib import Path

from persistence.store import PositionStore
from tests.ops.test_operate_cli import BTC, run


def test_pause_unpause_close_output_and_exit_codes(tmp_path: Path) -> None:
    db = tmp_path / "data" / "paper" / "positions.db"
    PositionStore.open(db).close()  # paper has run here once

    paused = run(tmp_path, "run.py", "pause", BTC, "--paper")
    assert paused.returncode == 0, paused.stdout + paused.stderr
    assert f"{BTC} paused: no new entries (via direct)" in paused.stdout
    with PositionStore.open(db) as store:
        assert store.get_value("paused_symbols") == [BTC]
    status = run(tmp_path, "run.py", "status", "--paper")
    assert f"paused symbols: {BTC}" in status.stdout, status.stdout

    unknown = run(tmp_path, "run.py", "pause", "BTC", "--paper")
    assert unknown.returncode == 2, unknown.stdout + unknown.stderr
    assert "unknown symbol 'BTC'" in unknown.stdout and BTC in unknown.stdout
    assert "Traceback" not in unknown.stderr

    closed = run(tmp_path, "run.py", "close", BTC, "--paper", "--reason", "test")
    assert closed.returncode == 0, closed.stdout + closed.stderr
    assert f"close {BTC}: no managed position on {BTC} (via direct)" in closed.stdout

    unpaused = run(tmp_path, "run.py", "unpause", BTC, "--paper", "--json")
    assert unpaused.returncode == 0, unpaused.stdout + unpaused.stderr
    result = json.loads(unpaused.stdout)
    assert (result["paused"], result["was_paused"], result["paused_symbols"]) == (False, True, [])
    with PositionStore.open(db) as store:
        assert store.get_value("paused_symbols") == []
