"""``run.py report``, run as a real process against SQLite history databases."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

import run as run_py
from persistence.history import schema
from persistence.history.engine import make_engine
from persistence.history.models import Trade
from tests.test_run_cli import run

HOUR = 3_600_000
DAY = 24 * HOUR


def closed(
    position_id: str, symbol: str, strategy: str | None, age_ms: int, pnl: str, fees: str
) -> Trade:
    closed_at = int(time.time() * 1000) - age_ms
    return Trade(
        position_id=position_id,
        symbol=symbol,
        side="long",
        strategy=strategy,
        origin="strategy" if strategy else "adopted",
        opened_at=closed_at - HOUR,
        closed_at=closed_at,
        qty=Decimal(1),
        entry_price=Decimal(100),
        exit_price=Decimal(101),
        fees=Decimal(fees),
        realized_pnl=Decimal(pnl),
    )


@pytest.fixture
def history(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A migrated, populated SQLite history database and the environment that selects it."""
    db = tmp_path / "elsewhere" / "history.db"
    url = f"sqlite:///{db}"
    schema.upgrade(url)
    engine = make_engine(url)
    with Session(engine) as session:
        session.add_all(
            [
                closed("a", "BTC/USD:USD", "ema_cross", 3 * HOUR, "120.5", "1.5"),
                closed("b", "ETH/USD:USD", "ema_cross", 2 * HOUR, "-20", "0.5"),
                closed("c", "BTC/USD:USD", None, 1 * HOUR, "-0.5", "0.25"),
                closed("old", "BTC/USD:USD", "ema_cross", 3 * DAY, "1000", "1"),
                Trade(
                    position_id="open",
                    symbol="ETH/USD:USD",
                    side="short",
                    strategy="smc",
                    origin="strategy",
                    opened_at=int(time.time() * 1000) - HOUR,
                    qty=Decimal(1),
                    entry_price=Decimal(100),
                ),
            ]
        )
        session.commit()
    engine.dispose()
    return {"BASTION_DATABASE_URL": url}, db


def test_json_numbers_of_a_populated_database(
    tmp_path: Path, history: tuple[dict[str, str], Path]
) -> None:
    env, _ = history
    result = run("report", "--days", "2", "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["window"]["days"] == 2
    assert (data["open_trades"], data["incomplete_trades"]) == (1, 0)
    overall = data["overall"]
    # 120.5, -20, -0.5 ("old" is 3 days back): 1 win of 3; net 100; fees 1.5+0.5+0.25 = 2.25;
    # PF 120.5 / 20.5; cumulative 0, 120.5, 100.5, 100: DD 20.5 of 120.5
    assert (overall["count"], overall["wins"], overall["losses"]) == (3, 1, 2)
    assert overall["win_rate"] == pytest.approx(1 / 3)
    assert (overall["net_pnl"], overall["fees"]) == ("100", "2.25")
    assert overall["profit_factor"] == pytest.approx(120.5 / 20.5)
    assert overall["max_drawdown"]["amount"] == "20.5"
    assert overall["max_drawdown"]["fraction"] == pytest.approx(20.5 / 120.5)
    assert sum(day["count"] for day in data["by_day"].values()) == 3
    assert {k: v["net_pnl"] for k, v in data["by_symbol"].items()} == {
        "BTC/USD:USD": "120",  # 120.5 - 0.5
        "ETH/USD:USD": "-20",
    }
    assert {k: v["count"] for k, v in data["by_strategy"].items()} == {
        "adopted": 1,
        "ema_cross": 2,
    }

    wide = json.loads(run("report", "--json", cwd=tmp_path, env=env).stdout)  # default 30 days
    assert (wide["window"]["days"], wide["overall"]["count"]) == (30, 4)
    assert wide["overall"]["net_pnl"] == "1100"


def test_table_of_a_populated_database(
    tmp_path: Path, history: tuple[dict[str, str], Path]
) -> None:
    env, _ = history
    result = run("report", "--days", "2", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    for heading in ("by day (UTC)", "by symbol", "by strategy", "total"):
        assert heading in result.stdout
    total = next(line for line in result.stdout.splitlines() if line.startswith("  all "))
    assert total.split()[:6] == ["all", "3", "33.3%", "100.00", "2.25", "5.88"]  # 120.5/20.5
    assert "open trades: 1" in result.stdout


def test_empty_database_says_so(tmp_path: Path) -> None:
    schema.upgrade(f"sqlite:///{tmp_path / 'data' / 'paper' / 'history.db'}")
    result = run("report", "--paper", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no closed trades in the last 30 day(s)" in result.stdout
    assert "sqlite:///data/paper/history.db" in result.stdout


def test_missing_database_exits_3_with_the_migrate_hint(tmp_path: Path) -> None:
    result = run("report", "--paper", cwd=tmp_path)
    assert result.returncode == 3
    assert result.stderr.startswith("bastion: no history database at data/paper/history.db")
    assert "run `python run.py migrate --paper`" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()  # a report never creates a database


def test_unmigrated_database_exits_3_with_the_migrate_hint(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    db.touch()
    result = run("report", cwd=tmp_path, env={"BASTION_DATABASE_URL": f"sqlite:///{db}"})
    assert result.returncode == 3
    assert "has no schema" in result.stderr
    assert "run `python run.py migrate`" in result.stderr
    assert "Traceback" not in result.stderr


def test_older_schema_exits_3_with_the_migrate_hint(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    schema.upgrade(url, schema.revisions()[-2])
    result = run("report", cwd=tmp_path, env={"BASTION_DATABASE_URL": url})
    assert result.returncode == 3
    assert "run `python run.py migrate`" in result.stderr
    assert "Traceback" not in result.stderr


def test_corrupt_database_exits_3(tmp_path: Path) -> None:
    db = tmp_path / "garbage.db"
    db.write_bytes(b"garbage" * 1000)
    result = run("report", cwd=tmp_path, env={"BASTION_DATABASE_URL": f"sqlite:///{db}"})
    assert result.returncode == 3
    assert result.stderr.startswith("bastion: cannot read the history database")
    assert "Traceback" not in result.stderr
    assert db.read_bytes() == b"garbage" * 1000


def test_days_0_exits_2(tmp_path: Path) -> None:
    result = run("report", "--days", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert "argument --days: must be at least 1, not 0" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("days", ["-1", "seven", "1.5"])
def test_other_bad_days_are_usage_errors(days: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_py.main(["report", "--days", days])  # refused while parsing: nothing is read
    assert exit_.value.code == 2
    assert "argument --days" in capsys.readouterr().err


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+nodriver://bastion:pg-secret@db/history",
        "postgresql://bastion:pg-secret@127.0.0.1:1/history",  # nothing listens on port 1
    ],
)
def test_bad_url_exits_2_without_the_password(tmp_path: Path, url: str) -> None:
    result = run("report", cwd=tmp_path, env={"BASTION_DATABASE_URL": url})
    assert result.returncode == 2
    assert result.stderr.startswith("bastion: ")
    assert "pg-secret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
