"""The loopback server: REST, charts, admin and WebSocket v1 on one port.

:func:`start_server` runs it on an event-loop thread and returns a :class:`ServerHandle`
(tests, embedding); :func:`serve_forever` runs it in the foreground (the CLI). One structlog
line per HTTP request at debug level (``http_request``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import structlog

from adapters.sim.server import admin, rest
from adapters.sim.server.auth import PAPER_API_KEY, PAPER_API_SECRET, AuthError
from adapters.sim.server.faults import FaultRule
from adapters.sim.server.httpio import (
    BadRequest,
    HttpRequest,
    HttpResponse,
    encode_response,
    read_request,
)
from adapters.sim.server.venue import Venue, VenueConfig
from adapters.sim.server.ws import Hub

log = structlog.get_logger(__name__)
T = TypeVar("T")

WS_PATH = "/ws/v1"
CLOCK_STEP_S = 0.05
SAVE_INTERVAL_S = 1.0
FEED_POLL_S = 0.2  # the feed loop's longest sleep (intervals changed meanwhile apply then)


class SimServer:
    """One emulator instance bound to an event loop (not thread-safe: use the loop)."""

    def __init__(self, config: VenueConfig, ticker_interval: float = 1.0) -> None:
        self.venue = Venue(config)
        self.hub = Hub(self.venue, ticker_interval=ticker_interval)
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._connection, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._tasks = [
            asyncio.create_task(self._clock_loop()),
            asyncio.create_task(self._save_loop()),
            asyncio.create_task(self._feed_loop()),
        ]
        log.info("sim_server_started", host=host, port=self.port, speed=self.venue.config.speed)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            self._server.close()
        self.hub.drop_all(abort=True)
        for writer in list(self._writers):
            writer.transport.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        self.venue.close()
        log.info("sim_server_stopped", port=self.port)

    # ------------------------------------------------------------------ background
    async def _clock_loop(self) -> None:
        while True:
            await asyncio.sleep(CLOCK_STEP_S)
            self.venue.tick()

    async def _save_loop(self) -> None:
        while True:
            await asyncio.sleep(SAVE_INTERVAL_S)
            self.venue.flush()

    async def _feed_loop(self) -> None:
        """Periodic tickers and heartbeats (:mod:`adapters.sim.server.ws`), each dated with the
        clock brought up to date first."""
        hub = self.hub
        last_ticker = last_heartbeat = time.monotonic()
        while True:
            due = min(last_ticker + hub.ticker_interval, last_heartbeat + hub.heartbeat_period_s())
            await asyncio.sleep(min(max(due - time.monotonic(), 0.0), FEED_POLL_S))
            now = time.monotonic()
            tickers = now - last_ticker >= hub.ticker_interval
            heartbeat = now - last_heartbeat >= hub.heartbeat_period_s()
            if tickers or heartbeat:
                self.venue.tick()
            if tickers:
                last_ticker = now
                hub.periodic_tickers()
            if heartbeat:
                last_heartbeat = now
                hub.heartbeat()

    # ------------------------------------------------------------------ connections
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer_info = writer.get_extra_info("peername")
        peer = str(peer_info[0]) if peer_info else ""
        self._writers.add(writer)
        try:
            while True:
                try:
                    request = await read_request(reader, peer)
                except BadRequest as exc:
                    writer.write(encode_response(HttpResponse.text(str(exc), 400), False))
                    break
                if request is None:
                    break
                if request.is_websocket and request.path == WS_PATH:
                    await self.hub.serve(request, reader, writer)
                    break
                response = await self._dispatch(request)
                if response is None:
                    break
                writer.write(encode_response(response, request.keep_alive))
                await writer.drain()
                if not request.keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _dispatch(self, request: HttpRequest) -> HttpResponse | None:
        started = time.perf_counter()
        try:
            response = await self._respond(request)
        except Exception:
            log.exception("http_request_failed", method=request.method, path=request.path)
            response = rest.error_response(self.venue, "Server Error", 500)
        log.debug(
            "http_request",
            method=request.method,
            path=request.path,
            status=None if response is None else response.status,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return response

    async def _respond(self, request: HttpRequest) -> HttpResponse | None:
        venue = self.venue
        venue.tick()  # a request sees the venue as of its arrival, not of the last clock step
        if request.path.startswith(admin.PREFIX):
            return admin.handle(self, request)
        name = rest.endpoint_name(request.path)
        handler, private = rest.route(venue, request, name) if name else (None, False)
        if handler is None:
            return rest.error_response(venue, "notFound", 404)
        key = None
        if private:
            try:
                key = rest.authenticate(venue, request)
            except AuthError as exc:
                log.info("auth_failed", path=request.path, code=exc.code)
                return rest.error_response(venue, exc.code, 401)
        is_stop = request.params.get("orderType", "") in ("stp", "take_profit")
        final: FaultRule | None = None
        for rule in venue.faults.take(name or "", is_stop=is_stop):
            if rule.kind == "latency":
                await asyncio.sleep((rule.ms or 0) / 1000)
            else:
                final = rule
        if final is not None and final.kind != "timeout_after_accept":
            return await self._fault_response(final)
        ctx = rest.Ctx(venue, request, request.params, key)
        response = rest.call(handler, ctx)
        if final is not None:  # timeout_after_accept: applied (and saved), answer lost
            await asyncio.sleep((final.ms or 0) / 1000)
            return None
        return response

    async def _fault_response(self, rule: FaultRule) -> HttpResponse | None:
        if rule.kind == "http_5xx":
            return HttpResponse.text(rule.body or "Service Unavailable", int(rule.status or 503))
        if rule.kind == "rate_limit":
            status = int(rule.status or 429)
            return rest.error_response(self.venue, "apiLimitExceeded", status)
        if rule.kind == "reject_stop":
            status = str(rule.status or "invalidPrice")
            send_status = {"status": status, "receivedTime": rest.render.iso(self.venue.now_ms)}
            return HttpResponse.json(
                {
                    "result": "success",
                    "serverTime": rest.render.iso(self.venue.now_ms),
                    "sendStatus": send_status,
                }
            )
        await asyncio.sleep((rule.ms or 0) / 1000)  # timeout_before_accept
        return None


class ServerHandle:
    """A server running on its own event-loop thread."""

    def __init__(
        self,
        server: SimServer,
        loop: asyncio.AbstractEventLoop,
        thread: threading.Thread,
        host: str,
    ) -> None:
        self.server = server
        self.loop = loop
        self.thread = thread
        self.host = host
        self.port = server.port
        self.url = f"http://{host}:{self.port}"
        self.ws_url = f"ws://{host}:{self.port}{WS_PATH}"

    def call(self, fn: Callable[[SimServer], T], timeout: float = 10.0) -> T:
        """Run ``fn(server)`` on the loop thread (engine access) and return its result."""

        async def run() -> T:
            return fn(self.server)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if not self.thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(  # noqa: PLR0917 - positional signature given by the issue
    host: str = "127.0.0.1",
    port: int = 0,
    state_dir: str | Path | None = None,
    seed: int = 0,
    speed: float = 0.0,
    data_file: str | Path | None = None,
    api_key: str = PAPER_API_KEY,
    api_secret: str = PAPER_API_SECRET,
    balance: float | str | Decimal = 100_000,
    **options: Any,
) -> ServerHandle:
    """Start the emulator on a background thread; ``port=0`` picks a free port.

    ``options``: ``warmup_minutes``, ``start_ms`` (see :class:`VenueConfig`), ``ticker_interval``.
    """
    ticker_interval = float(options.pop("ticker_interval", 1.0))
    config = VenueConfig(
        state_dir=None if state_dir is None else Path(state_dir),
        seed=seed,
        speed=speed,
        data_file=None if data_file is None else Path(data_file),
        api_key=api_key,
        api_secret=api_secret,
        balance=Decimal(str(balance)),
        **options,
    )
    loop = asyncio.new_event_loop()
    ready: dict[str, Any] = {}
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            server = SimServer(config, ticker_interval)
            loop.run_until_complete(server.start(host, port))
            ready["server"] = server
        except BaseException as exc:
            ready["error"] = exc
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name=f"sim-server-{port}", daemon=True)
    thread.start()
    if not started.wait(60):
        raise TimeoutError("sim server did not start within 60 s")
    if "error" in ready:
        raise ready["error"]
    return ServerHandle(ready["server"], loop, thread, host)


async def serve_forever(
    config: VenueConfig, host: str, port: int, stop: asyncio.Event, ticker_interval: float = 1.0
) -> SimServer:
    """Run in the foreground until ``stop`` is set; saves the state on the way out."""
    server = SimServer(config, ticker_interval)
    await server.start(host, port)
    try:
        await stop.wait()
    finally:
        await server.stop()
    return server
