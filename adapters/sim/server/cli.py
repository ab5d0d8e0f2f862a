"""``python -m adapters.sim.server``: the emulator in the foreground.

Prints one JSON line ``{"event": "listening", "url": ..., "port": ...}`` on stdout once it
listens (``--port 0`` picks a free port); logs go to stderr. SIGTERM and SIGINT stop it
cleanly: connections are closed and the state is saved (exit code 0).

``--parent-pid PID``: it runs as that process's child (``run.py paper`` starts it so). Ctrl-C in
a terminal reaches the whole foreground process group, but the parent still needs the venue
for its own shutdown, so SIGINT is ignored and the parent stops it with SIGTERM afterwards. If
the parent ends without doing so (killed), it stops by itself, state saved, within a second.

``--api-key/--api-secret/--balance`` create the default account on a fresh state (defaults: the
paper credentials in :mod:`adapters.sim.server.auth`, 100000 USD). An account that already
exists in the state is left as it is; add money with ``POST /_sim/fund``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from decimal import Decimal
from pathlib import Path

import structlog

from adapters.logs import configure_logging
from adapters.sim.server.app import SimServer
from adapters.sim.server.auth import PAPER_API_KEY, PAPER_API_SECRET, valid_secret
from adapters.sim.server.venue import VenueConfig

log = structlog.get_logger(__name__)
PARENT_POLL_S = 0.5  # how often a child emulator checks that its parent still runs


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
    p.add_argument(
        "--parent-pid",
        type=int,
        help="run as this process's child: ignore SIGINT, stop when it ends (module docstring)",
    )
    return p


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Set ``stop`` once this process is no longer ``parent_pid``'s child."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(PARENT_POLL_S)
    log.warning("emulator_parent_gone", parent_pid=parent_pid)
    stop.set()


async def _run(config: VenueConfig, host: str, port: int, parent_pid: int | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    watch = None
    if parent_pid is None:
        loop.add_signal_handler(signal.SIGINT, stop.set)
    else:
        watch = asyncio.create_task(_watch_parent(parent_pid, stop))
    server = SimServer(config)
    await server.start(host, port)
    url = f"http://{host}:{server.port}"
    print(json.dumps({"event": "listening", "url": url, "port": server.port}), flush=True)
    try:
        await stop.wait()
    finally:
        if watch is not None:
            watch.cancel()
        await server.stop()


def main(argv: list[str] | None = None, prog: str = "python -m adapters.sim.server") -> int:
    args = parser(prog).parse_args(argv)
    if not valid_secret(args.api_secret):
        print("--api-secret must be valid base64", file=sys.stderr)
        return 2
    if args.parent_pid is not None:  # before anything else: a Ctrl-C now must not stop it
        signal.signal(signal.SIGINT, signal.SIG_IGN)
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
    asyncio.run(_run(config, args.host, args.port, args.parent_pid))
    return 0
