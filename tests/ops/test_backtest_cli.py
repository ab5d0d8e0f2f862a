"""``python run.py backtest``: reports, determinism byte for byte, and bad input."""

import csv
import json
from pathlib import Path

import pytest

import run as bastion
from adapters.sim.datasets import generate_history
from adapters.sim.instruments import default_instruments

ARGS = [
    "backtest",
    "--data",
    "generator",
    "--seed",
    "4",
    "--timeframe",
    "5m",
    "--symbols",
    "BTC/USD:USD,PF_ETHUSD",
    "--strategy",
    "ema_cross",
    "--from",
    "2025-01-01",
    "--to",
    "2025-01-03",
    "--no-progress",
]
FILES = ("trades.csv", "summary.json", "equity.png", "pnl_by_symbol.png", "r_multiples.png")


def _backtest(tmp: Path, *extra: str) -> int:
    return bastion.main(["--config", str(_config(tmp)), *ARGS, *extra])


def _config(tmp: Path) -> Path:
    path = tmp / "config.yaml"
    if not path.exists():
        path.write_text(f"data_dir: {tmp / 'data'}\nlog_dir: {tmp / 'logs'}\n")
    return path


@pytest.fixture(scope="module")
def twice(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("cli")
    first, second = tmp / "one", tmp / "two"
    assert _backtest(tmp, "--out", str(first)) == 0
    assert _backtest(tmp, "--out", str(second)) == 0
    return first, second


def test_two_runs_write_byte_identical_reports(twice: tuple[Path, Path]) -> None:
    first, second = twice
    for name in FILES:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_the_report_matches_the_trades(twice: tuple[Path, Path], capsys) -> None:
    first, _ = twice
    rows = list(csv.DictReader((first / "trades.csv").open()))
    summary = json.loads((first / "summary.json").read_text())
    perf, params = summary["performance"], summary["params"]
    assert len(rows) == perf["trade_count"] > 0
    assert {r["symbol"] for r in rows} <= {"BTC/USD:USD", "ETH/USD:USD"}
    assert params["symbols"] == ["BTC/USD:USD", "ETH/USD:USD"]
    assert params["strategy"]["name"] == "ema_cross"
    assert params["from"] == "2025-01-01T00:00:00Z" and params["to"] == "2025-01-03T00:00:00Z"
    wins = sum(1 for r in rows if float(r["realized_pnl"]) > 0)
    assert perf["win_rate"] == pytest.approx(wins / len(rows))
    for name in FILES[2:]:
        assert (first / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (first / "bastion.jsonl").exists()  # logs go to the report, not the terminal


def test_csv_files_replay_like_the_generator(tmp_path: Path, twice: tuple[Path, Path]) -> None:
    instruments = default_instruments()
    history = generate_history(
        instruments,
        seed=4,
        start_ms=1_735_689_600_000 - 1000 * 300_000,
        end_ms=1_735_862_400_000,
        timeframe="5m",
    )
    data = tmp_path / "ohlcv"
    data.mkdir()
    for symbol in ("PF_XBTUSD", "PF_ETHUSD"):
        lines = ["timestamp,open,high,low,close,volume"]
        lines += [
            f"{c.open_time},{c.open!r},{c.high!r},{c.low!r},{c.close!r},{c.volume!r}"
            for c in history.candles[symbol]
        ]
        (data / f"{symbol}_5m.csv").write_text("\n".join(lines) + "\n")
    (data / "PF_XBTUSD_1h.csv").write_text("timestamp,open,high,low,close,volume\n")  # ignored
    args = [a if a != "generator" else str(data) for a in ARGS]
    out = tmp_path / "out"
    assert bastion.main(["--config", str(_config(tmp_path)), *args, "--out", str(out)]) == 0
    assert (out / "trades.csv").read_bytes() == (twice[0] / "trades.csv").read_bytes()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--symbols", "NOPE/USD:USD"], "unknown symbol 'NOPE/USD:USD'"),
        (["--to", "2024-12-01"], "--to must be after --from"),
        (["--from", "yesterday"], "--from 'yesterday' is not a date"),
        (["--balance", "lots"], "--balance 'lots' is not a number"),
        (["--timeframe", "7m"], "--timeframe '7m' is not one of"),
        (["--data", "/nonexistent/ohlcv"], "/nonexistent/ohlcv: no such file or directory"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys, extra: list[str], message: str
) -> None:
    assert _backtest(tmp_path, *extra, "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_a_directory_without_the_symbols_files_is_refused(tmp_path: Path, capsys) -> None:
    data = tmp_path / "empty"
    data.mkdir()
    (data / "PF_XBTUSD_5m.csv").write_text("timestamp,open,high,low,close,volume\n0,1,1,1,1,1\n")
    args = [a if a != "generator" else str(data) for a in ARGS]
    assert bastion.main(["--config", str(_config(tmp_path)), *args]) == 2
    assert "no data for PF_ETHUSD" in capsys.readouterr().err
