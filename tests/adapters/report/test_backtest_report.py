import csv
import enum
import io
import json
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.report.backtest import CSV_COLUMNS, ReportFiles, summary_json, write_report
from domain.performance import DAY_MS, ClosedTrade, EquityPoint, Performance, performance

D = Decimal
H = 3_600_000
DAY0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
START, END = DAY0, DAY0 + 3 * DAY_MS
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Mode(enum.Enum):
    BACKTEST = "backtest"


TRADES = [
    ClosedTrade(
        position_id="p2",
        symbol="ETH/USD:USD",
        side="short",
        strategy=None,
        opened_at=DAY0 + 2 * H,
        closed_at=DAY0 + DAY_MS + 30 * 60_000 + 250,
        qty=D("1.500"),
        entry_price=D("2250.5"),
        exit_price=None,
        fees=D("0.0123456789"),
        funding=D("-0.5"),
        realized_pnl=D("-12.25"),
        r_multiple=None,
        exit_reason=None,
    ),
    ClosedTrade(
        position_id="p1",
        symbol="BTC/USD:USD",
        side="long",
        strategy="trend",
        opened_at=DAY0 + H,
        closed_at=DAY0 + 5 * H,
        qty=D("0.01"),
        entry_price=D("42000"),
        exit_price=D("42600.0"),
        fees=D("0.5"),
        funding=D("0"),
        realized_pnl=D("5.5"),
        r_multiple=D("1.1"),
        exit_reason="take_profit",
    ),
]
EQUITY = [
    EquityPoint(DAY0 + 5 * H, D("1005.5")),
    EquityPoint(DAY0 + DAY_MS, D("990")),
    EquityPoint(DAY0 + 2 * DAY_MS, D("993.25")),
    EquityPoint(DAY0 + 3 * DAY_MS, D("993.25")),
]
PARAMS = {"symbols": ["BTC/USD:USD", "ETH/USD:USD"], "risk": D("0.0100"), "mode": Mode.BACKTEST}


def perf_of(trades: list[ClosedTrade], equity: list[EquityPoint]) -> Performance:
    return performance(trades, equity, start_ms=START, end_ms=END, start_equity=D(1000))


@pytest.fixture(scope="module")
def two_reports(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReportFiles, ReportFiles]:
    perf = perf_of(TRADES, EQUITY)
    first = write_report(tmp_path_factory.mktemp("a") / "new" / "dir", TRADES, EQUITY, perf, PARAMS)
    second = write_report(tmp_path_factory.mktemp("b"), TRADES, EQUITY, perf, PARAMS)
    return first, second


def test_trades_csv_has_one_exact_row_per_trade_in_close_order(two_reports) -> None:
    files, _ = two_reports
    text = files.trades_csv.read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 3
    first, second = (dict(zip(CSV_COLUMNS, row, strict=True)) for row in rows[1:])
    assert first == {
        "position_id": "p1",
        "symbol": "BTC/USD:USD",
        "side": "long",
        "strategy": "trend",
        "opened_at": str(DAY0 + H),
        "opened_at_utc": "2024-01-01T01:00:00.000Z",
        "closed_at": str(DAY0 + 5 * H),
        "closed_at_utc": "2024-01-01T05:00:00.000Z",
        "qty": "0.01",
        "entry_price": "42000",
        "exit_price": "42600",
        "fees": "0.5",
        "funding": "0",
        "realized_pnl": "5.5",
        "r_multiple": "1.1",
        "exit_reason": "take_profit",
    }
    assert second["position_id"] == "p2"
    assert second["closed_at_utc"] == "2024-01-02T00:30:00.250Z"
    assert second["qty"] == "1.5"
    assert second["fees"] == "0.0123456789"  # exact, not a float's 0.012345678899999999
    assert second["funding"] == "-0.5"
    assert (second["strategy"], second["exit_price"], second["r_multiple"]) == ("", "", "")
    assert second["exit_reason"] == ""
    assert "\r" not in text


def test_summary_json_round_trips(two_reports) -> None:
    files, _ = two_reports
    document = json.loads(files.summary_json.read_text(encoding="utf-8"))
    assert document["params"] == {
        "symbols": ["BTC/USD:USD", "ETH/USD:USD"],
        "risk": "0.01",
        "mode": "backtest",
    }
    expected = json.loads(json.dumps(perf_of(TRADES, EQUITY).to_dict()))
    assert document["performance"] == expected
    assert document["performance"]["net_pnl"] == "-6.75"  # 5.5 - 12.25
    assert document["performance"]["end_equity"] == "993.25"


def test_every_file_is_byte_identical_across_two_writes(two_reports) -> None:
    first, second = two_reports
    for a, b in zip(first.all(), second.all(), strict=True):
        assert a.name == b.name
        assert a.read_bytes() == b.read_bytes(), a.name
    assert summary_json(perf_of(TRADES, EQUITY), PARAMS).endswith("}\n")


def test_pngs_are_valid_and_the_directory_holds_only_the_report(two_reports) -> None:
    files, _ = two_reports
    for path in (files.equity_png, files.pnl_by_symbol_png, files.r_multiples_png):
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC), path.name
        assert b"Software" not in data  # no version stamp: the bytes depend on the input only
    assert sorted(p.name for p in files.trades_csv.parent.iterdir()) == sorted(
        p.name for p in files.all()
    )


def test_empty_run_still_writes_every_file(tmp_path: Path) -> None:
    perf = perf_of([], [])
    files = write_report(tmp_path, [], [], perf, {})
    assert files.trades_csv.read_text(encoding="utf-8") == ",".join(CSV_COLUMNS) + "\n"
    document = json.loads(files.summary_json.read_text(encoding="utf-8"))
    assert document["params"] == {}
    assert document["performance"]["trade_count"] == 0
    assert document["performance"]["win_rate"] is None
    for path in (files.equity_png, files.pnl_by_symbol_png, files.r_multiples_png):
        assert path.read_bytes().startswith(PNG_MAGIC)
    # the "no trades" notice differs from a drawn chart
    assert files.r_multiples_png.read_bytes() != _with_trades_r_png(tmp_path)


def _with_trades_r_png(tmp_path: Path) -> bytes:
    files = write_report(tmp_path / "full", TRADES, EQUITY, perf_of(TRADES, EQUITY), {})
    return files.r_multiples_png.read_bytes()


def test_an_unwritable_directory_raises_oserror(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError, match="file"):
        write_report(blocker / "out", TRADES, EQUITY, perf_of(TRADES, EQUITY), {})


def test_params_json_cannot_hold_are_refused(tmp_path: Path) -> None:
    perf = perf_of([], [])
    with pytest.raises(TypeError, match="object"):
        summary_json(perf, {"thing": object()})
    with pytest.raises(ValueError, match="JSON"):
        summary_json(perf, {"ratio": float("nan")})
