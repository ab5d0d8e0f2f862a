"""``python run.py backtest``: replay history through the live decision path and report.

Decisions:

- Data: ``--data DIR_OR_FILE`` (files named ``<VENUE SYMBOL>_<timeframe>.csv|.parquet``, see
  :mod:`adapters.sim.datasets`) or ``--data generator`` with ``--seed`` and ``--timeframe``:
  the emulator's generator, the same minutes paper trading plays for that seed.
- Symbols: ``--symbols`` (unified ``BTC/USD:USD`` or venue ``PF_XBTUSD``, comma separated),
  default the configuration's universe; they become the run's universe. ``--strategy``
  replaces the configured strategy's name (its ``strategy.params`` still apply).
- Window: ``--from``/``--to`` (UTC dates or ISO times). Candles before ``--from`` warm the
  analyzers up without trading; without ``--from`` trading starts at the first candle. The
  generator needs ``--to`` (and starts at ``--from`` less a warm-up of 1000 base bars).
- Output: ``--out DIR`` (default ``<data_dir>/backtests/<strategy>-<from>-<to>``) receives
  ``trades.csv``, ``summary.json``, the PNG plots and ``backtest.log``; the run's scratch
  position store is deleted. Logs go to that file at WARNING (``--log-level``), not the
  terminal, and a progress bar is drawn on a terminal.
- A kill switch latched during the run (the daily loss limit) is released at the next UTC day,
  as an operator would; the summary lists every latch.
- Starting balance: `--balance`, 100,000 USD by default (the paper account's).
- The analyzers run ahead in a second process (:mod:`actors.backtest_stage`), the rest of the
  pipeline in this one; ``--in-process`` keeps them here. The trades are the same either way.
- Exit codes: 0 done, 2 bad arguments or data (one clear line, no traceback), 1 unexpected.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from actors.backtest import Backtest, BacktestSpec, closed_trades, symbols_of
from actors.backtest_stage import StageFailed
from adapters.logs import configure_logging
from adapters.progress import Progress
from adapters.report.backtest import ReportFiles, write_report
from adapters.settings import ConfigError, Settings, format_config_error, load_settings
from adapters.sim.datasets import DatasetError, History, generate_history, load_history
from adapters.sim.instruments import SimInstrument, default_instruments
from domain.errors import DomainError
from domain.performance import EquityPoint, performance
from domain.timeframes import TIMEFRAME_MS

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
WARMUP_BARS = 1000  # what the analyzers hold: the generator starts this much before --from
DAY_MS = 86_400_000


class UsageError(ValueError):
    """An argument that cannot be used; the message is the operator's one line."""


def add_args(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--data",
        required=True,
        metavar="PATH|generator",
        help="OHLCV file or directory (PF_XBTUSD_5m.csv ...), or 'generator'",
    )
    cmd.add_argument("--symbols", default=None, help="comma separated; default: the universe")
    cmd.add_argument("--from", dest="start", default=None, help="UTC date or time trading starts")
    cmd.add_argument("--to", dest="end", default=None, help="UTC date or time the replay ends")
    cmd.add_argument("--strategy", default=None, help="strategy name (default: the configured)")
    cmd.add_argument("--out", type=Path, default=None, help="report directory")
    cmd.add_argument("--balance", default="100000", help="starting USD (100000, as paper)")
    cmd.add_argument("--seed", type=int, default=1, help="generator and engine seed (1)")
    cmd.add_argument("--timeframe", default="1m", help="the generator's bar length (1m)")
    cmd.add_argument("--log-level", default="WARNING", help="backtest.log level (WARNING)")
    cmd.add_argument("--no-progress", action="store_true", help="no progress bar")
    cmd.add_argument(
        "--in-process",
        action="store_true",
        help="run the analyzers in this process, not ahead of it in a second one",
    )


def parse_time(text: str, option: str) -> int:
    """Epoch ms of a UTC date (``2025-01-31``) or ISO time; naive times are UTC."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a date (YYYY-MM-DD) or ISO time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%d")


def _settings(args: argparse.Namespace, symbols: list[str]) -> Settings:
    base = load_settings(args.config)
    data = base.model_dump()
    data["universe"]["symbols"] = symbols
    if args.strategy:
        data["strategy"] = {"name": args.strategy, "params": data["strategy"]["params"]}
    return Settings.model_validate(data)


def _history(
    args: argparse.Namespace,
    instruments: dict[str, SimInstrument],
    venues: list[str],
    window: tuple[int | None, int | None],
) -> History:
    start, end = window
    if args.data == "generator":
        if end is None:
            raise UsageError("--data generator needs --to")
        step = TIMEFRAME_MS.get(args.timeframe)
        if step is None:
            raise UsageError(f"--timeframe {args.timeframe!r} is not one of {list(TIMEFRAME_MS)}")
        first = (start if start is not None else end - 30 * DAY_MS) - WARMUP_BARS * step
        full = generate_history(
            instruments, seed=args.seed, start_ms=first, end_ms=end, timeframe=args.timeframe
        )
        return History(full.timeframe, {s: full.candles[s] for s in venues})
    return load_history(Path(args.data), instruments, venues)


def run(args: argparse.Namespace) -> int:
    """The ``backtest`` command (module docstring)."""
    try:
        return _run(args)
    except ConfigError as err:
        print(format_config_error(err), file=sys.stderr)
    except (UsageError, DatasetError, DomainError) as err:
        print(f"backtest: {err}", file=sys.stderr)
    except OSError as err:
        print(f"backtest: cannot write the report: {err}", file=sys.stderr)
        return EXIT_ERROR
    except StageFailed as err:
        print(f"backtest: {err}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
    instruments = default_instruments()
    settings = load_settings(args.config)
    names = args.symbols.split(",") if args.symbols else list(settings.universe.symbols)
    try:
        venues = symbols_of(instruments, [n.strip() for n in names if n.strip()])
        balance = Decimal(args.balance)
    except ValueError as err:
        raise UsageError(str(err)) from None
    except InvalidOperation:
        raise UsageError(f"--balance {args.balance!r} is not a number") from None
    if not venues or balance <= 0:
        raise UsageError("give at least one symbol and a positive --balance")
    unified = [instruments[v].instrument.unified_symbol for v in venues]
    settings = _settings(args, unified)
    start = parse_time(args.start, "--from") if args.start else None
    end = parse_time(args.end, "--to") if args.end else None
    if start is not None and end is not None and end <= start:
        raise UsageError("--to must be after --from")
    history = _history(args, instruments, venues, (start, end))
    first, last = history.span()
    start = first if start is None else start
    end = last if end is None else min(end, last)
    if end <= start:
        raise UsageError("the data holds no candle between --from and --to")
    out = args.out or settings.data_dir / "backtests" / (
        f"{settings.strategy.name}-{_day(start)}-{_day(end)}"
    )
    out.mkdir(parents=True, exist_ok=True)
    configure_logging(out, args.log_level, settings.secret_values(), console=False)
    spec = BacktestSpec(start_ms=start, end_ms=end, balance=balance, seed=args.seed)
    print(
        f"backtest: {settings.strategy.name} on {len(venues)} symbols, "
        f"{history.timeframe} bars, {_iso(start)} to {_iso(end)}",
        file=sys.stderr,
    )
    with (
        Backtest(settings, history, instruments, spec, parallel=not args.in_process) as backtest,
        Progress(backtest.bar_count, "replay", enabled=False if args.no_progress else None) as bar,
    ):
        replay = backtest.run(lambda done, _total: bar.update(done))
        trades = closed_trades(replay.store_path)
    equity = [EquityPoint(at, value) for at, value in replay.equity]
    perf = performance(trades, equity, start_ms=start, end_ms=end, start_equity=balance)
    params = _params(args, settings, history, spec, replay.latches)
    params["candles"] = replay.candles
    files = write_report(out, trades, equity, perf, params)
    _print_summary(perf.to_dict(), replay.candles / max(replay.elapsed_s, 1e-9), files)
    return EXIT_OK


def _params(
    args: argparse.Namespace,
    settings: Settings,
    history: History,
    spec: BacktestSpec,
    latches: list[tuple[int, str]],
) -> dict[str, Any]:
    return {
        "data": str(args.data),
        "seed": spec.seed,
        "timeframe": history.timeframe,
        "symbols": list(settings.universe.symbols),
        "strategy": {"name": settings.strategy.name, "params": settings.strategy.params},
        "from": _iso(spec.start_ms),
        "to": _iso(spec.end_ms),
        "balance": str(spec.balance),
        "kill_switch_latches": [{"at": _iso(at), "reason": why} for at, why in latches],
    }


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _print_summary(summary: dict[str, Any], rate: float, files: ReportFiles) -> None:
    def pct(key: str) -> str:
        value = summary.get(key)
        return "n/a" if value is None else f"{value * 100:.2f}%"

    def num(key: str) -> str:
        value = summary.get(key)
        return "n/a" if value is None else f"{value:.2f}"

    drawdown = summary.get("max_drawdown", {}).get("fraction")
    lines = [
        f"trades {summary.get('trade_count', 0)}, win rate {pct('win_rate')}, "
        f"profit factor {num('profit_factor')}",
        f"total return {pct('total_return')}, CAGR {pct('cagr')}, Sharpe {num('sharpe')}, "
        f"max drawdown {'n/a' if drawdown is None else f'{drawdown * 100:.2f}%'}",
        f"replayed {rate:,.0f} candles/s; report in {files.summary_json.parent}",
    ]
    print("\n".join(lines))


__all__ = ["add_args", "parse_time", "run"]
