import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters import systemd


class Listener:
    """A real AF_UNIX datagram socket standing in for systemd's notification socket."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value

    def recv(self, timeout: float = 5.0) -> str:
        self.sock.settimeout(timeout)
        return self.sock.recv(4096).decode()

    def pending(self) -> list[str]:
        """Every datagram already queued, without waiting."""
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            return out
        finally:
            self.sock.setblocking(True)


@pytest.fixture(params=["path", "abstract"])
def listener(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Listener]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        path = str(tmp_path / "notify.sock")
        sock.bind(path)
        env_value = path
    else:
        name = f"bastion-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        env_value = "@" + name
    monkeypatch.setenv("NOTIFY_SOCKET", env_value)
    with sock:
        yield Listener(sock, env_value)


def test_messages_arrive(listener: Listener) -> None:
    assert systemd.ready()
    assert listener.recv() == "READY=1"
    assert systemd.ready("reconciled: 3 positions")
    assert listener.recv() == "READY=1\nSTATUS=reconciled: 3 positions"
    assert systemd.status("two\nlines")
    assert listener.recv() == "STATUS=two lines"  # a line feed would start a new field
    assert systemd.watchdog()
    assert listener.recv() == "WATCHDOG=1"
    assert systemd.stopping()
    assert listener.recv() == "STOPPING=1"


def test_noop_without_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.ready() is False
    assert systemd.watchdog() is False
    assert systemd.status("x") is False
    assert systemd.stopping() is False


@pytest.mark.parametrize(
    "value", ["/nonexistent/dir/notify.sock", "@bastion-nobody-listens-here", "vsock:2:1234"]
)
def test_failures_never_raise(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", value)
    assert systemd.ready() is False
    assert systemd.watchdog() is False


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    assert systemd.watchdog_interval_s({}) is None
    assert systemd.watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 30.0
    pid = str(os.getpid())
    assert systemd.watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": pid}) == 30.0
    other = str(os.getpid() + 1)
    assert systemd.watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": other}) is None
    assert systemd.watchdog_interval_s({"WATCHDOG_USEC": "soon"}) is None
    assert systemd.watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert systemd.Watchdog(lambda: True).period_s == 5.0  # half the interval
    monkeypatch.delenv("WATCHDOG_USEC")
    assert systemd.Watchdog(lambda: True).start() is False  # no watchdog configured


class HealthProbe:
    """healthy() for the watchdog: returns a switchable answer and lets the test wait on calls."""

    def __init__(self) -> None:
        self.answer = True
        self.false_calls = 0
        self.cond = threading.Condition()

    def __call__(self) -> bool:
        with self.cond:
            answer = self.answer
            if not answer:
                self.false_calls += 1
            self.cond.notify_all()
        return answer

    def wait_false_calls(self, n: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.false_calls >= n, timeout=5)


def test_watchdog_pings_only_while_healthy(listener: Listener) -> None:
    probe = HealthProbe()
    dog = systemd.Watchdog(probe, period_s=0.01)
    assert dog.start()
    try:
        assert listener.recv() == "WATCHDOG=1"
        assert listener.recv() == "WATCHDOG=1"
        with probe.cond:
            probe.answer = False
        # A ping follows a True answer synchronously, before the next check: once the check has
        # answered False twice, every ping from the healthy period is already queued.
        probe.wait_false_calls(2)
        listener.pending()
        probe.wait_false_calls(6)
        assert listener.pending() == []
        with probe.cond:
            probe.answer = True
        assert listener.recv() == "WATCHDOG=1"  # pings resume when healthy again
    finally:
        dog.stop()
    assert dog._thread is not None
    assert not dog._thread.is_alive()


def test_watchdog_treats_exceptions_as_unhealthy_and_stops(listener: Listener) -> None:
    raised = threading.Event()

    def broken() -> bool:
        raised.set()
        raise RuntimeError("heartbeat ask failed")

    dog = systemd.Watchdog(broken, period_s=0.01)
    dog.start()
    assert raised.wait(5)
    dog.stop()
    dog.stop()  # idempotent
    assert listener.pending() == []
