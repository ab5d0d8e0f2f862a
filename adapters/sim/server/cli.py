"""``python -m adapters.sim.server``: the emulator in the foreground.

Prints one JSON line ``{"event": "listening", "url": ..., "port": ...}`` on stdout once it
listens (``--port 0`` picks a free port); logs go to stderr. SIGTERM and SIGINT stop it
cleanly: connections are closed and the state is saved (exit code 0).

``--api-key/--api-secret/--balance`` create the default account on a fresh state (defaults: the
paper credentials in :mod:`adapters.sim.server.auth`, 100000 USD). An account that already
exists in the state is left as it is; add money with ``POST /_sim/fund``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from decimal import Decimal
from pathlib import Path

from adapters.logs import configure_logging
from adapters.sim.server.app import SimServer
from adapters.sim.server.auth import PAPER_API_KEY, PAPER_API_SECRET, valid_secret
from adapters.sim.server.venue import VenueConfig


def parser(prog: str = "python -m adapters.sim.server") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--state", type=Path, required=True, help="state directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speed", type=float, default=1.0, help="x wall time; 0 = admin-driven")
    p.add_argument("--data", type=Path, help="OHLCV CSV named after a symbol, or a directory")
    p.add_argument("--api-key", default=PAPER_API_KEY)
    p.add_argument("--api-secret", default=PAPER_API_SECRET)
    p.add_argument("--balance", type=Decimal, default=Decimal(100_000))
    p.add_argument("--warmup-minutes", type=int, default=120)
    p.add_argument("--log-level", default="INFO")
    return p


async def _run(config: VenueConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = SimServer(config)
    await server.start(host, port)
    url = f"http://{host}:{server.port}"
    print(json.dumps({"event": "listening", "url": url, "port": server.port}), flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None, prog: str = "python -m adapters.sim.server") -> int:
    args = parser(prog).parse_args(argv)
    if not valid_secret(args.api_secret):
        print("--api-secret must be valid base64", file=sys.stderr)
        return 2
    configure_logging(None, args.log_level, secrets=[args.api_secret])
    config = VenueConfig(
        state_dir=args.state,
        seed=args.seed,
        speed=args.speed,
        data_file=args.data,
        api_key=args.api_key,
        api_secret=args.api_secret,
        balance=args.balance,
        warmup_minutes=args.warmup_minutes,
    )
    asyncio.run(_run(config, args.host, args.port))
    return 0
