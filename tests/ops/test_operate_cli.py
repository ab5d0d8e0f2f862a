"""The operator's commands end to end, with no service running: each starts the paper emulator
from its saved state, acts through an execution core of its own and prints what it did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.exchange.ccxt_exchange import CcxtExchange
from adapters.sim.server.auth import PAPER_API_KEY, PAPER_API_SECRET
from adapters.sim.server.process import EmulatorProcess
from domain.models import Order, OrderRole, OrderStatus, OrderType, Side
from ops.operate import operator
from persistence.history.spool import Spool
from persistence.store import PositionStore

ROOT = Path(__file__).resolve().parents[2]
BTC = "BTC/USD:USD"


def run(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BASTION_DATA_DIR": str(tmp / "data"),
        "BASTION_LOG_DIR": str(tmp / "logs"),
    }
    return subprocess.run(
        [sys.executable, *args],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def manual_position(tmp_path: Path) -> Path:
    """A position opened by hand at the paper venue, which Bastion has never seen (its store
    exists: paper has run here once)."""
    PositionStore.open(tmp_path / "data" / "paper" / "positions.db").close()
    emulator = EmulatorProcess.start(tmp_path / "data" / "paper" / "exchange", speed=1.0)
    try:
        port = CcxtExchange(
            "krakenfutures",
            api_key=PAPER_API_KEY,
            api_secret=PAPER_API_SECRET,
            api_url=emulator.url,
        )
        port.place_order(
            Order(
                "",
                BTC,
                OrderRole.ENTRY,
                OrderType.MARKET,
                Side.BUY,
                Decimal("0.01"),
                False,
                OrderStatus.SENDING,
            )
        )
    finally:
        emulator.stop()
    return tmp_path


def test_audit_stops_and_kill_flatten_on_a_manual_position(manual_position: Path) -> None:
    tmp = manual_position
    audit = run(tmp, "-m", "ops.audit_orders", "--paper", "--json")
    assert audit.returncode == 1, audit.stderr  # an unknown, naked position needs attention
    assert json.loads(audit.stdout)["positions"][0]["classification"] == "unknown"

    dry = run(tmp, "-m", "ops.place_missing_stops", "--paper")
    assert dry.returncode == 1 and "would place a reduce-only stop" in dry.stdout, dry.stdout
    applied = run(tmp, "-m", "ops.place_missing_stops", "--paper", "--apply", "--json")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    [stop] = json.loads(applied.stdout)["stops"]
    assert stop["symbol"] == BTC and stop["qty"] == "0.01"

    again = run(tmp, "-m", "ops.audit_orders", "--paper")
    assert again.returncode == 0 and "all in order" in again.stdout, again.stdout

    plan = run(tmp, "run.py", "reconcile", "--paper", "--dry-run", "--json")
    assert plan.returncode == 0 and json.loads(plan.stdout)["actions"] == []

    killed = run(tmp, "run.py", "kill", "--paper", "--flatten", "--reason", "test")
    assert killed.returncode == 0, killed.stdout + killed.stderr
    assert "STILL WORKING" not in killed.stdout
    assert "the venue shows the account flat" in killed.stdout
    status = run(tmp, "run.py", "status", "--paper", "--json")
    assert json.loads(status.stdout)["kill_switch"]["latched"] is True

    resumed = run(tmp, "run.py", "resume", "--paper")
    assert resumed.returncode == 0 and "released" in resumed.stdout
    again_resumed = run(tmp, "run.py", "resume", "--paper")
    assert "was not latched" in again_resumed.stdout

    # with the service down, each command's audit waits in the history spool for its replay
    spool = Spool(tmp / "data" / "paper" / "history-spool.db")
    events = [row.values for _, row in spool.peek(1000) if row.table == "system_events"]
    spool.close()
    commands = [(e["reason_code"], e["who"]) for e in events if e["kind"] == "operator_command"]
    assert [c for c, _ in commands] == [
        "audit",
        "place_missing_stops",
        "place_missing_stops",
        "audit",
        "reconcile",
        "kill",
        "resume",
        "resume",
    ]
    assert {w for _, w in commands} == {operator()}
    assert {e["reason_code"] for e in events if e["kind"] == "kill_switch"} >= {"latched"}


def test_bad_configuration_is_exit_2_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("risk:\n  risk_per_trade: 7\n")
    for args in (
        ("run.py", "--config", str(bad), "kill"),
        ("-m", "ops.audit_orders", "--config", str(bad)),
    ):
        proc = run(tmp_path, *args)
        assert proc.returncode == 2, proc.stderr
        assert "risk_per_trade" in proc.stderr and "Traceback" not in proc.stderr


def test_commands_refuse_a_missing_store_and_missing_keys(tmp_path: Path) -> None:
    proc = run(tmp_path, "run.py", "kill")  # a wrong data_dir must not get a fresh store
    assert proc.returncode == 1 and "no position store at" in proc.stderr, proc.stderr
    assert not (tmp_path / "data" / "live" / "positions.db").exists()
    PositionStore.open(tmp_path / "data" / "live" / "positions.db").close()
    proc = run(tmp_path, "run.py", "kill")
    assert proc.returncode == 1
    assert "BASTION_EXCHANGE__API_KEY" in proc.stderr and "Traceback" not in proc.stderr
