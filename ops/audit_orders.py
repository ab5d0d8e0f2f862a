"""``python -m ops.audit_orders``: every open order at the venue, classified against the registry.

Classes: ``entry``, ``stop``, ``take_profit``, ``exit`` (Bastion's, belonging to a live
position), ``orphan`` (Bastion's for a position that no longer lives, an extra or wrong stop, or
a reduce-only order with nothing to reduce: reconciliation would cancel it) and ``unknown``
(not Bastion's; left alone). Positions are listed with their reconciliation class. Read-only.
Exit 0 when all is in order, 1 when something needs attention, 2 when the audit could not run.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from ops.operate import run_tool, tool_parser


def render(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"venue unreadable: {result['error']}"
    lines = []
    for row in result["positions"]:
        lines.append(
            f"position {row['symbol']}: {row['classification']} (venue {row['venue_qty']}, "
            f"registry {row['registry_qty']})"
        )
    for row in result["orders"]:
        what = row["trigger"] or row["price"] or "market"
        note = f"  <- {row['note']}" if row["note"] else ""
        lines.append(
            f"{row['class']:<12} {row['symbol']:<14} {row['side']:<4} {row['type']:<11} "
            f"{row['qty']:<10} {what:<10} {row['client_id'] or row['exchange_id']}{note}"
        )
    if not result["orders"]:
        lines.append("no open orders at the venue")
    lines.append("NEEDS ATTENTION" if result["needs_attention"] else "all in order")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = tool_parser("python -m ops.audit_orders", __doc__.split("\n")[0])
    args = parser.parse_args(argv)
    result = run_tool(args, "audit", {}, render)
    if result is None:
        return 2
    return 1 if result["needs_attention"] else 0


if __name__ == "__main__":
    sys.exit(main())
