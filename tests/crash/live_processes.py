"""The processes of the live crash harness and their handles (:mod:`tests.crash.live_harness`).

- :class:`Emulator`: ``run.py sim-exchange`` (durable state in a directory), its admin API and
  its saved order and fill history;
- :class:`ManualTrader`: a plain ccxt ``krakenfutures`` client on Bastion's account, for the
  operator's own orders (foreign client ids);
- :class:`Bastion`: one ``run.py live`` process against the emulator (paper profile, paper
  credentials, logs and store in the harness's directory), optionally with a crash point
  (:mod:`adapters.crashpoints`) that is live only while its arm file exists.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import yaml

from adapters.exchange.ccxt_exchange import point_urls_at
from adapters.sim.instruments import unified_symbol
from adapters.sim.server.auth import PAPER_API_KEY, PAPER_API_SECRET
from adapters.sim.server.journal import JournaledEngine
from adapters.sim.server.process import EmulatorProcess
from adapters.sim.server.state import StateStore
from persistence.store import PositionStore
from tests.crash.live_invariants import ExchangeView, RegistryEntry, exchange_view, read_registry

ROOT = Path(__file__).resolve().parents[2]
PAPER_CONFIG = ROOT / "config.paper.yaml"
SYMBOLS: tuple[str, ...] = tuple(
    yaml.safe_load(PAPER_CONFIG.read_text(encoding="utf-8"))["universe"]["symbols"]
)
# a twitchy ema_cross with tight stops and targets: entries, stops, targets and exits every
# second or two at the emulator's speed
STRATEGY_PARAMS = {
    "fast": 2,
    "slow": 4,
    "signal_expiry_bars": 10,
    "stop_atr": 1.0,
    "reward_risk": 1.0,
}


# --------------------------------------------------------------------------- the emulator


class Emulator:
    """``run.py sim-exchange`` as a child process, its admin API and its saved history."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, state_dir: Path) -> None:
        self.proc = proc
        self.url = url
        self.ws_url = url.replace("http://", "ws://", 1) + "/ws/v1"
        self.state_dir = state_dir
        state = self.state()
        self.account_id = next(
            a["account_id"] for a in state["accounts"] if a["api_key"] == PAPER_API_KEY
        )
        self.venue_symbols = {unified_symbol(v): v for v in state["prices"]}

    @classmethod
    def start(cls, work: Path, *, speed: float, seed: int) -> Emulator:
        state_dir = work / "emulator"
        started = EmulatorProcess.start(
            state_dir,
            speed=speed,
            seed=seed,
            warmup_minutes=300,
            stderr_path=work / "emulator.err",
        )
        return cls(started.proc, started.url, state_dir)

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}/_sim/{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def state(self) -> dict[str, Any]:
        return dict(self._request("GET", "state"))

    def view(self) -> ExchangeView:
        return exchange_view(self.state(), PAPER_API_KEY)

    def set_price(self, symbol: str, price: Decimal) -> None:
        """Move the last and mark price of a unified symbol now (matching runs)."""
        self._request("POST", "price", {"symbol": self.venue_symbols[symbol], "price": str(price)})

    def add_fault(self, rule: dict[str, Any]) -> None:
        self._request("POST", "faults", rule)

    def clear_faults(self) -> None:
        self._request("DELETE", "faults", {})

    def history(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Every order (open and retained closed) and fill, from the saved state."""
        if self.proc.poll() is None:
            self._request("POST", "save")  # a fresh snapshot: the journal after it is short
        loaded = StateStore(self.state_dir).load()
        assert loaded is not None, "the emulator saved no state"
        engine = JournaledEngine.from_state(loaded.state["engine"])
        for entry in loaded.entries:
            engine.apply_delta(entry["engine"])
        state = engine.to_state()
        return list(state["orders"]), list(state["fills"])

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return int(self.proc.returncode)


# --------------------------------------------------------------------------- manual trades


class ManualTrader:
    """A plain ccxt ``krakenfutures`` client on Bastion's account: the operator's own orders."""

    def __init__(self, url: str) -> None:
        self.client = ccxt.krakenfutures(
            {"apiKey": PAPER_API_KEY, "secret": PAPER_API_SECRET, "enableRateLimit": False}
        )
        point_urls_at(self.client.urls["api"], url)
        self.client.load_markets()
        self._n = 0

    def _next_id(self, tag: str) -> str:
        self._n += 1
        return f"{tag}-{os.getpid()}-{self._n}"

    def market(
        self, symbol: str, side: str, notional_usd: float, *, reduce_only: bool = False
    ) -> str:
        price = float(self.client.fetch_ticker(symbol)["last"])
        amount = float(self.client.amount_to_precision(symbol, notional_usd / price))
        minimum = float(self.client.market(symbol)["limits"]["amount"]["min"] or 0)
        return self.order(symbol, side, max(amount, minimum), reduce_only=reduce_only)

    def order(
        self, symbol: str, side: str, amount: float, *, reduce_only: bool = False, tag: str = ""
    ) -> str:
        cid = self._next_id(tag or ("close" if reduce_only else "manual"))
        params: dict[str, Any] = {"clientOrderId": cid}
        if reduce_only:
            params["reduceOnly"] = True
        self.client.create_order(symbol, "market", side, amount, None, params)
        return cid


# --------------------------------------------------------------------------- Bastion


class Bastion:
    """One ``run.py live`` process against the emulator."""

    def __init__(self, work: Path, emulator: Emulator) -> None:
        self.work = work
        self.log_file = work / "logs" / "bastion.jsonl"
        self.db = work / "data" / "live" / "positions.db"
        env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
        env.update(
            {
                "BASTION_EXCHANGE__API_KEY": PAPER_API_KEY,
                "BASTION_EXCHANGE__API_SECRET": PAPER_API_SECRET,
                "BASTION_EXCHANGE__API_URL": emulator.url,
                "BASTION_EXCHANGE__WS_URL": emulator.ws_url,
                "BASTION_DATA_DIR": str(work / "data"),
                "BASTION_LOG_DIR": str(work / "logs"),
                "BASTION_LOG_LEVEL": "INFO",
                "BASTION_HEALTH__PORT": "0",
                "BASTION_STRATEGY__PARAMS": json.dumps(STRATEGY_PARAMS),
                "BASTION_ALLOCATOR__MIN_HOLD_MS": "0",
                # restarts every few seconds: keep the risk limits from pausing the strategy
                "BASTION_RISK__LOSS_STREAK_LIMIT": "1000",
                "BASTION_RISK__COOLDOWN_MINUTES": "0",
                "BASTION_RISK__DAILY_LOSS_LIMIT_FRAC": "0.5",
            }
        )
        self.env = env
        self.arm_file = work / "crash-point.armed"
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.started_at = 0.0
        self._offset = 0

    def start(self, crash_point: str | None, *, armed: bool = False) -> None:
        """Start a run; ``crash_point`` is live from the start if ``armed``, else after
        :meth:`arm`."""
        assert self.proc is None or self.proc.poll() is not None
        self.runs += 1
        env = dict(self.env)
        if crash_point:
            env["BASTION_CRASH_POINT"] = crash_point
            env["BASTION_CRASH_ARM_FILE"] = str(self.arm_file)
        if armed:
            self.arm()
        else:
            self.disarm()
        self.started_at = time.monotonic()
        self._offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        out = self.work / f"bastion-{self.runs:03d}.out"
        with out.open("wb") as stdout, out.with_suffix(".err").open("wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "run.py", "--config", str(PAPER_CONFIG), "live"],
                cwd=ROOT,
                env=env,
                stdout=stdout,
                stderr=stderr,
            )

    def arm(self) -> None:
        self.arm_file.touch()

    def disarm(self) -> None:
        self.arm_file.unlink(missing_ok=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines this run wrote so far."""
        if not self.log_file.exists():
            return []
        with self.log_file.open("rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        out = []
        for line in data.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line torn by the kill
        return out

    def wait_ready(self, timeout_s: float = 60.0) -> bool:
        """True at READY; False if the process died first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(e.get("event") == "system_ready" for e in self.events()):
                return True
            if not self.alive():
                return False
            time.sleep(0.05)
        raise AssertionError(f"Bastion run {self.runs} not READY in {timeout_s}s: {self.tail()}")

    def wait_exit(self, timeout_s: float) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(30)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def tail(self, lines: int = 15) -> str:
        err = self.work / f"bastion-{self.runs:03d}.err"
        text = err.read_text(errors="replace") if err.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def registry(self) -> list[RegistryEntry]:
        return read_registry(self.db) if self.db.exists() else []

    def kill_switch(self) -> dict[str, Any]:
        """The persisted kill switch (``latched``, ``reason``, ...); empty if never set."""
        if not self.db.exists():
            return {}
        with PositionStore.open(self.db, readonly=True) as store:
            return dict(store.get_value("kill_switch") or {})

    def resume(self) -> str:
        """``run.py resume``, as the operator would; returns what it printed."""
        done = subprocess.run(
            [sys.executable, "run.py", "--config", str(PAPER_CONFIG), "resume"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return f"exit {done.returncode}: {(done.stdout + done.stderr).strip()[-300:]}"


__all__ = ["PAPER_CONFIG", "ROOT", "SYMBOLS", "Bastion", "Emulator", "ManualTrader"]
