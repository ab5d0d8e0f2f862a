"""``python -m ops.place_missing_stops``: every exposed position without a correct resting stop.

A dry run by default: prints each naked position and the stop it would get. ``--apply`` places
them (reduce-only, on the exit side, sized to the position; unknown exposure is adopted first)
through the execution core and its journal, so the running service recognises them: with the
service running the request goes through its control inbox, otherwise this process does it.
Exit 0 when nothing is naked or everything was placed; 1 when a naked position remains.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from ops.operate import run_tool, tool_parser


def render(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"cannot tell which positions are naked: {result['error']}"
    naked = result["naked"]
    if not naked:
        return "every exposed position has a correct stop at the venue"
    verb = "placing" if result["applied"] else "would place"
    lines = [
        f"{row['symbol']}: {row['side']} {row['qty']} is naked; {verb} a reduce-only stop "
        f"at {row['stop']}"
        for row in naked
    ]
    for row in result.get("outcomes", []):
        lines.append(f"  {row['action']} {row['symbol']}: {row['outcome']}")
    if not result["applied"]:
        lines.append("dry run: nothing was sent (add --apply to place them)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = tool_parser("python -m ops.place_missing_stops", __doc__.split("\n")[0])
    parser.add_argument("--apply", action="store_true", help="place the stops (default: dry run)")
    args = parser.parse_args(argv)
    result = run_tool(args, "place_missing_stops", {"apply": args.apply}, render)
    if result is None or "error" in result:
        return 2
    if not result["naked"]:
        return 0
    placed = {s["symbol"] for s in result.get("stops", [])}
    return 0 if args.apply and {r["symbol"] for r in result["naked"]} <= placed else 1


if __name__ == "__main__":
    sys.exit(main())
