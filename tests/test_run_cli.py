"""The operator's entry point, run as a real process."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from domain.position_table import to_mermaid
from persistence.history import schema
from persistence.history.rows import Row
from persistence.history.spool import Spool
from persistence.store import PositionStore
from tests.domain import factory

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = run("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("paper", "check-config", "fsm-diagram"):
        assert command in result.stdout


def test_fsm_diagram_prints_the_table(tmp_path: Path) -> None:
    result = run("fsm-diagram", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout == to_mermaid()


def test_bad_config_exits_2_naming_every_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("risk_limitz: 1\nrisk:\n  max_margin_util: 1.5\n")
    result = run("--config", str(config), "paper", cwd=tmp_path)
    assert result.returncode == 2
    assert "risk_limitz" in result.stderr
    assert "risk.max_margin_util" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "data").exists()  # nothing started


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = run("check-config", "--config", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_command_is_a_usage_error(tmp_path: Path) -> None:
    assert run("trade-everything", cwd=tmp_path).returncode == 2


def test_check_config_masks_secrets(tmp_path: Path) -> None:
    secret = "c2VjcmV0LXZhbHVlLWZvci10ZXN0cw=="
    env = {"BASTION_EXCHANGE__API_KEY": "key-for-tests", "BASTION_EXCHANGE__API_SECRET": secret}
    result = run("check-config", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout
    assert "key-for-tests" not in result.stdout


def test_paper_runs_on_defaults_and_stops_cleanly(tmp_path: Path) -> None:
    result = run("paper", "--duration", "8", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "paper trading against the simulated exchange" in result.stdout
    assert (tmp_path / "data" / "paper" / "positions.db").exists()
    log = (tmp_path / "logs" / "bastion.jsonl").read_text()
    for event in ("emulator_started", "system_ready", "system_stopped", "emulator_stopped"):
        assert f'"{event}"' in log
    # the default history database is created at the newest schema on the first run
    assert '"history_db_created"' in log
    assert schema.check(f"sqlite:///{tmp_path / 'data' / 'paper' / 'history.db'}") == schema.head()


@pytest.mark.parametrize("revision", [None, "ffff9999"])
def test_paper_refuses_a_history_database_it_cannot_use(
    tmp_path: Path, revision: str | None
) -> None:
    """An unmigrated or newer history database stops startup with the migrate hint (exit 3)."""
    path = tmp_path / "elsewhere" / "history.db"
    url = f"sqlite:///{path}"
    if revision is None:
        path.parent.mkdir()
        sqlite3.connect(path).close()  # an empty database: never migrated
    else:
        schema.upgrade(url)
        with sqlite3.connect(path) as db:
            db.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    before = path.read_bytes()
    result = run("paper", "--duration", "5", cwd=tmp_path, env={"BASTION_PAPER_DATABASE_URL": url})
    assert result.returncode == 3, result.stderr
    assert "refusing to start" in result.stderr
    assert ("python run.py migrate" if revision is None else "newer Bastion") in result.stderr
    assert "Traceback" not in result.stderr
    assert path.read_bytes() == before  # never touched


@pytest.mark.parametrize("content", [b"garbage" * 1000, b"SQLite format 3\x00" + b"\x00" * 100])
def test_corrupt_store_refuses_to_start_and_is_left_untouched(
    tmp_path: Path, content: bytes
) -> None:
    db = tmp_path / "data" / "paper" / "positions.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(content)
    result = run("paper", cwd=tmp_path)
    assert result.returncode == 3
    assert "refusing to start" in result.stderr
    assert "Traceback" not in result.stderr
    assert db.read_bytes() == content


def test_sim_exchange_is_listed_and_passes_its_own_options(tmp_path: Path) -> None:
    assert "sim-exchange" in run("--help", cwd=tmp_path).stdout
    result = run("sim-exchange", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "--state" in result.stdout
    assert "--api-secret" in result.stdout


def test_sim_exchange_refuses_a_secret_ccxt_cannot_use(tmp_path: Path) -> None:
    result = run(
        "sim-exchange", "--state", str(tmp_path / "s"), "--api-secret", "not base64!", cwd=tmp_path
    )
    assert result.returncode == 2
    assert "base64" in result.stderr


def test_status_reads_a_store_held_by_a_running_service(tmp_path: Path) -> None:
    db = tmp_path / "data" / "live" / "positions.db"
    db.parent.mkdir(parents=True)
    with PositionStore.open(db) as store:  # holds the writer lock, like the service
        pos = factory.protected()
        pos.version = 1
        store.commit(pos, factory.Change(pos.id, "opened", None, pos.current, 1, 1))
        result = run("status", "--json", cwd=tmp_path)
        text = run("status", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    (row,) = report["positions"]
    assert (row["state"], row["qty"], row["stop"]) == ("protected", "1", "90")
    assert report["kill_switch"] == {"latched": False}
    assert report["history"] == {"spooled": 0, "rejected": 0}
    assert "protected" in text.stdout

    spool = Spool(db.with_name("history-spool.db"))  # the history database was unreachable
    spool.append([Row("system_events", {"event_id": f"e{i}"}) for i in range(3)])
    spool.close()
    waiting = run("status", cwd=tmp_path)
    assert "history: 3 row(s) waiting in the spool" in waiting.stdout, waiting.stdout


def test_migrate_creates_and_upgrades_the_history_database(tmp_path: Path) -> None:
    result = run("migrate", "--paper", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    head = schema.head()
    assert f"sqlite:///data/paper/history.db: migrated from empty to {head}" in result.stdout
    assert (tmp_path / "data" / "paper" / "history.db").exists()

    again = run("migrate", "--paper", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"unchanged at {head}" in again.stdout

    down = run("migrate", "--paper", "--downgrade", "base", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert f"migrated from {head} to empty" in down.stdout


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+nodriver://bastion:pg-secret@db/history",
        "postgresql://bastion:pg-secret@127.0.0.1:1/history",  # nothing listens on port 1
    ],
)
def test_migrate_bad_url_exits_2_without_traceback(tmp_path: Path, url: str) -> None:
    result = run("migrate", cwd=tmp_path, env={"BASTION_DATABASE_URL": url})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("bastion: ")
    assert "bastion:***@" in result.stderr
    assert "pg-secret" not in result.stderr + result.stdout


def test_migrate_refuses_a_newer_history_database(tmp_path: Path) -> None:
    db = tmp_path / "newer.db"
    env = {"BASTION_DATABASE_URL": f"sqlite:///{db}"}
    assert run("migrate", cwd=tmp_path, env=env).returncode == 0
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'ffff9999'")
    result = run("migrate", cwd=tmp_path, env=env)
    assert result.returncode == 3
    assert "newer Bastion" in result.stderr
    assert "Traceback" not in result.stderr
