"""SIGKILL ``run.py live`` against the emulator again and again; after every restart the
exchange must show exactly one correct stop per position, no duplicated order, and a registry
that matches it (the harness is :mod:`tests.crash.live_harness`, the invariants
:mod:`tests.crash.live_invariants`).

``pytest tests/crash/test_live_crash.py --live-crash-runs 200`` runs a longer soak.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tests.crash.live_harness import Campaign
from tests.crash.live_invariants import (
    ExchangeView,
    ExOrder,
    RegistryEntry,
    check_history,
    check_state,
)
from tests.crash.live_processes import ROOT

SEED = 20261122
BTC = "BTC/USD:USD"
ETH = "ETH/USD:USD"

# --------------------------------------------------------------------------- crash points

PROBE = """
from adapters.crashpoints import crash_point
crash_point("before_send:sl")
crash_point("after_send:en")
print("first", flush=True)
crash_point("after_send:en")
print("second", flush=True)
"""


def _probe(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_crash_point_is_inert_unless_named() -> None:
    done = _probe({"BASTION_CRASH_POINT": "before_send:en"})
    assert (done.returncode, done.stdout.split()) == (0, ["first", "second"])


def test_crash_point_kills_at_the_counted_hit() -> None:
    done = _probe({"BASTION_CRASH_POINT": "after_send:en@2, before_send:ex"})
    assert (done.returncode, done.stdout.split()) == (-signal.SIGKILL, ["first"])
    done = _probe({"BASTION_CRASH_POINT": "before_send:sl"})
    assert (done.returncode, done.stdout) == (-signal.SIGKILL, "")


def test_crash_point_waits_for_its_arm_file(tmp_path: Path) -> None:
    arm = tmp_path / "armed"
    env = {"BASTION_CRASH_POINT": "before_send:sl", "BASTION_CRASH_ARM_FILE": str(arm)}
    assert _probe(env).returncode == 0
    arm.touch()
    assert _probe(env).returncode == -signal.SIGKILL


# --------------------------------------------------------------------------- the invariants


def _stop(cid: str, qty: str, price: str, *, side: str = "sell", symbol: str = BTC) -> ExOrder:
    return ExOrder(f"x-{cid}", cid, symbol, side, "stp", Decimal(qty), True, Decimal(price))


def _entry(
    pid: str = "p1", *, qty: str = "2", stop: str | None = "bst-p1-sl-1", **kw: str
) -> RegistryEntry:
    fields = {
        "position_id": pid,
        "symbol": BTC,
        "side": "long",
        "state": "protected",
        "remaining": Decimal(qty),
        "stop_client_id": stop,
        "entry_client_id": f"bst-{pid}-en-1",
        "origin": "strategy",
    }
    fields.update(kw)
    return RegistryEntry(**fields)  # type: ignore[arg-type]


def _view(*orders: ExOrder, **positions: str) -> ExchangeView:
    symbols = {"BTC": BTC, "ETH": ETH}
    return ExchangeView(
        {symbols[k]: Decimal(v) for k, v in positions.items()},
        orders,
        {BTC: Decimal(100), ETH: Decimal(10)},
    )


def _kinds(ex: ExchangeView, registry: list[RegistryEntry]) -> list[str]:
    return sorted(f.kind for f in check_state(ex, registry))


def test_a_protected_registered_position_passes() -> None:
    assert _kinds(_view(_stop("bst-p1-sl-1", "2", "90"), BTC="2"), [_entry()]) == []
    short = _stop("bst-p1-sl-1", "2", "110", side="buy")
    assert _kinds(_view(short, BTC="-2"), [_entry(side="short")]) == []
    pending = _entry(qty="0", stop=None, state="pending")
    working = ExOrder("x", "bst-p1-en-1", BTC, "buy", "lmt", Decimal(2), False, None)
    assert _kinds(_view(working), [pending]) == []


def test_each_broken_invariant_is_reported() -> None:
    good = _stop("bst-p1-sl-1", "2", "90")
    assert _kinds(_view(BTC="2"), [_entry()]) == ["naked"]
    two_stops = _view(good, _stop("bst-p1-sl-2", "2", "89"), BTC="2")
    assert _kinds(two_stops, [_entry()]) == ["stop_chaos"]
    assert _kinds(_view(_stop("bst-p1-sl-1", "1", "90"), BTC="2"), [_entry()]) == ["stop_chaos"]
    assert _kinds(_view(_stop("bst-p1-sl-1", "2", "101"), BTC="2"), [_entry()]) == ["stop_chaos"]
    wrong_side = _stop("bst-p1-sl-1", "2", "90", side="buy")
    assert _kinds(_view(wrong_side, BTC="2"), [_entry()]) == ["stop_chaos"]
    assert _kinds(_view(good, BTC="2"), []) == ["not_in_registry", "orphan_order"]
    assert _kinds(_view(good, BTC="3"), [_entry()]) == ["registry_mismatch", "stop_chaos"]
    assert _kinds(_view(good, BTC="2"), [_entry(stop="bst-p1-sl-0")]) == ["stop_not_tracked"]
    assert _kinds(_view(), [_entry()]) == ["phantom"]
    assert _kinds(_view(), [_entry(qty="0", stop=None, state="pending")]) == ["stale_pending"]
    assert _kinds(_view(good), []) == ["orphan_order", "orphan_stop"]
    two = [_entry(), _entry("p2", stop=None, state="pending", qty="0")]
    assert "registry_duplicate" in _kinds(_view(good, BTC="2"), two)


def test_duplicates_in_the_venue_history_are_reported() -> None:
    def order(oid: str, cid: str, filled: str = "1") -> dict[str, str]:
        return {
            "order_id": oid,
            "account_id": "a",
            "cli_ord_id": cid,
            "kind": "mkt",
            "side": "buy",
            "qty": "1",
            "filled": filled,
            "state": "filled",
        }

    def fill(oid: str, cid: str) -> dict[str, str]:
        return {"order_id": oid, "account_id": "a", "cli_ord_id": cid}

    clean = [order("1", "bst-p1-en-1"), order("2", "bst-p1-sl-1", "0"), order("3", "manual-1")]
    assert check_history(clean, [fill("1", "bst-p1-en-1")], "a") == []
    twice = [order("1", "bst-p1-en-1"), order("2", "bst-p1-en-1")]
    fills = [fill("1", "bst-p1-en-1"), fill("2", "bst-p1-en-1"), fill("3", "bst-p1-en-2")]
    kinds = sorted(f.kind for f in check_history(twice, fills, "a"))
    assert kinds == ["duplicate_client_id", "duplicate_entry", "duplicate_fill_client_id"]
    assert check_history(twice, fills, "someone else") == []


# --------------------------------------------------------------------------- the harness


@pytest.mark.slow
def test_sigkilled_live_service_recovers_every_invariant(
    tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    kills = int(request.config.getoption("--live-crash-runs"))
    report = Campaign(tmp_path / "live", kills=kills, seed=SEED).run()
    summary = report.summary()
    with capsys.disabled():
        print(f"\n{summary}")
    assert report.kills >= kills
    assert report.checks > kills // 2, summary  # most kills were followed by a full check
    assert report.violations == [], summary
