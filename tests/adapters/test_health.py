import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from adapters.health import HealthReport, HealthServer, UnsafeBindError, resolve_bind_host

METRICS_TEXT = "# HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n"


def get(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, str, bytes]:
    """GET over real HTTP; returns status, content type and body (also for 4xx/5xx)."""
    url = f"http://{host}:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


@pytest.fixture
def serve() -> Iterator[Callable[..., HealthServer]]:
    servers: list[HealthServer] = []

    def start(check: Callable[[], HealthReport], **kwargs: float) -> HealthServer:
        server = HealthServer("127.0.0.1", 0, check, lambda: METRICS_TEXT, **kwargs)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def healthy() -> HealthReport:
    return HealthReport({"actor:execution": True, "feed:BTC/USD:USD": True})


def test_healthy_is_200_with_json(serve: Callable[..., HealthServer]) -> None:
    server = serve(healthy)
    assert server.port > 0
    status, ctype, body = get(server.port, "/healthz")
    assert status == 200
    assert ctype == "application/json"
    assert json.loads(body) == {
        "status": "ok",
        "failed": [],
        "checks": {"actor:execution": True, "feed:BTC/USD:USD": True},
    }


def test_unhealthy_is_503_listing_failures(serve: Callable[..., HealthServer]) -> None:
    report = HealthReport(
        {"actor:execution": True, "actor:risk": False, "feed:ETH/USD:USD": False},
        detail={"feed_lag_s": {"ETH/USD:USD": 95.0}},
    )
    server = serve(lambda: report)
    status, _, body = get(server.port, "/healthz")
    assert status == 503
    payload = json.loads(body)
    assert payload["status"] == "unhealthy"
    assert payload["failed"] == ["actor:risk", "feed:ETH/USD:USD"]
    assert payload["detail"] == {"feed_lag_s": {"ETH/USD:USD": 95.0}}


def test_empty_report_is_not_healthy(serve: Callable[..., HealthServer]) -> None:
    server = serve(lambda: HealthReport({}))
    status, _, body = get(server.port, "/healthz")
    assert status == 503
    assert json.loads(body)["failed"] == ["no_checks"]


def test_metrics_and_404(serve: Callable[..., HealthServer]) -> None:
    server = serve(healthy)
    status, ctype, body = get(server.port, "/metrics")
    assert status == 200
    assert ctype.startswith("text/plain; version=0.0.4")
    assert body.decode() == METRICS_TEXT
    for path in ("/", "/health", "/metrics/x", "/healthz/../admin"):
        assert get(server.port, path)[0] == 404
    assert get(server.port, "/healthz?verbose=1")[0] == 200


def test_raising_check_is_503_and_server_survives(serve: Callable[..., HealthServer]) -> None:
    calls = {"n": 0}

    def flaky() -> HealthReport:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("secret-bearing message")
        return healthy()

    server = serve(flaky)
    status, _, body = get(server.port, "/healthz")
    assert status == 503
    payload = json.loads(body)
    assert payload["failed"] == ["check_error"]
    assert payload["detail"] == {"error": "RuntimeError"}
    assert b"secret-bearing" not in body  # only the exception type is shown
    assert get(server.port, "/healthz")[0] == 200


def test_wrong_return_type_is_503(serve: Callable[..., HealthServer]) -> None:
    server = serve(lambda: True)
    status, _, body = get(server.port, "/healthz")
    assert status == 503
    assert json.loads(body)["failed"] == ["check_invalid"]


def test_hanging_check_is_503_within_timeout(serve: Callable[..., HealthServer]) -> None:
    release = threading.Event()
    calls = {"n": 0}

    def hang() -> HealthReport:
        calls["n"] += 1
        release.wait(10)
        return healthy()

    server = serve(hang, check_timeout_s=1.0)
    try:
        t0 = time.monotonic()
        status, _, body = get(server.port, "/healthz")
        first = time.monotonic() - t0
        assert status == 503
        assert json.loads(body)["failed"] == ["check_timeout"]
        assert 0.95 <= first < 3.0
        # While the stuck check is still running, requests answer at once and start no new one.
        t0 = time.monotonic()
        assert get(server.port, "/healthz")[0] == 503
        assert time.monotonic() - t0 < 0.5
        assert calls["n"] == 1
        assert get(server.port, "/metrics")[0] == 200  # the server itself still serves
    finally:
        release.set()


def test_remote_bind_refused() -> None:
    for host in ("0.0.0.0", "", "::", "8.8.8.8", "192.168.1.10"):
        with pytest.raises(UnsafeBindError):
            HealthServer(host, 0, healthy, lambda: "")
    assert resolve_bind_host("127.0.0.1") == (socket.AF_INET, "127.0.0.1")
    assert resolve_bind_host("localhost")[1] in ("127.0.0.1", "::1")
    # An explicit opt-in is honoured (not started: nothing is exposed by this test).
    assert resolve_bind_host("0.0.0.0", allow_remote=True) == (socket.AF_INET, "0.0.0.0")


def test_ipv6_loopback(serve: Callable[..., HealthServer]) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this kernel")
    server = HealthServer("::1", 0, healthy, lambda: METRICS_TEXT)
    try:
        port = server.start()
    except OSError:
        pytest.skip("IPv6 loopback not configured here")
    try:
        assert get(port, "/healthz", host="[::1]")[0] == 200
    finally:
        server.stop()


def test_stop_releases_port_and_is_idempotent() -> None:
    server = HealthServer("127.0.0.1", 0, healthy, lambda: "")
    port = server.start()
    with pytest.raises(RuntimeError):
        server.start()
    server.stop()
    server.stop()
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", port), timeout=1),
    ):
        pass
