"""The HTTP health and metrics endpoint, on loopback, in a daemon thread.

``GET /healthz`` answers 200 with a small JSON body when the check says healthy, otherwise 503
with the checks that failed; ``GET /metrics`` answers the Prometheus text; any other path is 404
(other methods get the standard library's 501). Decisions:

- The check runs in its own daemon thread with a timeout. A check that raises, hangs or returns
  something other than a :class:`HealthReport` is a 503, never a crashed server. At most one
  check runs at a time: requests arriving while it runs share its result, and once it has
  overrun the timeout they answer 503 at once instead of piling up threads behind a stuck actor.
- It binds to loopback only unless ``allow_remote=True``: a typo such as ``0.0.0.0`` in the
  configuration raises :class:`UnsafeBindError` instead of exposing the bot to the network. A host
  name is resolved and every address must be loopback.
- Exception messages never reach the response (only the exception's type): the endpoint may be
  scraped by tools that store what they see.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any
from urllib.parse import urlsplit

import structlog

from adapters.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

log = structlog.get_logger(__name__)

DEFAULT_CHECK_TIMEOUT_S = 2.0


class UnsafeBindError(ValueError):
    """The health server was asked to listen on a non-loopback address without allow_remote."""


@dataclass(frozen=True, slots=True)
class HealthReport:
    """Named checks (True = passed) plus optional JSON-safe detail for the response body.

    Healthy means at least one check and every check passed: an empty report is no evidence of
    health. Typical names: ``actor:execution`` (answered its heartbeat), ``feed:BTC/USD:USD``
    (fresh).
    """

    checks: Mapping[str, bool]
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        if not self.checks:
            return ["no_checks"]
        return sorted(name for name, ok in self.checks.items() if not ok)

    @property
    def healthy(self) -> bool:
        return not self.failed

    @classmethod
    def failure(cls, name: str, **detail: Any) -> HealthReport:
        return cls(checks={name: False}, detail=detail)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": "ok" if self.healthy else "unhealthy",
            "failed": self.failed,
            "checks": dict(sorted(self.checks.items())),
        }
        if self.detail:
            body["detail"] = dict(self.detail)
        return body


def resolve_bind_host(host: str, allow_remote: bool = False) -> tuple[socket.AddressFamily, str]:
    """The address family and literal address to bind for ``host``.

    Raises :class:`UnsafeBindError` when it is not loopback and ``allow_remote`` is False
    (an empty host means every interface, so it is refused too).
    """
    name = host.strip().strip("[]")
    if not name and not allow_remote:
        raise UnsafeBindError("empty health host means every interface; use 127.0.0.1")
    try:
        infos = socket.getaddrinfo(
            name or None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as err:
        raise UnsafeBindError(f"health host {host!r} does not resolve: {err}") from None
    addresses = [(info[0], str(info[4][0])) for info in infos]
    if not allow_remote:
        remote = sorted({a for _, a in addresses if not ipaddress.ip_address(a).is_loopback})
        if remote:
            raise UnsafeBindError(
                f"health host {host!r} is not loopback ({', '.join(remote)}); "
                "refusing to expose the health endpoint (allow_remote=True to override)"
            )
    family, address = addresses[0]
    return socket.AddressFamily(family), address


class _CheckRunner:
    """Runs ``check`` in a daemon thread, at most one at a time, bounded by ``timeout_s``."""

    def __init__(self, check: Callable[[], HealthReport], timeout_s: float) -> None:
        self._check = check
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._pending: Future[HealthReport] | None = None
        self._started = 0.0

    def run(self) -> HealthReport:
        with self._lock:
            future = self._pending
            if future is None or future.done():
                future = self._pending = Future()
                self._started = time.monotonic()
                threading.Thread(
                    target=self._call, args=(future,), name="health-check", daemon=True
                ).start()
            remaining = max(0.0, self._started + self._timeout_s - time.monotonic())
        try:
            report = future.result(timeout=remaining)
        except TimeoutError:
            return HealthReport.failure("check_timeout", timeout_s=self._timeout_s)
        except Exception as err:
            return HealthReport.failure("check_error", error=type(err).__name__)
        if not isinstance(report, HealthReport):
            return HealthReport.failure("check_invalid", returned=type(report).__name__)
        return report

    def _call(self, future: Future[HealthReport]) -> None:
        try:
            future.set_result(self._check())
        except BaseException as err:
            log.warning("health_check_raised", error=repr(err))
            future.set_exception(err)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self, family: socket.AddressFamily, address: tuple[str, int], owner: HealthServer
    ) -> None:
        self.address_family = family
        self.owner = owner
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would call getfqdn(), a reverse DNS lookup we do not need.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 5.0  # a client that stalls mid-request cannot hold a thread for long
    server_version = "bastion-health"
    sys_version = ""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        owner = self.server.owner
        if path == "/healthz":
            report = owner.runner.run()
            owner.note(report)
            body = json.dumps(report.to_json(), sort_keys=True).encode()
            self._send(200 if report.healthy else 503, "application/json", body)
        elif path == "/metrics":
            try:
                text = owner.metrics()
            except Exception as err:
                log.warning("metrics_render_failed", error=repr(err))
                self._send(500, "text/plain; charset=utf-8", b"metrics unavailable\n")
                return
            self._send(200, METRICS_CONTENT_TYPE, text.encode("utf-8"))
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("health_http", client=self.client_address[0], message=format % args)


class HealthServer:
    """``GET /healthz`` and ``GET /metrics`` on loopback; :meth:`start` returns the bound port."""

    def __init__(
        self,
        host: str,
        port: int,
        check: Callable[[], HealthReport],
        metrics: Callable[[], str],
        *,
        allow_remote: bool = False,
        check_timeout_s: float = DEFAULT_CHECK_TIMEOUT_S,
    ) -> None:
        self.family, self.address = resolve_bind_host(host, allow_remote)
        self.port = port
        self.metrics = metrics
        self.runner = _CheckRunner(check, check_timeout_s)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._last_healthy: bool | None = None

    def start(self) -> int:
        """Bind (port 0 picks a free port), serve in a daemon thread, return the bound port."""
        if self._server is not None:
            raise RuntimeError("health server already started")
        server = _Server(self.family, (self.address, self.port), self)
        self._server = server
        self.port = server.server_port
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="health-http",
            daemon=True,
        )
        self._thread.start()
        log.info("health_server_started", host=self.address, port=self.port)
        return self.port

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5.0)
        log.info("health_server_stopped", port=self.port)

    def note(self, report: HealthReport) -> None:
        """Log transitions between healthy and unhealthy (not every request)."""
        if report.healthy != self._last_healthy:
            self._last_healthy = report.healthy
            if report.healthy:
                log.info("health_ok")
            else:
                log.warning("health_failed", failed=report.failed)
