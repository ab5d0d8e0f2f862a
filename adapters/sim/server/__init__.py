"""Loopback Kraken Futures emulator: REST (derivatives v3 + charts v1), WebSocket v1, admin.

Start it with :func:`start_server` (background thread, returns a handle with ``.port``,
``.url``, ``.ws_url``, ``.stop()``) or ``python -m adapters.sim.server --port 8765 --state DIR``.
Point ccxt at it by updating ``exchange.urls['api']`` in place (see ``ccxt_urls``).
Paper credentials: :data:`PAPER_API_KEY` / :data:`PAPER_API_SECRET`.
"""

from __future__ import annotations

from adapters.sim.server.app import ServerHandle, SimServer, start_server
from adapters.sim.server.auth import PAPER_API_KEY, PAPER_API_SECRET


def ccxt_urls(base_url: str) -> dict[str, str]:
    """The ``urls['api']`` entries that point ccxt's ``krakenfutures`` at ``base_url``."""
    ws = base_url.replace("http://", "ws://", 1)
    return {
        "public": f"{base_url}/derivatives/api/",
        "private": f"{base_url}/derivatives/api/",
        "charts": f"{base_url}/api/charts/",
        "history": f"{base_url}/api/history/",
        "ws": f"{ws}/ws/v1",
    }


__all__ = [
    "PAPER_API_KEY",
    "PAPER_API_SECRET",
    "ServerHandle",
    "SimServer",
    "ccxt_urls",
    "start_server",
]
