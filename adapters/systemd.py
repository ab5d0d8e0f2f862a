"""sd_notify without libsystemd: readiness, status, stopping and the watchdog.

Messages are datagrams of ``KEY=VALUE`` lines sent to ``$NOTIFY_SOCKET`` (a path, or an abstract
socket written ``@name``). Decisions:

- Every function is a no-op returning False when ``NOTIFY_SOCKET`` is unset (a terminal, tests,
  ``make paper``), and never raises: a failure to notify is logged at debug and reported as
  False. Notification must never be the reason a trading process dies.
- The environment is read on every call, and a fresh socket is used per message (a few per
  minute at most), so there is no state to go stale after a fork or an environment change.
- :class:`Watchdog` pings only while its ``healthy()`` callable says True. A stuck actor (or a
  ``healthy()`` that itself hangs) therefore stops the pings, and systemd kills and restarts the
  process after ``WatchdogSec``: that is the point of the watchdog. Give it liveness only (actor
  heartbeats), not readiness (feed freshness): restarting cannot fix an exchange outage, and a
  restart loop ends with systemd giving up and nothing watching the positions.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger(__name__)


def _address(value: str) -> str | None:
    """The socket address for ``$NOTIFY_SOCKET``; None for kinds we do not speak (vsock)."""
    if value.startswith("@"):
        return "\0" + value[1:]  # abstract namespace
    if value.startswith("/"):
        return value
    return None


def notify(*fields: str, env: Mapping[str, str] | None = None) -> bool:
    """Send ``fields`` (``"READY=1"``, ``"STATUS=..."``) as one datagram; True if it was sent."""
    environ = os.environ if env is None else env
    target = environ.get("NOTIFY_SOCKET")
    if not target:
        return False
    address = _address(target)
    if address is None:
        log.debug("sd_notify_unsupported_socket", socket=target)
        return False
    payload = "\n".join(fields).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:  # non-inheritable
            sock.settimeout(1.0)  # a full receive queue must not block the caller for long
            sock.sendto(payload, address)
    except Exception as err:  # never let a notification failure reach the caller
        log.debug("sd_notify_failed", socket=target, error=repr(err))
        return False
    return True


def ready(status_text: str | None = None) -> bool:
    """Tell systemd startup is complete (``Type=notify`` leaves "activating" on this)."""
    fields = ["READY=1"]
    if status_text is not None:
        fields.append(_status_field(status_text))
    return notify(*fields)


def status(text: str) -> bool:
    """One line shown by ``systemctl status`` (line feeds are replaced by spaces)."""
    return notify(_status_field(text))


def stopping() -> bool:
    """Tell systemd a clean shutdown has begun."""
    return notify("STOPPING=1")


def watchdog() -> bool:
    """One watchdog keep-alive (``WATCHDOG=1``)."""
    return notify("WATCHDOG=1")


def _status_field(text: str) -> str:
    return "STATUS=" + " ".join(text.splitlines())


def watchdog_interval_s(env: Mapping[str, str] | None = None) -> float | None:
    """``WatchdogSec`` in seconds from ``$WATCHDOG_USEC``, or None when no watchdog applies.

    None also when ``$WATCHDOG_PID`` names another process (the variable was inherited). Ping at
    half this interval, as sd_watchdog_enabled(3) recommends; :class:`Watchdog` does.
    """
    environ = os.environ if env is None else env
    raw_usec = environ.get("WATCHDOG_USEC")
    if not raw_usec:
        return None
    pid = environ.get("WATCHDOG_PID")
    try:
        usec = int(raw_usec)
        if pid and int(pid) != os.getpid():
            return None
    except ValueError:
        log.debug("watchdog_env_invalid", watchdog_usec=raw_usec, watchdog_pid=pid)
        return None
    return usec / 1_000_000 if usec > 0 else None


class Watchdog:
    """A daemon thread sending ``WATCHDOG=1`` every ``period_s`` while ``healthy()`` is True.

    ``period_s`` defaults to half of :func:`watchdog_interval_s`; without a watchdog configured
    :meth:`start` does nothing and returns False. ``healthy()`` is called once per period, first
    right away; an exception from it counts as unhealthy. Transitions between healthy and
    unhealthy are logged once each, not every period.
    """

    def __init__(
        self,
        healthy: Callable[[], bool],
        period_s: float | None = None,
        ping: Callable[[], bool] = watchdog,
    ) -> None:
        if period_s is None:
            interval = watchdog_interval_s()
            period_s = interval / 2 if interval is not None else None
        if period_s is not None and period_s <= 0:
            raise ValueError(f"period_s must be > 0, got {period_s}")
        self.period_s = period_s
        self._healthy = healthy
        self._ping = ping
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Start pinging; False (and nothing started) when no watchdog is configured."""
        if self.period_s is None:
            return False
        if self._thread is not None:
            raise RuntimeError("watchdog already started")
        self._thread = threading.Thread(
            target=self._run, args=(self.period_s,), name="sd-watchdog", daemon=True
        )
        self._thread.start()
        return True

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop pinging and wait for the thread (idempotent)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def _check(self) -> bool:
        try:
            return bool(self._healthy())
        except Exception as err:
            log.warning("watchdog_check_failed", error=repr(err))
            return False

    def _run(self, period_s: float) -> None:
        was_healthy = True
        while not self._stop.is_set():
            healthy = self._check()
            if healthy:
                if self._stop.is_set():
                    break
                self._ping()
                if not was_healthy:
                    log.info("watchdog_resumed")
            elif was_healthy:
                log.warning("watchdog_withheld", reason="health check failed")
            was_healthy = healthy
            self._stop.wait(period_s)
