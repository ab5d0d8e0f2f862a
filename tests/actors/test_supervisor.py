"""Supervision: restarts with back-off, restart budget and escalation, heartbeat, directory, stop.

Children are small counters whose state lives in a shared dict standing in for the store; a
restarted counter rebuilds from it, so "nothing stored is lost" is checked directly. Back-off
sleeps are replaced by a recorder (or a gate) and the rng by a constant, so delays are exact.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pykka
import pytest
from structlog.testing import capture_logs

from actors.supervisor import (
    ChildDown,
    ChildFailed,
    ChildSpec,
    Directory,
    Escalated,
    Heartbeat,
    HeartbeatReply,
    SupervisedActor,
    Supervisor,
    backoff_delay,
)

WAIT_S = 5.0


@dataclass(frozen=True)
class Add:
    n: int


@dataclass(frozen=True)
class Boom:
    pass


@dataclass(frozen=True)
class Get:
    pass


@dataclass(frozen=True)
class Block:
    release: threading.Event


class Counter(SupervisedActor):
    """Keeps a running total, persisted to ``store`` on every change."""

    def __init__(self, store: dict[str, Any]) -> None:
        super().__init__()
        self.store = store
        self.total = 0

    def on_start_guarded(self) -> None:
        key = f"fail_starts:{self.supervised_name}"
        if self.store.get(key, 0) > 0:
            self.store[key] -= 1
            raise RuntimeError("store unavailable")
        self.total = self.store.get(f"total:{self.supervised_name}", 0)

    def on_stop(self) -> None:
        self.store.setdefault("stopped", []).append(self.supervised_name)

    def on_receive(self, message: Any) -> Any:
        match message:
            case Add(n):
                self.total += n
                self.store[f"total:{self.supervised_name}"] = self.total
            case Boom():
                raise ValueError("boom")
            case Get():
                return self.total
            case Block(release):
                release.wait(WAIT_S)
        return None


class ZeroRng(random.Random):
    """Jitter factor exactly 1: delays equal the un-jittered back-off."""

    def random(self) -> float:
        return 0.0


class Recorder:
    """Callbacks and back-off sleeps, observable with bounded waits."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.escalations: list[Escalated] = []
        self.restarted: list[str] = []
        self.delays: list[tuple[str, float]] = []

    def on_escalate(self, event: Escalated) -> None:
        with self.cond:
            self.escalations.append(event)
            self.cond.notify_all()

    def on_restart(self, name: str, _ref: pykka.ActorRef[Any]) -> None:
        with self.cond:
            self.restarted.append(name)
            self.cond.notify_all()

    def sleep(self, delay: float) -> None:
        name = threading.current_thread().name.removeprefix("supervisor-backoff-")
        with self.cond:
            self.delays.append((name, delay))

    def delays_of(self, name: str) -> list[float]:
        with self.cond:
            return [d for n, d in self.delays if n == name]

    def wait(self, predicate: Callable[[], bool], timeout: float = WAIT_S) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def wait_restarts(self, name: str, count: int) -> bool:
        return self.wait(lambda: self.restarted.count(name) >= count)


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def counter(name: str, store: dict[str, Any], **kw: Any) -> ChildSpec:
    return ChildSpec(name=name, factory=lambda: Counter.start(store), **kw)


@pytest.fixture
def make_sup() -> Iterator[Callable[..., tuple[Supervisor, Recorder]]]:
    made: list[Supervisor] = []

    def make(specs: list[ChildSpec], **kw: Any) -> tuple[Supervisor, Recorder]:
        rec = Recorder()
        kw.setdefault("sleep", rec.sleep)
        kw.setdefault("on_escalate", rec.on_escalate)
        kw.setdefault("on_restart", rec.on_restart)
        kw.setdefault("rng", ZeroRng())
        kw.setdefault("poll_interval_s", 0.05)
        kw.setdefault("stop_timeout_s", 1.0)
        sup = Supervisor(specs, **kw)
        made.append(sup)
        sup.start_children()
        return sup, rec

    yield make
    for sup in made:
        sup.stop()


def events(logs: list[dict[str, Any]], name: str, actor: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name and e.get("actor") == actor]


def test_child_failing_in_a_tell_handler_is_restarted_and_keeps_serving(make_sup) -> None:
    store: dict[str, Any] = {}
    with capture_logs() as logs:
        sup, rec = make_sup([counter("counter", store)])
        d = sup.directory
        assert d.tell("counter", Add(1)) and d.tell("counter", Add(2))
        assert d.ask("counter", Get(), timeout_s=WAIT_S) == 3
        first = sup.ref("counter")

        assert d.tell("counter", Boom())
        assert rec.wait_restarts("counter", 1)

        second = sup.ref("counter")
        assert second is not None and second is not first
        assert first is not None and not first.is_alive()
        assert d.ask("counter", Get(), timeout_s=WAIT_S) == 3  # rebuilt from the store
        d.tell("counter", Add(4))
        assert d.ask("counter", Get(), timeout_s=WAIT_S) == 7
    assert store["total:counter"] == 7
    assert sup.restarts() == {"counter": 1}
    (failed,) = events(logs, "actor_failed", "counter")
    assert failed["error"] == "ValueError('boom')"
    assert "raise ValueError" in failed["traceback"]
    assert len(events(logs, "actor_restarting", "counter")) == 1
    assert len(events(logs, "actor_restarted", "counter")) == 1


def test_failure_in_on_start_guarded_is_reported_and_retried_with_backoff(make_sup) -> None:
    store: dict[str, Any] = {"fail_starts:c": 2, "total:c": 5}
    with capture_logs() as logs:
        sup, rec = make_sup([counter("c", store, backoff_initial_s=0.2, backoff_max_s=10.0)])
        assert rec.wait_restarts("c", 2)
        assert sup.directory.ask("c", Get(), timeout_s=WAIT_S) == 5
    assert rec.delays_of("c") == [0.2, 0.4]
    assert sup.restarts() == {"c": 2}
    failed = events(logs, "actor_failed", "c")
    assert [f["error"] for f in failed] == ["RuntimeError('store unavailable')"] * 2
    assert [e["delay_s"] for e in events(logs, "actor_restarting", "c")] == [0.2, 0.4]
    assert rec.escalations == []


def test_a_factory_that_raises_counts_as_a_failure(make_sup) -> None:
    store: dict[str, Any] = {}
    calls = {"n": 0}

    def factory() -> pykka.ActorRef[Any]:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise OSError("db locked")
        return Counter.start(store)

    sup, rec = make_sup([ChildSpec("f", factory)])
    assert rec.wait_restarts("f", 1)  # the first successful start is a restart
    assert sup.directory.ask("f", Get(), timeout_s=WAIT_S) == 0
    assert sup.restarts() == {"f": 2}  # two attempts after the failed initial start
    assert rec.delays_of("f") == [0.2, 0.4]


def test_over_budget_escalates_once_unprotected_stays_down_protected_keeps_running(
    make_sup,
) -> None:
    store: dict[str, Any] = {"fail_starts:flaky": 100, "fail_starts:guard": 6, "total:guard": 9}
    budget = {"max_restarts": 2, "window_s": 60.0, "backoff_initial_s": 0.01, "backoff_max_s": 0.05}
    with capture_logs() as logs:
        sup, rec = make_sup(
            [
                counter("flaky", store, **budget),
                counter("guard", store, protected=True, **budget),
                counter("steady", store, **budget),
            ]
        )
        assert rec.wait_restarts("guard", 6)
        assert sup.directory.ask("guard", Get(), timeout_s=WAIT_S) == 9
        assert rec.wait(lambda: len(rec.escalations) == 2)
        assert sup.drain(WAIT_S)

    assert sorted(e.child for e in rec.escalations) == ["flaky", "guard"]
    assert len(events(logs, "actor_escalated", "guard")) == 1  # once per window, not per failure
    assert sup.ref("flaky") is None
    assert sup.restarts()["flaky"] == 2
    assert sup.escalated() == {"flaky": True, "guard": True, "steady": False}
    assert rec.delays_of("flaky") == [0.01, 0.02]
    assert rec.delays_of("guard") == [0.01, 0.02, 0.05, 0.05, 0.05, 0.05]  # max after escalation
    assert sup.restarts()["steady"] == 0
    assert sup.directory.ask("steady", Get(), timeout_s=WAIT_S) == 0

    store["fail_starts:flaky"] = 0  # the operator fixed the cause
    sup.revive("flaky")
    assert rec.wait_restarts("flaky", 3)
    assert sup.directory.ask("flaky", Get(), timeout_s=WAIT_S) == 0


def test_heartbeat_checks_all_children_in_one_timeout(make_sup) -> None:
    store: dict[str, Any] = {}
    names = ["c0", "c1", "c2", "c3", "c4"]
    specs = [counter(n, store, essential=(n != "c4")) for n in names]
    sup, _rec = make_sup(specs)
    assert not sup.healthy()  # no heartbeat answered yet
    assert all(sup.heartbeat(WAIT_S).values())
    assert sup.healthy()

    release0, release4 = threading.Event(), threading.Event()
    stuck0 = sup.ref("c0")
    sup.directory.tell("c0", Block(release0))
    sup.directory.tell("c4", Block(release4))
    try:
        with capture_logs() as logs:
            t0 = time.monotonic()
            result = sup.heartbeat(1.0)
            elapsed = time.monotonic() - t0
            sup.heartbeat(0.05)
            sup.heartbeat(0.05)
        assert result == {"c0": False, "c1": True, "c2": True, "c3": True, "c4": False}
        # one shared deadline: asking the two blocked children in turn would take >= 2 s
        assert 0.99 <= elapsed < 1.9
        assert not sup.healthy()
        assert [e["consecutive"] for e in events(logs, "heartbeat_missed", "c0")] == [1, 2, 3]
        assert sup.ref("c0") is stuck0  # default policy: report only, no restart
        assert sup.restarts()["c0"] == 0

        release0.set()
        assert sup.heartbeat(0.5)["c0"]
        assert sup.healthy()  # c4 is not essential
    finally:
        release0.set()
        release4.set()
    assert all(sup.heartbeat(WAIT_S).values())


def test_stuck_child_is_fenced_and_restarted_when_opted_in(make_sup) -> None:
    store: dict[str, Any] = {"total:s": 1}
    sup, rec = make_sup([counter("s", store, restart_after_missed=2)])
    old = sup.ref("s")
    release = threading.Event()
    try:
        sup.directory.tell("s", Block(release))
        sup.directory.tell("s", Add(5))  # queued behind the stuck handler
        assert not sup.heartbeat(0.05)["s"]
        assert not sup.heartbeat(0.05)["s"]
        assert rec.wait_restarts("s", 1)
    finally:
        release.set()
    assert old is not None and old.actor_stopped.wait(WAIT_S)
    assert sup.heartbeat(WAIT_S) == {"s": True}
    assert sup.directory.ask("s", Get(), timeout_s=WAIT_S) == 1
    assert store["total:s"] == 1  # the fenced incarnation handled nothing after waking up


def test_child_that_stops_without_report_is_restarted(make_sup) -> None:
    store: dict[str, Any] = {}
    sup, rec = make_sup([counter("quiet", store)])
    ref = sup.ref("quiet")
    assert ref is not None
    ref.stop()
    assert rec.wait_restarts("quiet", 1)
    assert sup.directory.ask("quiet", Get(), timeout_s=WAIT_S) == 0


def test_directory_drops_messages_while_down_and_reaches_the_new_ref(make_sup) -> None:
    store: dict[str, Any] = {}
    gate = threading.Event()
    sup, rec = make_sup([counter("c", store)], sleep=lambda _d: gate.wait(WAIT_S))
    d = sup.directory
    d.tell("c", Add(2))
    d.tell("c", Boom())
    try:
        assert wait_until(lambda: sup.ref("c") is None)
        with capture_logs() as logs:
            assert d.tell("c", Add(100)) is False
        assert events(logs, "message_dropped", "c") == [
            {"event": "message_dropped", "actor": "c", "message": "Add", "log_level": "warning"}
        ]
        with pytest.raises(ChildDown):
            d.ask("c", Get(), timeout_s=0.1)
    finally:
        gate.set()
    assert rec.wait_restarts("c", 1)
    assert d.tell("c", Add(3)) is True
    assert d.ask("c", Get(), timeout_s=WAIT_S) == 5  # 2 from the store + 3; the dropped 100 is gone
    assert d.tell("nobody", Add(1)) is False


def test_directory_tell_to_a_dead_ref_is_dropped() -> None:
    d = Directory()
    ref = Counter.start({})
    ref.stop()
    d.set("c", ref)
    assert d.get("c") is None
    assert d.tell("c", Add(1)) is False


def test_stop_is_bounded_with_a_stuck_child_and_goes_in_reverse_order(make_sup) -> None:
    store: dict[str, Any] = {}
    sup, _rec = make_sup(
        [counter("a", store), counter("b", store), counter("c", store)], stop_timeout_s=0.3
    )
    stuck = sup.ref("b")
    release = threading.Event()
    sup.directory.tell("b", Block(release))
    try:
        t0 = time.monotonic()
        sup.stop()
        elapsed = time.monotonic() - t0
    finally:
        release.set()
    assert elapsed < 3.0  # bounded: an unbounded stop would wait for the stuck child forever
    assert store["stopped"] == ["c", "a"]
    assert sup.refs() == {"a": None, "b": None, "c": None}
    assert stuck is not None and stuck.actor_stopped.is_set()  # fenced
    assert not sup.healthy()


def test_supervisor_survives_failing_callbacks_and_bogus_reports(make_sup) -> None:
    store: dict[str, Any] = {}

    def bad_escalate(_event: Escalated) -> None:
        raise RuntimeError("pager down")

    def bad_restart(_name: str, _ref: pykka.ActorRef[Any]) -> None:
        raise RuntimeError("rewire failed")

    fast = {"backoff_initial_s": 0.01, "backoff_max_s": 0.01}
    with capture_logs() as logs:
        sup, _rec = make_sup(
            [counter("x", store, max_restarts=0, protected=True, **fast)],
            on_escalate=bad_escalate,
            on_restart=bad_restart,
        )
        sup.report(ChildFailed("nobody", "Err()", ""))
        sup.report(ChildFailed("x", "Err()", "", actor_urn="urn:uuid:old"))
        assert sup.drain(WAIT_S)
        assert sup.restarts() == {"x": 0}

        sup.directory.tell("x", Boom())
        assert wait_until(lambda: sup.restarts()["x"] == 1 and sup.ref("x") is not None)
        assert sup.directory.ask("x", Get(), timeout_s=WAIT_S) == 0
    assert sup.heartbeat(WAIT_S) == {"x": True}
    assert sup.healthy()
    assert [e["event"] for e in logs if e["event"].endswith("callback_failed")] == [
        "escalation_callback_failed",
        "restart_callback_failed",
    ]


def test_heartbeat_is_built_in_and_start_hooks_are_owned() -> None:
    ref = Counter.start({})
    try:
        reply = ref.ask(Heartbeat(seq=7), timeout=WAIT_S)
    finally:
        ref.stop()
    assert isinstance(reply, HeartbeatReply)
    assert (reply.name, reply.seq) == ("Counter", 7)

    with pytest.raises(TypeError, match="on_start_guarded"):

        class BadStart(SupervisedActor):
            def on_start(self) -> None:
                pass

    with pytest.raises(TypeError, match="on_failure_cleanup"):

        class BadFailure(SupervisedActor):
            def on_failure(self, *_args: object) -> None:
                pass


def test_backoff_doubles_caps_and_jitters() -> None:
    spec = ChildSpec("c", Counter.start, backoff_initial_s=0.5, backoff_max_s=3.0)
    zero = ZeroRng()
    assert [backoff_delay(spec, n, zero, at_max=False) for n in range(5)] == [
        0.5,
        1.0,
        2.0,
        3.0,
        3.0,
    ]
    assert backoff_delay(spec, 0, zero, at_max=True) == 3.0
    rng = random.Random(1)
    assert all(1.0 < backoff_delay(spec, 2, rng, at_max=False) <= 2.0 for _ in range(100))


def test_child_spec_is_validated() -> None:
    with pytest.raises(ValueError, match="backoff"):
        ChildSpec("c", Counter.start, backoff_initial_s=5.0, backoff_max_s=1.0)
    with pytest.raises(ValueError, match="duplicate"):
        Supervisor(
            [ChildSpec("c", Counter.start), ChildSpec("c", Counter.start)],
            on_escalate=lambda _e: None,
        )
