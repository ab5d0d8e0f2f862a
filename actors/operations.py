"""What an operator can ask of the running service and tell it, transport-free (issue 9).

:class:`Operations` wraps a running :class:`~actors.runtime.System`. Reads never hold an actor
up: the registry's views are asked of execution (in memory), the account, venue positions and
open orders are read through the exchange port from the caller's thread (the port is
thread-safe; a slow venue delays the answer, not a stop), PnL comes from the history database,
recent lines from the log file, health from the last heartbeats. Commands run the control
functions of
:mod:`actors.control` on the execution actor, the same functions ``run.py kill`` and the ops
tools run. Every method returns a JSON-ready dict; :func:`render` turns one into the short text a
chat shows. Calls block (an actor's answer, a database query): a transport runs them off its
event loop.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import structlog

from actors import control
from actors.core import ALLOCATOR, EXECUTION, RISK
from actors.runtime import Run, System
from adapters.logs import LOG_FILE_NAME
from adapters.settings import ConfigError, Settings, format_config_error, load_settings
from domain.allocation import AllocatorParams
from domain.ports import ExchangePort
from domain.risk import RiskParams
from persistence.history.report import build_report, money_text, stats_dict

log = structlog.get_logger(__name__)

ASK_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 150.0  # a flatten waits until the venue shows the account flat
DAY_MS = 86_400_000
HOT_SECTIONS = ("risk", "allocator")  # applied by /reload; anything else needs a restart
MAX_LOG_LINES = 50
READS = ("status", "positions", "balance", "pnl", "daily", "stops", "orders", "health", "logs")
CHANGES = ("kill", "flatten", "resume", "pause", "unpause", "close", "reload")


@dataclass
class Operations:
    """The service's operator surface (see the module docstring)."""

    system: System
    settings: Settings
    mode: str
    port: ExchangePort
    config_path: Path | None = None
    heartbeats: Callable[[], dict[str, bool]] | None = None  # the service's last answers
    env: dict[str, str] | None = None  # for reload in tests; None: the process environment
    on_reload: Callable[[Settings], None] | None = None  # e.g. the Telegram allow-lists

    # ---------------------------------------------------------------- reads

    def status(self) -> dict[str, Any]:
        views = self._views()
        states: dict[str, int] = {}
        for view in views:
            states[view["state"]] = states.get(view["state"], 0) + 1
        core = self._ask(lambda c: (c.kill_latched, sorted(getattr(c, "paused", ()))))
        latched, paused = core
        history = self.system.history.snapshot() if self.system.history is not None else None
        return {
            "mode": self.mode,
            "kill_switch": latched,
            "paused": paused,
            "positions": len(views),
            "states": states,
            "healthy": self.system.supervisor.healthy(),
            "history": history,
        }

    def positions(self) -> dict[str, Any]:
        return {"positions": self._views()}

    def balance(self) -> dict[str, Any]:
        account = self.port.account()
        return {
            "currency": account.currency,
            "equity": str(account.equity),
            "available_margin": str(account.available_margin),
            "used_margin": str(account.used_margin),
            "unrealized_pnl": str(account.unrealized_pnl),
        }

    def pnl(self, days: int = 1) -> dict[str, Any]:
        """Closed trades of the last ``days`` days (1: the last 24 hours)."""
        url = self._history_url()
        report = build_report(url, int(time.time() * 1000), days)
        return {"days": days, **stats_dict(report.overall), "open_trades": report.open_trades}

    def daily(self, days: int = 7, weeks: int = 4) -> dict[str, Any]:
        """PnL per UTC day over ``days`` days and per ISO week over ``weeks`` weeks."""
        now = int(time.time() * 1000)
        url = self._history_url()
        by_day = build_report(url, now, days).by_day
        weekly = build_report(url, now, weeks * 7).by_day
        weeks_pnl: dict[str, Decimal] = {}
        weeks_trades: dict[str, int] = {}
        for day, stats in weekly.items():
            week = _iso_week(day)
            weeks_pnl[week] = weeks_pnl.get(week, Decimal(0)) + stats.net_pnl
            weeks_trades[week] = weeks_trades.get(week, 0) + stats.count
        return {
            "days": [
                {"day": d, "trades": s.count, "pnl": str(s.net_pnl), "win_rate": s.win_rate}
                for d, s in by_day.items()
            ],
            "weeks": [
                {"week": w, "trades": weeks_trades[w], "pnl": str(p)}
                for w, p in sorted(weeks_pnl.items())
            ],
        }

    def stops(self) -> dict[str, Any]:
        """Each managed position's stop and its distance from the venue's mark price."""
        views = self._ask(lambda c: c.views())
        marks = {p.symbol: p.mark_price for p in self.port.positions() if p.mark_price is not None}
        rows = []
        for view in views:
            mark = marks.get(view.symbol)
            distance = None
            if mark and view.stop_price is not None:
                distance = float(abs(mark - view.stop_price) / mark * 100)
            rows.append(
                {
                    "symbol": view.symbol,
                    "side": view.side.value,
                    "qty": str(view.qty),
                    "stop": str(view.stop_price) if view.stop_price is not None else None,
                    "stop_qty": str(view.stop_qty),
                    "mark": str(mark) if mark is not None else None,
                    "distance_pct": round(distance, 3) if distance is not None else None,
                    "state": view.state.value,
                }
            )
        return {"stops": rows}

    def orders(self) -> dict[str, Any]:
        found = self.port.open_orders()
        return {
            "orders": [
                {
                    "symbol": o.symbol,
                    "role": o.role.value,
                    "side": o.side.value,
                    "type": o.type.value,
                    "qty": str(o.qty),
                    "price": str(o.price) if o.price is not None else None,
                    "trigger": str(o.trigger_price) if o.trigger_price is not None else None,
                    "client_id": o.client_id,
                }
                for o in found
            ]
        }

    def logs(self, lines: int = 20) -> dict[str, Any]:
        """The last ``lines`` log lines (at most :data:`MAX_LOG_LINES`), oldest first."""
        wanted = max(1, min(lines, MAX_LOG_LINES))
        path = Path(self.settings.log_dir) / LOG_FILE_NAME  # the current file (rotation aside)
        return {"lines": _last_lines(path, wanted) if path.is_file() else []}

    def health(self) -> dict[str, Any]:
        feed = self.system.feed
        symbols = list(self.settings.universe.symbols)
        stale = [s for s in symbols if feed is not None and feed.stale(s)]
        beats = self.heartbeats() if self.heartbeats is not None else {}
        return {
            "healthy": self.system.supervisor.healthy() and not stale and all(beats.values()),
            "actors": beats,
            "stale_feeds": stale,
            "restarts": self.system.supervisor.restarts(),
        }

    # ---------------------------------------------------------------- commands

    def kill(self, *, flatten: bool, by: str, reason: str = "operator") -> dict[str, Any]:
        return self._run(control.kill(reason, flatten=flatten, by=by))

    def resume(self, *, by: str) -> dict[str, Any]:
        return self._run(control.resume(by=by))

    def pause(self, symbol: str, *, by: str) -> dict[str, Any]:
        return self._run(control.COMMANDS["pause"](symbol=symbol, by=by))

    def unpause(self, symbol: str, *, by: str) -> dict[str, Any]:
        return self._run(control.COMMANDS["unpause"](symbol=symbol, by=by))

    def close(self, symbol: str, *, by: str) -> dict[str, Any]:
        return self._run(control.COMMANDS["close"](symbol=symbol, by=by, reason=f"closed by {by}"))

    def reload(self, *, by: str) -> dict[str, Any]:
        """Read the configuration again; an invalid one changes nothing. Risk and allocator
        limits apply at once; other changed sections are listed as needing a restart."""
        try:
            fresh = load_settings(self.config_path, self.env)
        except ConfigError as err:
            return {"reloaded": False, "error": format_config_error(err), "by": by}
        old, new = self.settings.redacted_dump(), fresh.redacted_dump()
        changed = sorted(k for k in new if new[k] != old.get(k))
        applied: list[str] = []
        limits = self.system.limits
        if limits is not None and ({"risk", "allocator"} & set(changed)):
            risk = RiskParams.from_mapping(fresh.risk.model_dump())
            allocator = AllocatorParams.from_mapping(fresh.allocator.model_dump())
            # the holder first: an actor restarted from here on starts with the new limits
            limits.risk, limits.allocator = risk, allocator
            try:
                self.system.ask(RISK, lambda c: setattr(c, "params", risk), ASK_TIMEOUT_S)
                self.system.ask(ALLOCATOR, partial(_set_allocator, risk, allocator), ASK_TIMEOUT_S)
            except Exception as err:  # an actor restarting picks the new limits up itself
                log.warning("reload_partly_applied", error=str(err))
            applied += [k for k in HOT_SECTIONS if k in changed]
        if "telegram" in changed and self.on_reload is not None:
            self.on_reload(fresh)
            applied.append("telegram")
        kept = {k: getattr(self.settings, k) for k in changed if k not in applied}
        self.settings = fresh.model_copy(update=kept)  # what is in force, not what is on disk
        return {
            "reloaded": True,
            "changed": changed,
            "applied": applied,
            "needs_restart": [k for k in changed if k not in applied],
            "by": by,
        }

    # ---------------------------------------------------------------- one entry point

    def execute(self, name: str, args: list[str], who: str) -> str:
        """Run the operator command ``name`` (as a chat names it) and render the reply.

        A command that fails to answer in time may still have run: the reply says to check
        the status rather than claiming it failed.
        """
        try:
            match name:
                case "pnl":
                    return render("pnl", self.pnl(_count(args, 1)))
                case "logs":
                    return render("logs", self.logs(_count(args, 20)))
                case "kill" | "flatten":
                    flatten = name == "flatten"
                    return render(
                        "kill", self.kill(flatten=flatten, by=who, reason=f"{who} {name}")
                    )
                case "resume":
                    return render("resume", self.resume(by=who))
                case "pause" | "unpause" | "close":
                    return render(name, getattr(self, name)(args[0], by=who))
                case "reload":
                    return render("reload", self.reload(by=who))
                case _ if name in READS:
                    return render(name, getattr(self, name)())
        except Exception as err:  # the operator gets one line; the log has the rest
            log.exception("operator_command_failed", command=name)
            if name in CHANGES:
                return f"{name}: no answer in time ({type(err).__name__}); check /status"
            return f"{name} failed: {type(err).__name__}: {err}"
        return f"unknown command {name!r}"

    # ---------------------------------------------------------------- helpers

    def _ask(self, fn: Callable[[Any], Any]) -> Any:
        return self.system.ask(EXECUTION, fn, timeout_s=ASK_TIMEOUT_S)

    def _run(self, command: control.Command) -> dict[str, Any]:
        result = self.system.directory.ask(EXECUTION, Run(command), timeout_s=COMMAND_TIMEOUT_S)
        return dict(result)

    def _views(self) -> list[dict[str, Any]]:
        return [
            {
                "id": v.position_id,
                "symbol": v.symbol,
                "side": v.side.value,
                "state": v.state.value,
                "qty": str(v.qty),
                "entry": str(v.entry_price) if v.entry_price is not None else None,
                "stop": str(v.stop_price) if v.stop_price is not None else None,
                "origin": v.origin,
                "strategy": v.strategy,
            }
            for v in self._ask(lambda c: c.views())
        ]

    def _history_url(self) -> str:
        if self.system.history is None:
            raise LookupError("the history database is not configured in this process")
        return self.system.history.url


def _count(args: list[str], default: int) -> int:
    try:
        return max(1, int(args[0])) if args else default
    except ValueError:
        return default


def _set_allocator(risk: RiskParams, allocator: AllocatorParams, core: Any) -> None:
    core.params = allocator
    core.risk_params = risk  # leverage, margin and fee estimates follow the risk limits


def _iso_week(day: str) -> str:
    year, week, _ = date.fromisoformat(day).isocalendar()
    return f"{year}-W{week:02d}"


def _last_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` complete lines of a log file, rendered for reading."""
    with path.open("rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - 256 * 1024))
        raw = fh.read().splitlines()[-count:]
    out = []
    for line in raw:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(_log_line(record))
    return out


def _log_line(record: dict[str, Any]) -> str:
    """A log record in one short line: ``HH:MM:SS LEVEL event key=value ...`` (a phone screen;
    ``python -m ops.logs`` shows everything)."""
    stamp = str(record.get("timestamp", ""))[11:19]
    level = str(record.get("level", "")).upper()
    rest = " ".join(
        f"{k}={v}" for k, v in record.items() if k not in ("timestamp", "level", "event", "logger")
    )
    return f"{stamp} {level} {record.get('event', '-')} {rest}".rstrip()


# ---------------------------------------------------------------------- rendering


def render(kind: str, result: dict[str, Any]) -> str:
    """A result as the short text an operator reads in a chat."""
    if "error" in result and result.get("reloaded") is False:
        return f"reload refused, nothing changed:\n{result['error']}"
    match kind:
        case "status":
            latch = "LATCHED" if result["kill_switch"] else "off"
            states = ", ".join(f"{n} {s}" for s, n in sorted(result["states"].items())) or "none"
            lines = [
                f"Bastion {result['mode']}: {'healthy' if result['healthy'] else 'UNHEALTHY'}",
                f"kill switch: {latch}",
                f"positions: {result['positions']} ({states})",
            ]
            if result["paused"]:
                lines.append(f"paused: {', '.join(result['paused'])}")
            history = result.get("history")
            if history and history["pending_in_spool"]:
                lines.append(f"history: {history['pending_in_spool']} rows spooled (db down)")
            return "\n".join(lines)
        case "positions":
            rows = result["positions"]
            if not rows:
                return "no positions"
            return "\n".join(
                f"{p['symbol']} {p['side']} {p['qty']} @ {p['entry'] or '-'} "
                f"stop {p['stop'] or 'NONE'} [{p['state']}]"
                for p in rows
            )
        case "balance":
            return (
                f"equity {result['equity']} {result['currency']}\n"
                f"available {result['available_margin']}, used {result['used_margin']}\n"
                f"unrealized {result['unrealized_pnl']}"
            )
        case "pnl":
            window = "24h" if result["days"] == 1 else f"{result['days']} days"
            rate = result["win_rate"]
            return (
                f"PnL {window}: {result['net_pnl']} over {result['count']} trades "
                f"(win rate {'-' if rate is None else f'{rate:.0%}'}, fees {result['fees']}); "
                f"{result['open_trades']} open"
            )
        case "daily":
            days = [f"{d['day']}  {d['trades']:>3}  {d['pnl']}" for d in result["days"]]
            weeks = [f"{w['week']}  {w['trades']:>3}  {w['pnl']}" for w in result["weeks"]]
            return "\n".join(
                ["day  trades  pnl", *(days or ["(no trades)"]), "week  trades  pnl", *weeks]
            )
        case "stops":
            rows = result["stops"]
            if not rows:
                return "no positions"
            return "\n".join(
                f"{r['symbol']} {r['side']} {r['qty']}: stop {r['stop'] or 'NONE'}"
                + (
                    f", {r['distance_pct']}% from mark {r['mark']}"
                    if r["distance_pct"] is not None
                    else ""
                )
                for r in rows
            )
        case "orders":
            rows = result["orders"]
            if not rows:
                return "no open orders"
            return "\n".join(
                f"{o['symbol']} {o['role']} {o['side']} {o['qty']} "
                f"{o['type']} {o['price'] or o['trigger'] or ''}".rstrip()
                for o in rows
            )
        case "logs":
            return "\n".join(result["lines"]) or "no log lines"
        case "health":
            bad = [name for name, ok in result["actors"].items() if not ok]
            text = "healthy" if result["healthy"] else "UNHEALTHY"
            if bad:
                text += f"; not answering: {', '.join(bad)}"
            if result["stale_feeds"]:
                text += f"; stale feeds: {', '.join(result['stale_feeds'])}"
            return text
        case "kill":
            return _kill_text(result)
        case "resume":
            if not result.get("was_latched"):
                return "kill switch was not latched; nothing changed"
            return "kill switch released; entries allowed again"
        case "pause" | "unpause":
            if result.get("error"):
                return f"{kind} refused: {result['error']}"
            state = "paused" if result.get("paused") else "trading"
            others = ", ".join(result.get("paused_symbols") or []) or "none"
            return f"{result.get('symbol')}: {state} (paused symbols: {others})"
        case "close":
            if result.get("error"):
                return f"close refused: {result['error']}"
            if result.get("closing"):
                return f"closing {result['symbol']} ({result.get('position_id')}) at market"
            return f"nothing to close: {result.get('detail') or result.get('symbol')}"
        case "reload":
            if not result["changed"]:
                return "configuration reloaded: nothing changed"
            text = f"configuration reloaded; applied: {', '.join(result['applied']) or 'none'}"
            if result["needs_restart"]:
                text += f"; needs a restart: {', '.join(result['needs_restart'])}"
            return text
    return _generic(result)


def _kill_text(result: dict[str, Any]) -> str:
    state = "was already latched" if result.get("was_latched") else "latched"
    lines = [f"kill switch {state} ({result.get('reason')})"]
    cancelled = result.get("cancelled") or []
    lines.append(f"entries/take-profits ended: {len(cancelled)}")
    for order in result.get("still_working") or []:
        lines.append(f"STILL WORKING at the venue: {order}")
    flatten = result.get("flatten")
    if flatten is not None:
        if flatten.get("flat"):
            lines.append("the venue shows the account flat")
        else:
            lines.append(f"NOT FLAT: {', '.join(flatten.get('still_open') or [])}")
    lines.append(f"stops kept: {len(result.get('stops_kept') or [])}")
    return "\n".join(lines)


def _stop_line(row: dict[str, Any]) -> str:
    text = f"{row['symbol']} {row['side']} {row['qty']}: stop {row['stop'] or 'NONE'}"
    if row["distance_pct"] is not None:
        text += f", {row['distance_pct']}% from mark {row['mark']}"
    return text


def _generic(result: dict[str, Any]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in result.items() if v not in (None, [], {}))


__all__ = ["Operations", "money_text", "render"]
