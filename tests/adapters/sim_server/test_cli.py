"""The process entry point: start, trade, SIGTERM (state saved), SIGKILL (acked orders kept)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import ccxt

from adapters.sim.server import PAPER_API_KEY, PAPER_API_SECRET, ccxt_urls

ROOT = Path(__file__).resolve().parents[3]


def spawn(state: Path) -> tuple[subprocess.Popen[str], ccxt.krakenfutures]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "adapters.sim.server",
            "--port",
            "0",
            "--state",
            str(state),
            "--speed",
            "0",
            "--warmup-minutes",
            "5",
            "--log-level",
            "WARNING",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = json.loads(proc.stdout.readline())
    assert line["event"] == "listening"
    ex = ccxt.krakenfutures(
        {
            "apiKey": PAPER_API_KEY,
            "secret": PAPER_API_SECRET,
            "enableRateLimit": False,
            "timeout": 5000,
        }
    )
    urls = ccxt_urls(line["url"])
    urls.pop("ws")
    ex.urls["api"].update(urls)
    ex.load_markets()
    return proc, ex


def test_sigterm_saves_and_sigkill_keeps_acked_orders(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc, ex = spawn(state)
    try:
        order = ex.create_order("ETH/USD:USD", "limit", "buy", 1, 1_000)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    assert (state / "venue.json").exists()
    assert (state / "bars.json").exists()

    proc, ex = spawn(state)
    try:
        assert [o["id"] for o in ex.fetch_open_orders()] == [order["id"]]
        second = ex.create_order("ETH/USD:USD", "limit", "buy", 1, 900)
    finally:
        proc.kill()  # no clean shutdown: the acknowledged order must already be on disk
        proc.wait(10)

    proc, ex = spawn(state)
    try:
        assert sorted(o["id"] for o in ex.fetch_open_orders()) == sorted(
            [order["id"], second["id"]]
        )
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0


def test_sigkill_after_many_acked_orders_keeps_them_all(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc, ex = spawn(state)
    try:
        placed = [ex.create_order("ETH/USD:USD", "limit", "buy", 1, 500 + i) for i in range(30)]
        ex.cancel_order(placed[0]["id"], "ETH/USD:USD")
        filled = ex.create_order("BTC/USD:USD", "market", "buy", 0.01)
    finally:
        proc.kill()  # SIGKILL right after the last acknowledgement
        proc.wait(10)
    assert (state / "journal.jsonl").stat().st_size > 0

    proc, ex = spawn(state)
    try:
        assert sorted(o["id"] for o in ex.fetch_open_orders()) == sorted(
            o["id"] for o in placed[1:]
        )
        assert [t["order"] for t in ex.fetch_my_trades("BTC/USD:USD")] == [filled["id"]]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
