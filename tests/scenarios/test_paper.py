"""The whole system in paper mode against the emulator child process.

While it trades at high speed, the emulator's own state is sampled: every position there must be
covered by reduce-only stops, except inside the fill -> stop window. Meanwhile every actor type is
made to crash once (an exception inside a handler); the supervisor must restart it and trading
must carry on without losing a position or an order.
"""

from __future__ import annotations

import json
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

from actors.core import ALLOCATOR, EXECUTION, PROTECTION, RISK, analyzer
from actors.runtime import Call
from adapters.settings import load_settings
from domain.position_table import TERMINAL
from ops import operate
from persistence.store import PositionStore
from tests.paper_run import paper_running

ROOT = Path(__file__).resolve().parents[2]
SPEED = 120.0
RUN_S = 40.0
FILL_TO_STOP_WINDOW_S = 2.0


def _state(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_sim/state", timeout=5) as response:
        return json.loads(response.read())


def naked_symbols(state: dict[str, Any]) -> set[str]:
    """Symbols whose position is not covered by reduce-only stops on its exit side."""
    naked = set()
    for account in state["accounts"]:
        for pos in account["positions"]:
            qty = Decimal(pos["qty"])
            exit_side = "sell" if qty > 0 else "buy"
            cover = sum(
                Decimal(o["qty"]) - Decimal(o["filled"])
                for o in account["open_orders"]
                if o["symbol"] == pos["symbol"]
                and o["kind"] == "stp"
                and o["reduce_only"]
                and o["side"] == exit_side
            )
            if cover < abs(qty):
                naked.add(pos["symbol"])
    return naked


def _healthy_within(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
                if response.status == 200:
                    return True
        except OSError:  # 503 until every actor answered and every symbol is fresh
            pass
        time.sleep(0.5)
    return False


def _crash(core: object) -> None:
    raise RuntimeError("injected crash inside a handler")


def test_paper_trades_protected_and_survives_actor_crashes(tmp_path: Path) -> None:
    env = {"BASTION_DATA_DIR": str(tmp_path / "data"), "BASTION_LOG_DIR": str(tmp_path / "logs")}
    settings = load_settings(ROOT / "config.paper.yaml", env)
    with paper_running(settings, speed=SPEED) as run:
        system = run.system
        assert _healthy_within(system.health_url, 30), "/healthz never answered 200"
        with urllib.request.urlopen(f"{system.health_url}/metrics", timeout=5) as response:
            assert b"bastion_positions" in response.read()
        victims = [EXECUTION, PROTECTION, RISK, ALLOCATOR, analyzer("BTC/USD:USD")]
        naked_since: dict[str, float] = {}
        violations: list[tuple[str, float]] = []
        samples = 0
        started = time.monotonic()
        crashed_at = started + 10
        while time.monotonic() - started < RUN_S:
            now = time.monotonic()
            if victims and now >= crashed_at:
                system.directory.tell(victims.pop(0), Call(_crash))
                crashed_at = now + 3
            naked = naked_symbols(_state(system.venue_url))
            samples += 1
            for symbol in naked:
                since = naked_since.setdefault(symbol, now)
                if now - since > FILL_TO_STOP_WINDOW_S:
                    violations.append((symbol, now - since))
            for symbol in set(naked_since) - naked:
                del naked_since[symbol]
            time.sleep(0.25)
        restarts = system.supervisor.restarts()
        final_naked = naked_symbols(_state(system.venue_url))
        # the operator's kill reaches the running service through its control inbox
        asked = time.monotonic()
        killed = operate.execute(settings, "paper", "kill", {"reason": "scenario"}, by="test")
        kill_s = time.monotonic() - asked
        after_kill = _state(system.venue_url)
    assert run.code == 0
    assert killed["via"] == "service" and killed["latched"], killed
    assert kill_s < 10, f"the service took {kill_s:.1f}s to carry out a kill"
    left = [o for a in after_kill["accounts"] for o in a["open_orders"]]
    assert all(o["kind"] == "stp" and o["reduce_only"] for o in left), left
    assert naked_symbols(after_kill) == set()
    # at least one sample a second on average, so no naked stretch longer than the
    # fill -> stop window can hide between two samples
    assert samples >= RUN_S
    assert violations == [], f"positions naked beyond the fill->stop window: {violations[:5]}"
    assert final_naked == set()
    for name in (EXECUTION, PROTECTION, RISK, ALLOCATOR, analyzer("BTC/USD:USD")):
        assert restarts[name] >= 1, f"{name} was not restarted: {restarts}"
    with PositionStore.open(tmp_path / "data" / "paper" / "positions.db", readonly=True) as store:
        states = store.states()
        assert sum(1 for s in states.values() if s in TERMINAL) >= 1, states
        assert store.get_value("kill_switch")["latched"] is True
        for pos in store.load_active():  # anything left open at shutdown rests protected
            assert pos.current.value in ("protected", "pending"), pos
            pos.discard()
        transitions = store.transitions()
    opened = {t["position_id"] for t in transitions if t["trigger"] == "opened"}
    closed = {t["position_id"] for t in transitions if t["dest"] == "closed"}
    assert len(opened) >= 2
    assert closed
