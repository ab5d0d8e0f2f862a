"""Every rung of the protection ladder, against the loopback Kraken Futures emulator.

Execution, protection and alerts run as their synchronous cores on one bus (each outbox is
delivered at once, in order); the exchange is the unmodified ccxt adapter talking HTTP to the
emulator, where faults are injected (stop rejects, venue-side cancels, timeouts, rate limits) or
the matching engine itself refuses a stop that would trigger immediately. The emulator runs at
speed 0, so nothing moves unless a test says so, and the cores' clock is an explicit ``now``:
no sleeps.
"""

from __future__ import annotations

import json
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from actors.alerts import AlertsCore
from actors.core import ALERTS, EXECUTION, PROTECTION, RISK
from actors.execution import ExecutionCore, ExecutionParams
from actors.ladder import LadderParams
from actors.messages import (
    EnsureStop,
    Flatten,
    KillSwitchChanged,
    OrderOutcome,
    Outcome,
    PlaceIntent,
    Quarantine,
    StopVariant,
    Tick,
)
from actors.protection import ProtectionCore
from adapters.exchange.budget import RequestBudget
from adapters.exchange.ccxt_exchange import CcxtExchange
from adapters.retry import RetryPolicy
from adapters.settings import ProtectionSettings
from adapters.sim.server import PAPER_API_KEY, PAPER_API_SECRET, ServerHandle, start_server
from domain.models import OrderIntent, OrderRole, OrderStatus, OrderType, PositionSide
from domain.position import Position
from domain.position_table import State
from persistence.store import PositionStore

BTC = "BTC/USD:USD"
VENUE_BTC = "PF_XBTUSD"
D = Decimal
STEP_MS = 250
SETTINGS = ProtectionSettings(
    check_interval_s=1.0,
    naked_grace_s=1.0,
    stop_ack_timeout_s=5.0,
    retry_backoff_s=1.0,
    max_stop_retries=2,
    widen_frac=0.01,
    flatten_after_s=60.0,
    max_flatten_attempts=2,
    quarantine_alert_interval_s=30.0,
)


@dataclass
class Rig:
    """The emulator, the ccxt port, and the three cores on a synchronous bus."""

    server: ServerHandle
    port: CcxtExchange
    store: PositionStore
    execution: ExecutionCore
    protection: ProtectionCore
    alerts: AlertsCore
    now: int
    wall: list[float] = field(default_factory=lambda: [0.0])  # execution's monotonic clock
    sent: list[tuple[str, object]] = field(default_factory=list)

    def admin(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.server.url}/_sim/{path}", data=data)
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def fault(self, kind: str, *, times: int = 1, **rule: Any) -> None:
        self.admin("faults", {"kind": kind, "endpoint": "sendorder", "times": times, **rule})

    def price(self, last: str, mark: str | None = None) -> None:
        self.admin("price", {"symbol": VENUE_BTC, "price": last, "mark": mark})

    def send(self, destination: str, message: object) -> None:
        cores = {EXECUTION: self.execution, PROTECTION: self.protection, ALERTS: self.alerts}
        queue: deque[tuple[str, object]] = deque([(destination, message)])
        while queue:
            dest, msg = queue.popleft()
            self.sent.append((dest, msg))
            if dest in cores:
                queue.extend(cores[dest].handle(msg, self.now))

    def tick(self, ms: int = STEP_MS) -> None:
        self.now += ms
        self.send(EXECUTION, Tick(self.now))
        self.send(PROTECTION, Tick(self.now))

    def run_until(self, done: Callable[[], bool], *, within_ms: int) -> int:
        """Tick until ``done()``; the ms it took."""
        started = self.now
        while not done():
            assert self.now - started < within_ms, f"not done within {within_ms} ms"
            self.tick()
        return self.now - started

    def noticed_then_safe(self, *, within_ms: int) -> None:
        """Tick until protection sees the symbol naked, then until its ladder episode ended."""
        self.run_until(lambda: BTC in self.protection.ladder.episodes, within_ms=2_000)
        self.run_until(lambda: BTC not in self.protection.ladder.episodes, within_ms=within_ms)

    def open_long(self, kind: OrderType = OrderType.MARKET, price: str | None = None) -> Position:
        intent = OrderIntent(
            BTC, PositionSide.LONG, D("0.02"), kind, None if price is None else D(price), D(48_000)
        )
        self.send(EXECUTION, PlaceIntent(intent))
        return self.execution.registry[BTC]

    def commands(self, kind: type) -> list[Any]:
        return [m for d, m in self.sent if d == EXECUTION and isinstance(m, kind)]

    def venue_orders(self) -> list[dict[str, Any]]:
        return self.admin("state")["accounts"][0]["open_orders"]

    def venue_positions(self) -> list[dict[str, Any]]:
        return self.admin("state")["accounts"][0]["positions"]

    def journal(self, pos: Position, role: OrderRole) -> list[tuple[str, OrderStatus]]:
        rows = self.store.orders(position_id=pos.id)
        return sorted((o.client_id, o.status) for o in rows if o.role is role)

    def alert_kinds(self) -> list[str]:
        return [a.kind for a in self.alerts.views()]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    server = start_server(port=0, state_dir=tmp_path / "venue", seed=11, speed=0, warmup_minutes=30)
    try:
        port = CcxtExchange(
            "krakenfutures",
            api_key=PAPER_API_KEY,
            api_secret=PAPER_API_SECRET,
            api_url=server.url,
            timeout_ms=3_000,
            budget=RequestBudget(capacity=1e9, window_s=1.0, reserve=0.0),
            retry=RetryPolicy(sleep=lambda _s: None),
        )
        with PositionStore.open(tmp_path / "positions.db") as store:
            wall = [0.0]
            execution = ExecutionCore(
                port,
                store,
                params=ExecutionParams(ambiguous_grace_s=10.0),
                monotonic=lambda: wall[0],
            )
            protection = ProtectionCore(port, params=LadderParams.from_settings(SETTINGS))
            alerts = AlertsCore(window_ms=30_000)
            with urllib.request.urlopen(f"{server.url}/_sim/state", timeout=5) as response:
                now = int(json.loads(response.read())["clock_ms"])
            r = Rig(server, port, store, execution, protection, alerts, now, wall)
            r.price("50000")
            yield r
    finally:
        server.stop()


def rungs(logs: list[dict[str, Any]]) -> list[str]:
    return [e["rung"] for e in logs if e["event"] == "ladder_rung"]


# ---------------------------------------------------------------------- rungs


def test_stop_rejects_climb_retry_alternative_then_flatten(rig: Rig) -> None:
    """Every stop send is rejected at the venue: back-off retries, the other trigger signal, a
    widened price, and finally a reduce-only market order closes the position."""
    rig.fault("reject_stop", times=-1)
    with capture_logs() as logs:
        pos = rig.open_long()
        assert pos.current is State.UNPROTECTED  # the first stop was rejected at once
        took = rig.run_until(lambda: pos.current is State.CLOSED, within_ms=30_000)
        rig.run_until(lambda: BTC not in rig.protection.ladder.episodes, within_ms=5_000)
    assert rungs(logs) == ["place", "retry", "retry", "alternative", "alternative", "flatten"]
    assert took < 15_000  # 1 s grace is not needed: execution's own failure starts the ladder
    stops = rig.commands(EnsureStop)
    assert [s.variant for s in stops] == [StopVariant.NORMAL] * 2 + [
        StopVariant.OTHER_TRIGGER,
        StopVariant.WIDENED,
    ]
    assert stops[2].trigger_signal == "mark"
    widened = stops[3]
    assert widened.trigger_signal == "mark"
    assert widened.price is not None
    assert D(47_000) < widened.price < D(48_000)  # below the planned stop, under the mark by 1 %
    (flatten,) = rig.commands(Flatten)
    assert flatten.force
    assert rig.venue_positions() == []
    assert rig.venue_orders() == []
    journal = rig.journal(pos, OrderRole.STOP)
    assert len(journal) == 5
    assert {status for _, status in journal} == {OrderStatus.REJECTED}
    assert rig.alert_kinds() == [
        "ladder_place",
        "ladder_retry",
        "ladder_alternative",
        "ladder_flatten",
        "ladder_reset",
    ]


def test_would_trigger_immediately_on_last_uses_the_mark_trigger(rig: Rig) -> None:
    """The venue dropped the stop and the last price then spiked through it while the mark did
    not: the engine refuses a last-triggered stop, the mark-triggered one rests."""
    pos = rig.open_long()
    assert pos.current is State.PROTECTED
    rig.admin("venue_cancel", {"api_key": PAPER_API_KEY})
    rig.price("47900", mark="48500")
    with capture_logs() as logs:
        rig.noticed_then_safe(within_ms=20_000)
    assert rungs(logs) == ["place", "retry", "retry", "alternative"]
    assert pos.current is State.PROTECTED
    (order,) = rig.venue_orders()
    assert (order["kind"], order["trigger_signal"], order["stop_price"]) == ("stp", "mark", "48000")
    rejected = [e for e in logs if e["event"] == "ladder_attempt_failed"]
    assert all("invalidPrice" in e["reason"] for e in rejected), [e["reason"] for e in rejected]
    assert rig.commands(Flatten) == []


def test_both_prices_through_the_stop_widen_it_beyond_the_mark(rig: Rig) -> None:
    pos = rig.open_long()
    rig.admin("venue_cancel", {"api_key": PAPER_API_KEY})
    rig.price("47900", mark="47950")
    with capture_logs() as logs:
        rig.noticed_then_safe(within_ms=20_000)
    assert rungs(logs) == ["place", "retry", "retry", "alternative", "alternative"]
    assert pos.current is State.PROTECTED
    (order,) = rig.venue_orders()
    stop_price = D(order["stop_price"])
    assert order["trigger_signal"] == "mark"
    assert D("47950") * D("0.99") <= stop_price < D(47_950)  # 1 % beyond the (implied) mark
    assert pos.data.stop_resting is not None
    assert pos.data.stop_resting.price == stop_price


def test_a_stop_cancelled_by_the_venue_is_noticed_and_replaced(rig: Rig) -> None:
    pos = rig.open_long()
    (first,) = rig.venue_orders()
    assert first["cli_ord_id"].endswith("-sl-1")
    rig.admin("venue_cancel", {"api_key": PAPER_API_KEY})
    assert pos.current is State.PROTECTED  # the registry cannot see it
    with capture_logs() as logs:
        took = rig.run_until(lambda: BTC in rig.protection.report.naked, within_ms=2_000)
        rig.run_until(lambda: BTC not in rig.protection.ladder.episodes, within_ms=10_000)
    assert took <= 1_000  # the next venue check
    assert rungs(logs) == ["place"]
    assert any(e["event"] == "stop_lost" for e in logs)
    (second,) = rig.venue_orders()
    assert second["cli_ord_id"].endswith("-sl-2")
    assert pos.current is State.PROTECTED
    assert rig.alert_kinds() == ["ladder_place", "ladder_reset"]
    (reset,) = [e for e in logs if e["event"] == "ladder_reset"]
    assert reset["naked_ms"] < 5_000


def test_a_stop_send_that_times_out_is_resolved_by_client_id_not_resent(rig: Rig) -> None:
    pos = rig.open_long(OrderType.LIMIT, "49000")
    assert pos.current is State.PENDING
    rig.fault("timeout_after_accept")  # the stop reaches the venue, its answer is lost
    rig.price("48900")
    with capture_logs() as logs:
        rig.tick()  # fills are polled, the stop is sent, the answer is lost, then looked up
    assert pos.current is State.PROTECTED
    assert any(e["event"] == "order_outcome_unknown" for e in logs)
    assert rig.journal(pos, OrderRole.STOP) == [(f"bst-{pos.id}-sl-1", OrderStatus.ACKED)]
    assert [o["cli_ord_id"] for o in rig.venue_orders()] == [f"bst-{pos.id}-sl-1"]
    for _ in range(20):
        rig.tick()
    assert rig.commands(EnsureStop) == []  # nothing for the ladder to do
    assert rig.protection.ladder.episodes == {}


def test_a_stop_lost_before_the_venue_is_waited_for_then_retried(rig: Rig) -> None:
    pos = rig.open_long(OrderType.LIMIT, "49000")
    rig.fault("timeout_before_accept")  # the stop never reaches the venue, no answer either
    rig.price("48900")
    with capture_logs() as logs:
        rig.tick()
        assert pos.data.stop_pending is not None  # unknown: neither refused nor re-sent
        for _ in range(4 * 7):  # 7 s: the ladder's command finds it still unresolved
            rig.tick()
        assert rig.commands(EnsureStop)
        answers = [m.outcome for d, m in rig.sent if isinstance(m, OrderOutcome)]
        assert answers == [Outcome.UNKNOWN, Outcome.IN_FLIGHT]
        assert rig.venue_orders() == []
        assert rig.journal(pos, OrderRole.STOP) == [(f"bst-{pos.id}-sl-1", OrderStatus.UNKNOWN)]
        rig.wall[0] = 11.0  # past execution's grace: not at the venue, so it was never placed
        rig.run_until(lambda: pos.current is State.PROTECTED, within_ms=10_000)
    assert rig.journal(pos, OrderRole.STOP) == [
        (f"bst-{pos.id}-sl-1", OrderStatus.REJECTED),
        (f"bst-{pos.id}-sl-2", OrderStatus.ACKED),
    ]
    assert [o["cli_ord_id"] for o in rig.venue_orders()] == [f"bst-{pos.id}-sl-2"]
    assert "place" in rungs(logs)
    assert any(e["event"] == "stop_requested" for e in logs)


def test_a_rate_limited_stop_is_retried_with_back_off(rig: Rig) -> None:
    pos = rig.open_long(OrderType.LIMIT, "49000")
    rig.fault("rate_limit", times=2)
    rig.price("48900")
    with capture_logs() as logs:
        rig.tick()
        assert pos.current is State.UNPROTECTED
        first_retry_at = rig.now + 1_000
        rig.run_until(lambda: pos.current is State.PROTECTED, within_ms=10_000)
    assert rungs(logs) == ["place", "retry", "retry"]
    retries = [e for e in logs if e["event"] == "ladder_rung" and e["rung"] == "retry"]
    assert retries[0]["naked_ms"] >= 1_000
    assert rig.now >= first_retry_at + 2_000  # the second retry waited twice as long
    journal = rig.journal(pos, OrderRole.STOP)
    assert [s for _, s in journal] == [OrderStatus.REJECTED] * 2 + [OrderStatus.ACKED]
    assert len(rig.venue_orders()) == 1


def test_flatten_refused_ends_in_quarantine_alerts_and_the_kill_switch(rig: Rig) -> None:
    pos = rig.open_long()
    rig.admin("venue_cancel", {"api_key": PAPER_API_KEY})
    rig.fault("reject_stop", times=-1)  # no stop is accepted any more ...
    rig.fault("rate_limit", times=-1)  # ... and every other send (the exits) is rate-limited
    with capture_logs() as logs:
        rig.run_until(lambda: pos.current is State.QUARANTINED, within_ms=40_000)
    assert rungs(logs)[-3:] == ["flatten", "flatten", "quarantine"]
    assert any(e["event"] == "ladder_exhausted" for e in logs)
    (quarantine,) = rig.commands(Quarantine)
    assert pos.data.quarantine_reason == quarantine.reason
    latches = [m for d, m in rig.sent if isinstance(m, KillSwitchChanged)]
    assert {d for d, m in rig.sent if isinstance(m, KillSwitchChanged)} == {EXECUTION, RISK}
    assert all(m.latched for m in latches)
    assert rig.execution.kill_latched
    assert (rig.store.get_value("kill_switch") or {})["latched"] is True  # persisted
    assert len(rig.venue_positions()) == 1  # still exposed: an operator's turn
    sent_before = len(rig.store.orders(position_id=pos.id))
    for _ in range(4 * 70):  # 70 s more
        rig.tick()
    assert len(rig.store.orders(position_id=pos.id)) == sent_before  # no further orders
    kinds = rig.alert_kinds()
    assert kinds.count("ladder_quarantine") == 1
    assert kinds.count("quarantined") == 2  # repeated every 30 s
    critical = [a for a in rig.alerts.views() if a.kind == "quarantined"]
    assert critical[1].at - critical[0].at == 30_000
