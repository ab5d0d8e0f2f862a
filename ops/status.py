"""``run.py status``: what Bastion holds, read from the position store without locking it.

Works while the service runs (the store is opened read-only; WAL lets readers see the last
committed state). Shows every live position with its state, size, average entry and stop, the
kill-switch latch and the last reconciliation. Unrealised PnL needs the venue's mark price and
is not shown here.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from persistence.store import PositionStore

SPOOL_TABLES = ("pending", "rejected")


def collect(db: Path) -> dict[str, Any]:
    with PositionStore.open(db, readonly=True) as store:
        positions = []
        for pos in store.load_active():
            d = pos.data
            stop = d.stop_resting
            positions.append(
                {
                    "id": pos.id,
                    "symbol": pos.symbol,
                    "side": pos.side.value,
                    "state": pos.state,
                    "qty": str(d.remaining),
                    "entry": str(d.avg_entry_price) if d.avg_entry_price is not None else None,
                    "stop": str(stop.price) if stop else None,
                    "stop_qty": str(stop.qty) if stop else None,
                    "origin": pos.origin.value,
                    "strategy": pos.strategy,
                    "opened_at": pos.created_at,
                    "quarantine_reason": d.quarantine_reason or None,
                }
            )
            pos.discard()
        kill = store.get_value("kill_switch") or {"latched": False}
        return {
            "store": str(db),
            "positions": positions,
            "kill_switch": kill,
            "paused": list(store.get_value("paused_symbols") or []),
            "last_reconciliation": store.get_value("last_reconciliation"),
            "transitions": store.count("transitions"),
            "history": _history(db.with_name("history-spool.db")),
        }


def _history(spool: Path) -> dict[str, int]:
    """Rows waiting in the history spool (the database was unreachable) and rows set aside."""
    if not spool.exists():
        return {"spooled": 0, "rejected": 0}
    with contextlib.closing(sqlite3.connect(f"file:{spool}?mode=ro", uri=True)) as db:
        counts = [db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in SPOOL_TABLES]
    return dict(zip(("spooled", "rejected"), counts, strict=True))


_ROW = "  {:<12} {:<14} {:<5} {:<12} {:>10} {:>12} {:>12}"


def render(report: dict[str, Any]) -> str:
    kill = report["kill_switch"]
    latch = "LATCHED" if kill.get("latched") else "off"
    if kill.get("reason"):
        latch += f" ({kill['reason']})"
    lines = [
        f"store: {report['store']}",
        f"kill switch: {latch}",
        f"paused symbols: {', '.join(report['paused']) or 'none'}",
        f"last reconciliation: {_reconciliation(report['last_reconciliation'])}",
        f"history: {_history_line(report['history'])}",
    ]
    if not report["positions"]:
        return "\n".join([*lines, "positions: none"])
    lines += ["positions:", _ROW.format("id", "symbol", "side", "state", "qty", "entry", "stop")]
    for p in report["positions"]:
        lines.append(
            _ROW.format(
                p["id"],
                p["symbol"],
                p["side"],
                p["state"],
                p["qty"],
                p["entry"] or "-",
                p["stop"] or "NONE",
            )
        )
    return "\n".join(lines)


def _reconciliation(last: dict[str, Any] | None) -> str:
    if not last:
        return "never"
    when = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(last["at"] / 1000))
    found = ", ".join(f"{n} {kind}" for kind, n in sorted(last.get("symbols", {}).items()))
    text = f"{last['status']} at {when}, {last.get('actions', 0)} action(s)"
    if found:
        text += f"; {found}"
    if last.get("error"):
        text += f"; venue unreadable: {last['error']}"
    return text


def _history_line(history: dict[str, int]) -> str:
    if not history["spooled"] and not history["rejected"]:
        return "nothing waiting"
    text = f"{history['spooled']} row(s) waiting in the spool (database unreachable or unmigrated)"
    if history["rejected"]:
        text += f"; {history['rejected']} row(s) the database refused, kept in the spool"
    return text


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True)
