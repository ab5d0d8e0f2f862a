"""Run a control command (``actors.control``) whether or not the service is running.

- The service runs (it holds the position store's lock): the command goes to the control inbox
  and the service answers within a second; we wait for its answer.
- No service: this process takes the store's lock itself, connects to the venue (the paper
  emulator is started from its saved state for the time of the command), builds an execution core
  and calls the very same function.

Either way the orders a command sends are journaled in the position store, so whichever process
runs next recognises them.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import structlog

from actors.audit import observed
from actors.control import command_for
from actors.core import HISTORY, Outbox
from actors.execution import ExecutionCore
from actors.history import spool_for_later
from actors.messages import Audit
from actors.modes import config_path, paper_exchange_dir, store_path
from actors.runtime import execution_params
from adapters.exchange.ccxt_exchange import CcxtExchange
from adapters.exchange.factory import exchange_from_settings
from adapters.logs import configure_logging
from adapters.settings import ConfigError, Settings, format_config_error, load_settings
from adapters.sim.server.auth import PAPER_API_KEY, PAPER_API_SECRET
from adapters.sim.server.process import EmulatorProcess
from domain.errors import BastionError, StoreLocked
from persistence.control import EXPIRED, FAILED, RUNNING, ControlInbox, Request
from persistence.history.models import EventKind
from persistence.store import PositionStore

log = structlog.get_logger(__name__)
SERVICE_TIMEOUT_S = 30.0
FLATTEN_TIMEOUT_S = 150.0  # a flatten waits for the venue to show the account flat


class OperateError(BastionError):
    """The command could not be carried out; the message says why and what to do."""


def execute(
    settings: Settings,
    mode: str,
    command: str,
    args: dict[str, Any],
    *,
    by: str,
    timeout_s: float = SERVICE_TIMEOUT_S,
) -> dict[str, Any]:
    """Run ``command`` with ``args``; the result says ``via`` ``service`` or ``direct``."""
    db = store_path(settings, mode)
    where = db.parent
    if not db.exists():  # never act on a store made up on the spot (a wrong data_dir)
        raise OperateError(
            f"no position store at {db}: Bastion has not run in {mode} mode with this "
            "data_dir (check --config and BASTION_DATA_DIR)"
        )
    if args.get("flatten"):
        timeout_s = max(timeout_s, FLATTEN_TIMEOUT_S)
    try:
        store = PositionStore.open(db)
    except StoreLocked:
        return {**_through_service(where, command, args, by, timeout_s), "store": str(db)}
    with store, venue(settings, mode) as port:
        core = ExecutionCore(port, store, params=execution_params(settings))
        now = int(time.time() * 1000)
        result, outbox = command_for(Request(0, command, args, by, now))(core, now)
        _audit_for_later(db, command, args, by, now, outbox)
        return {**result, "via": "direct", "store": str(db)}


def _audit_for_later(  # noqa: PLR0917 - one call site
    db: Path, command: str, args: dict[str, Any], by: str, now: int, outbox: Outbox
) -> None:
    """The command and what it decided, for the service's history writer to replay (the
    service is down: this process holds the store)."""
    command_audit = Audit(
        EventKind.OPERATOR_COMMAND, command, now, who=by, payload={"args": args, "via": "direct"}
    )
    decided = [m for d, m in outbox if d == HISTORY]
    spool_for_later(db, [command_audit, *decided, *observed("operator", now, outbox)])


def _through_service(
    where: Path, command: str, args: dict[str, Any], by: str, timeout_s: float
) -> dict[str, Any]:
    with ControlInbox(where / "control.db") as inbox:
        request_id = inbox.submit(command, args, by, timeout_s=timeout_s)
        status, result = inbox.wait(request_id, timeout_s)
    if status == EXPIRED:
        raise OperateError(
            f"the running service did not take request {request_id} within {timeout_s:g}s; "
            "it was withdrawn and will not run (is the service healthy? `run.py status`)"
        )
    if status == RUNNING:
        raise OperateError(
            f"the service is still running request {request_id} after {timeout_s:g}s; check "
            "the outcome with `run.py status` and `python -m ops.audit_orders`"
        )
    if status == FAILED:
        error = (result or {}).get("error", "unknown error")
        raise OperateError(f"the service could not run {command}: {error}")
    return {**(result or {}), "via": "service"}


@contextlib.contextmanager
def venue(settings: Settings, mode: str) -> Iterator[CcxtExchange]:
    """The mode's exchange: the real venue, or the paper emulator started from its state."""
    if mode != "paper":
        exchange = settings.exchange
        if exchange.api_key is None or exchange.api_secret is None:
            raise OperateError(
                "the live venue needs BASTION_EXCHANGE__API_KEY and "
                "BASTION_EXCHANGE__API_SECRET in the environment"
            )
        yield exchange_from_settings(exchange)
        return
    emulator = EmulatorProcess.start(paper_exchange_dir(settings), speed=1.0)
    try:
        yield CcxtExchange(
            "krakenfutures",
            api_key=PAPER_API_KEY,
            api_secret=PAPER_API_SECRET,
            api_url=emulator.url,
        )
    finally:
        emulator.stop()


def operator() -> str:
    """Who gave a command from this machine, for the audit trail."""
    try:
        return f"{getpass.getuser()}@cli"
    except (KeyError, OSError):
        return "cli"


def render_reconcile(result: dict[str, Any]) -> str:
    lines = [f"reconciliation {result['status']} ({'dry run' if result['dry_run'] else 'acted'})"]
    if result.get("error"):
        lines.append(f"  venue unreadable: {result['error']}")
    for row in result["symbols"]:
        detail = f" ({row['detail']})" if row["detail"] else ""
        lines.append(
            f"  {row['symbol']:<16} {row['classification']:<10} venue {row['venue_qty']:<10} "
            f"registry {row['registry_qty']}{detail}"
        )
    for action in result["actions"]:
        fields = " ".join(
            f"{k}={v}" for k, v in action.items() if k not in ("action", "outcome") and v
        )
        lines.append(f"  {action['action']}: {fields} -> {action['outcome']}")
    for order in result["left_alone"]:
        lines.append(f"  left alone (not Bastion's): {order['symbol']} {order['exchange_id']}")
    if result["unresolved_orders"]:
        lines.append(f"  unresolved orders: {', '.join(result['unresolved_orders'])}")
    if not result["symbols"] and not result["actions"]:
        lines.append("  nothing held, nothing to do")
    return "\n".join(lines)


def render_kill(result: dict[str, Any]) -> str:
    state = "was already latched" if result["was_latched"] else "latched"
    lines = [f"kill switch {state} ({result['reason']}; via {result['via']})"]
    for order in result["cancelled"]:
        how = "cancelled" if order["status"] == "cancelled" else f"already {order['status']}"
        lines.append(f"  {how}: {order['role']} {order['client_id']} on {order['symbol']}")
    if not result["cancelled"]:
        lines.append("  no working entry or take-profit was ended")
    for order in result["still_working"]:
        lines.append(f"  STILL WORKING at the venue: {order}")
    flatten = result.get("flatten")
    if flatten is not None:
        lines.append(f"  closing: {', '.join(flatten['tried']) or 'nothing was open'}")
        if flatten["flat"]:
            lines.append("  the venue shows the account flat")
        else:
            lines.append(f"  NOT FLAT: still open at the venue: {', '.join(flatten['still_open'])}")
    for stop in result["stops_kept"]:
        lines.append(f"  stop kept: {stop['symbol']} {stop['qty']} @ {stop['stop']}")
    return "\n".join(lines)


def render_resume(result: dict[str, Any]) -> str:
    if not result["was_latched"]:
        return f"kill switch was not latched; nothing changed (via {result['via']})"
    return f"kill switch released; entries allowed again (via {result['via']})"


def tool_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options every ops tool shares: which configuration, which account, output form."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", type=Path, default=None, metavar="PATH", help="YAML config")
    parser.add_argument("--paper", action="store_true", help="the paper-trading account")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def run_tool(
    args: argparse.Namespace,
    command: str,
    params: dict[str, Any],
    render: Callable[[dict[str, Any]], str],
) -> dict[str, Any] | None:
    """Load the configuration, run ``command`` and print its result; None after a failure
    (reported on stderr). A bad configuration exits with code 2."""
    args.config = config_path(args.config, paper=args.paper)
    try:
        settings = load_settings(args.config)
    except ConfigError as err:
        print(format_config_error(err), file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_dir, settings.log_level, settings.secret_values(), console=False)
    try:
        result = execute(
            settings, "paper" if args.paper else "live", command, params, by=operator()
        )
    except (BastionError, OSError, RuntimeError, sqlite3.Error) as err:
        print(f"{command}: {err}", file=sys.stderr)
        return None
    except KeyboardInterrupt:
        print(f"{command}: interrupted; check `run.py status`", file=sys.stderr)
        raise SystemExit(130) from None
    print(json.dumps(result, indent=2) if args.json else render(result))
    return result
