#!/usr/bin/env python3
"""Bastion's entry point: ``python run.py COMMAND [options]`` (``--help`` lists the commands).

Exit codes: 0 done; 1 unexpected error (details in the log file, never a traceback on the
terminal); 2 bad configuration or usage; 3 refused to start because continuing would be unsafe
(for example the position store is corrupt, newer than this Bastion, or held by another one).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from alembic.util import CommandError
from sqlalchemy.exc import SQLAlchemyError

from actors import modes
from adapters.exchange.factory import exchange_from_settings
from adapters.logs import configure_logging
from adapters.settings import (
    ConfigError,
    Settings,
    format_config_error,
    history_url,
    load_settings,
)
from adapters.sim.server import cli as sim_cli
from domain.errors import Fatal
from domain.position_table import to_mermaid
from ops import backtest, operate, status
from persistence.history import report as history_report
from persistence.history import schema as history_schema
from persistence.history.engine import BadDatabaseUrl, normalise_url, safe_url, sqlite_path

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_UNSAFE = 3


def _settings(args: argparse.Namespace) -> Settings:
    try:
        return load_settings(args.config)
    except ConfigError as err:
        print(format_config_error(err), file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def cmd_fsm_diagram(args: argparse.Namespace) -> int:
    """Print the position state machine as a Mermaid diagram, generated from its table."""
    sys.stdout.write(to_mermaid())
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the configuration and print it as JSON, secrets masked."""
    settings = _settings(args)
    print(json.dumps(settings.redacted_dump(), indent=2, sort_keys=True))
    return EXIT_OK


EXIT_KILL_SWITCH = 4  # systemd does not restart a service whose kill switch is latched


def cmd_paper(args: argparse.Namespace) -> int:
    """Paper trading: the bundled emulator as a child process, then the live system against it."""
    args.config = modes.config_path(args.config, paper=True)
    settings = _settings(args)
    configure_logging(settings.log_dir, settings.log_level, settings.secret_values())
    print(
        f"Bastion paper trading against the simulated exchange at {args.speed:g}x speed"
        + (f" for {args.duration:g}s" if args.duration else " until Ctrl-C")
        + f"; logs in {settings.log_dir}, state in {settings.data_dir / 'paper'}",
        flush=True,
    )
    return modes.run_paper(
        settings, speed=args.speed, duration_s=args.duration, config_path=args.config
    )


def _paper_args(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    cmd.add_argument("--speed", type=float, default=60.0, help="simulated time per wall second")


def cmd_live(args: argparse.Namespace) -> int:
    """Trade a real account through ccxt; refuses to start without credentials."""
    settings = _settings(args)
    if settings.exchange.api_key is None or settings.exchange.api_secret is None:
        print(
            "bastion: live trading needs BASTION_EXCHANGE__API_KEY and "
            "BASTION_EXCHANGE__API_SECRET in the environment",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    configure_logging(settings.log_dir, settings.log_level, settings.secret_values())
    store = modes.open_store(settings, "live")
    port = exchange_from_settings(settings.exchange)
    try:
        account = port.account()
    except BaseException:
        store.close()
        raise
    where = "SANDBOX" if settings.exchange.sandbox else "LIVE"
    print(
        f"Bastion {where} trading on {settings.exchange.id}: equity {account.equity} "
        f"{account.currency}, {len(settings.universe.symbols)} symbols",
        flush=True,
    )
    return modes.serve(
        settings,
        mode="live",
        store=store,
        port=port,
        ws_url=modes.live_ws_url(settings),
        config_path=args.config,
    )


def cmd_status(args: argparse.Namespace) -> int:
    """Positions, kill switch and last reconciliation, read-only (works while the service runs)."""
    args.config = modes.config_path(args.config, paper=args.paper)
    settings = _settings(args)
    db = modes.store_path(settings, "paper" if args.paper else "live")
    if not db.exists():
        print(f"no position store at {db}: nothing has run in this mode yet")
        return EXIT_OK
    report = status.collect(db)
    print(status.to_json(report) if args.json else status.render(report))
    return EXIT_OK


def _status_args(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--json", action="store_true", help="machine-readable output")
    cmd.add_argument("--paper", action="store_true", help="the paper-trading store")


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Reconcile the registry with the venue; ``--dry-run`` prints the plan without acting."""
    params = {"dry_run": args.dry_run}
    result = operate.run_tool(args, "reconcile", params, operate.render_reconcile)
    if result is None:
        return EXIT_ERROR
    return EXIT_OK if result["status"] == "ready" or args.dry_run else EXIT_ERROR


def cmd_kill(args: argparse.Namespace) -> int:
    """Latch the kill switch: cancel working entries and take-profits, keep every stop."""
    params = {"reason": args.reason, "flatten": args.flatten}
    result = operate.run_tool(args, "kill", params, operate.render_kill)
    if result is None:
        return EXIT_ERROR
    return EXIT_OK if result.get("flatten", {}).get("flat", True) else EXIT_ERROR


def cmd_resume(args: argparse.Namespace) -> int:
    """Release the kill switch; entries are allowed again."""
    result = operate.run_tool(args, "resume", {}, operate.render_resume)
    return EXIT_ERROR if result is None else EXIT_OK


def cmd_pause(args: argparse.Namespace) -> int:
    """No new entries on SYMBOL; a position on it stays managed and protected."""
    return _symbol_command(args, "pause", {}, _render_pause)


def cmd_unpause(args: argparse.Namespace) -> int:
    """Entries on SYMBOL are allowed again."""
    return _symbol_command(args, "unpause", {}, _render_pause)


def cmd_close(args: argparse.Namespace) -> int:
    """Close the managed position on SYMBOL with a reduce-only market order (no wait for the
    fill). Exit 1 when a position is held and nothing is on its way to close it."""
    return _symbol_command(args, "close", {"reason": args.reason}, _render_close)


def _symbol_command(
    args: argparse.Namespace,
    command: str,
    params: dict[str, Any],
    render: Callable[[dict[str, Any]], str],
) -> int:
    """Run a one-symbol control command (via the service or directly); an unknown symbol is a
    usage error (exit 2)."""
    params = {"symbol": args.symbol, "by": operate.operator(), **params}

    def show(result: dict[str, Any]) -> str:
        return f"{command}: {result['error']}" if result.get("error") else render(result)

    result = operate.run_tool(args, command, params, show)
    if result is None:
        return EXIT_ERROR
    if result.get("refused") == "unknown_symbol":
        return EXIT_CONFIG
    if command == "close" and result["position_id"] is not None and not result["closing"]:
        return EXIT_ERROR
    return EXIT_OK


def _render_pause(result: dict[str, Any]) -> str:
    symbol, via = result["symbol"], result["via"]
    if result["paused"]:
        state = "was already paused" if result["was_paused"] else "paused"
        lines = [f"{symbol} {state}: no new entries (via {via})"]
    elif result["was_paused"]:
        lines = [f"{symbol} unpaused: entries allowed again (via {via})"]
    else:
        lines = [f"{symbol} was not paused; nothing changed (via {via})"]
    if position := result["position"]:
        lines.append(f"  position {position['position_id']} ({position['state']}) stays managed")
    lines.append(f"  paused now: {', '.join(result['paused_symbols']) or 'none'}")
    return "\n".join(lines)


def _render_close(result: dict[str, Any]) -> str:
    return f"close {result['symbol']}: {result['detail']} (via {result['via']})"


def _operate_args(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--paper", action="store_true", help="the paper-trading account and store")
    cmd.add_argument("--json", action="store_true", help="machine-readable output")


def _reconcile_args(cmd: argparse.ArgumentParser) -> None:
    _operate_args(cmd)
    cmd.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")


def _symbol_args(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("symbol", metavar="SYMBOL", help="unified symbol, e.g. BTC/USD:USD")
    _operate_args(cmd)


def _close_args(cmd: argparse.ArgumentParser) -> None:
    _symbol_args(cmd)
    cmd.add_argument("--reason", default="operator close", help="recorded with the exit")


def _kill_args(cmd: argparse.ArgumentParser) -> None:
    _operate_args(cmd)
    cmd.add_argument("--flatten", action="store_true", help="also close every position")
    cmd.add_argument("--reason", default="operator kill", help="recorded with the latch")


def cmd_migrate(args: argparse.Namespace) -> int:
    """Create or upgrade the mode's history database (``--to``), or step it back (``--downgrade``).

    The service does not check the history schema at startup yet: that arrives with the
    history writer actor (issue 8), which will call ``persistence.history.schema.check``.
    """
    args.config = modes.config_path(args.config, paper=args.paper)
    settings = _settings(args)
    url = history_url(settings, "paper" if args.paper else "live")
    try:
        if args.downgrade is not None:
            before, after = history_schema.downgrade(url, args.downgrade)
        else:
            before, after = history_schema.upgrade(url, args.to)
    except (BadDatabaseUrl, history_schema.HistoryUnreachable) as err:
        print(f"bastion: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except history_schema.HistorySchemaTooNew as err:
        print(f"bastion: refusing to migrate: {err}", file=sys.stderr)
        return EXIT_UNSAFE
    except CommandError as err:  # an unknown target revision
        print(f"bastion: cannot migrate {safe_url(url)}: {err}", file=sys.stderr)
        return EXIT_CONFIG
    verb = "unchanged at" if before == after else f"migrated from {before or 'empty'} to"
    print(f"history database {safe_url(url)}: {verb} {after or 'empty'}")
    return EXIT_OK


def _migrate_args(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--paper", action="store_true", help="the paper-trading history database")
    target = cmd.add_mutually_exclusive_group()
    target.add_argument("--to", default="head", metavar="REV", help="upgrade to REV (default head)")
    target.add_argument(
        "--downgrade", default=None, metavar="REV", help="downgrade to REV (base: empty)"
    )


def cmd_report(args: argparse.Namespace) -> int:
    """Closed trades of the last ``--days`` days from the mode's history database (read-only).

    Refuses (exit 3) a database that is missing, unreadable, not migrated or not at this
    Bastion's head, and never creates one: an SQLite file that does not exist is reported, not
    opened. A bad or unreachable URL is a configuration error (exit 2), as for ``migrate``.
    """
    args.config = modes.config_path(args.config, paper=args.paper)
    settings = _settings(args)
    url = history_url(settings, "paper" if args.paper else "live")
    migrate = "`python run.py migrate" + (" --paper" if args.paper else "") + "`"
    try:
        path = sqlite_path(normalise_url(url))
        if path is not None and not path.exists():
            print(f"bastion: no history database at {path}; run {migrate}", file=sys.stderr)
            return EXIT_UNSAFE
        history_schema.check(url)
        now_ms = int(time.time() * 1000)
        report = history_report.build_report(url, now_ms, args.days)
    except (BadDatabaseUrl, history_schema.HistoryUnreachable) as err:
        print(f"bastion: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except history_schema.HistorySchemaError as err:
        print(f"bastion: cannot report: {err}", file=sys.stderr)
        return EXIT_UNSAFE
    except SQLAlchemyError as err:  # not a database (a corrupt file), or lost while reading
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        print(
            f"bastion: cannot read the history database {safe_url(url)}: {reason}", file=sys.stderr
        )
        return EXIT_UNSAFE
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        print(history_report.render(report, safe_url(url)))
    return EXIT_OK


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if days < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {days}")
    return days


def _report_args(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--paper", action="store_true", help="the paper-trading history database")
    cmd.add_argument(
        "--days", type=_days, default=30, metavar="N", help="the last N days (default 30)"
    )
    cmd.add_argument("--json", action="store_true", help="machine-readable output")


def cmd_sim_exchange(argv: list[str]) -> int:
    """Run the loopback Kraken Futures emulator in the foreground (its own options follow)."""
    return sim_cli.main(argv, prog="run.py sim-exchange")


# commands that parse their own options: everything after the name is passed on untouched
PASSTHROUGH: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "sim-exchange": (
        cmd_sim_exchange,
        "run the simulated exchange (Kraken Futures API on loopback); "
        "`run.py sim-exchange --help` for its options",
    ),
}


@dataclass(frozen=True)
class Command:
    func: Callable[[argparse.Namespace], int]
    summary: str
    add_args: Callable[[argparse.ArgumentParser], None] | None = None


COMMANDS: dict[str, Command] = {
    "paper": Command(
        cmd_paper,
        "paper-trade against the bundled simulated exchange (no keys needed)",
        _paper_args,
    ),
    "live": Command(cmd_live, "trade a real account (credentials from the environment)"),
    "check-config": Command(
        cmd_check_config, "validate the configuration and print it, secrets masked"
    ),
    "fsm-diagram": Command(
        cmd_fsm_diagram, "print the position state machine as a Mermaid diagram"
    ),
    "status": Command(
        cmd_status, "positions, kill switch, last reconciliation (read-only)", _status_args
    ),
    "reconcile": Command(
        cmd_reconcile,
        "reconcile the registry with the venue (--dry-run: plan only)",
        _reconcile_args,
    ),
    "kill": Command(
        cmd_kill,
        "latch the kill switch: cancel entries and take-profits, keep stops (--flatten: close all)",
        _kill_args,
    ),
    "resume": Command(cmd_resume, "release the kill switch", _operate_args),
    "pause": Command(
        cmd_pause,
        "no new entries on SYMBOL; its position stays managed and protected",
        _symbol_args,
    ),
    "unpause": Command(cmd_unpause, "allow entries on SYMBOL again", _symbol_args),
    "close": Command(
        cmd_close,
        "close the position on SYMBOL with a reduce-only market order",
        _close_args,
    ),
    "migrate": Command(
        cmd_migrate,
        "create or upgrade the history database (--downgrade REV: step back)",
        _migrate_args,
    ),
    "backtest": Command(
        backtest.run,
        "replay history through the live decision path; trades CSV, summary JSON, plots",
        backtest.add_args,
    ),
    "report": Command(
        cmd_report,
        "trades, win rate, PnL, fees, drawdown of the last N days from the history database",
        _report_args,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run.py",
        description="Bastion: crypto futures trading with a stop at the exchange for every "
        "position.",
        epilog="Exit codes: 0 ok, 1 unexpected error, 2 bad configuration or usage, "
        "3 refused to start because it would be unsafe.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="PATH",
        help="YAML configuration file (default: built-in paper defaults); "
        "BASTION_SECTION__KEY environment variables override it",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        cmd = sub.add_parser(name, help=command.summary, description=command.summary)
        cmd.add_argument("--config", type=Path, default=argparse.SUPPRESS, metavar="PATH")
        if command.add_args is not None:
            command.add_args(cmd)
        cmd.set_defaults(func=command.func)
    for name, (_, summary) in PASSTHROUGH.items():  # listed in --help, dispatched by main()
        sub.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASSTHROUGH:
        return PASSTHROUGH[argv[0]][0](argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except Fatal as err:
        print(f"bastion: refusing to start: {err}", file=sys.stderr)
        return EXIT_UNSAFE
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception as err:  # the operator gets one line; the log file gets the traceback
        structlog.get_logger("bastion").exception("unexpected_error", command=args.command)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        print(
            f"bastion: unexpected {type(err).__name__} at {stamp}; details are in the log",
            file=sys.stderr,
        )
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
