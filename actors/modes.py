"""Run modes: ``paper`` (the bundled emulator as a child process) and ``live`` (a real venue).

Both run the same system through :func:`serve`: store -> exchange -> recovery (the execution core
reloads the registry and settles unresolved orders) -> READY (sd_notify, ``bastion_ready``) ->
entries allowed. Health (``/healthz``, ``/metrics``) and the systemd watchdog follow the actors'
heartbeats. SIGTERM/SIGINT: STOPPING=1, new entries stop, the feed and actors stop, every stop
order stays at the exchange, exit 0.
"""

from __future__ import annotations

import resource
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pykka
import structlog

from actors.alerting import AlertRelay
from actors.control import until_ready
from actors.core import EXECUTION
from actors.history import open_history
from actors.messages import Audit
from actors.operations import Operations
from actors.runtime import Run, System, build_system
from actors.supervision_directory import ChildDown
from adapters import systemd
from adapters.exchange.ccxt_exchange import CcxtExchange
from adapters.health import HealthReport, HealthServer
from adapters.metrics import BastionMetrics
from adapters.settings import Settings
from adapters.sim.server.auth import PAPER_API_KEY, PAPER_API_SECRET
from adapters.sim.server.process import EmulatorProcess
from adapters.telegram.bot import TelegramControl
from domain.errors import StoreLocked
from persistence.history.models import EventKind
from persistence.store import PositionStore

log = structlog.get_logger(__name__)
HEARTBEAT_EVERY_S = 5.0
HEARTBEAT_TIMEOUT_S = 2.0
RECONCILE_RETRY_S = 1.0
STORE_LOCK_WAIT_S = 60.0
KRAKEN_FUTURES_WS = "wss://futures.kraken.com/ws/v1"


class Heartbeats(threading.Thread):
    """Asks every actor for a heartbeat on a period; the last answers feed health and watchdog."""

    def __init__(self, system: System) -> None:
        super().__init__(name="bastion-heartbeat", daemon=True)
        self.system = system
        self.last: dict[str, bool] = {}
        self._stop = threading.Event()

    def run(self) -> None:
        while True:
            self.last = self.system.supervisor.heartbeat(HEARTBEAT_TIMEOUT_S)
            if self._stop.wait(HEARTBEAT_EVERY_S):
                return

    def stop(self) -> None:
        self._stop.set()


def _health(system: System, beats: Heartbeats, symbols: list[str]) -> HealthReport:
    """Healthy only while every actor answered its last heartbeat and every symbol is fresh."""
    checks = {f"actor:{name}": ok for name, ok in beats.last.items()}
    if system.feed is not None:
        checks.update({f"feed:{s}": not system.feed.stale(s) for s in symbols})
    return HealthReport(checks)


class MetricsView:
    """Renders /metrics from the running system."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.metrics = BastionMetrics()
        self._restarts_seen: dict[str, int] = {}

    def render(self) -> str:
        m = self.metrics
        try:
            views = self.system.ask(EXECUTION, lambda core: core.views(), timeout_s=1.0)
        except Exception:
            views = []
        counts: dict[str, int] = {}
        for view in views:
            counts[view.state.value] = counts.get(view.state.value, 0) + 1
        m.set_positions(counts)
        while self.system.latencies:
            m.protection_latency.observe(self.system.latencies.pop(0))
        for name, total in self.system.supervisor.restarts().items():
            new = total - self._restarts_seen.get(name, 0)
            if new > 0:
                m.actor_restarts.inc(new, actor=name)
            self._restarts_seen[name] = total
        return m.registry.render()


PAPER_PROFILE = Path(__file__).resolve().parents[1] / "config.paper.yaml"


def config_path(config: Path | None, *, paper: bool) -> Path | None:
    """The configuration a command reads: the one given, else the paper profile for paper."""
    return PAPER_PROFILE if paper and config is None else config


def store_path(settings: Settings, mode: str) -> Path:
    """Where a mode keeps its position store: ``<data_dir>/<mode>/positions.db``."""
    return Path(settings.data_dir) / mode / "positions.db"


def paper_exchange_dir(settings: Settings) -> Path:
    """Where the paper emulator keeps its state: ``<data_dir>/paper/exchange``."""
    return store_path(settings, "paper").with_name("exchange")


def open_store(
    settings: Settings, mode: str, *, lock_wait_s: float = STORE_LOCK_WAIT_S
) -> PositionStore:
    """The mode's position store, opened first: a store that is unsafe stops startup before any
    connection is made (``StoreError`` -> exit 3).

    A store held by another process is waited for up to ``lock_wait_s``: an operator's tool
    (``run.py kill`` with the service down) holds it for seconds, and a service restarted by
    systemd meanwhile must not give up for good. Still held after that: exit 3.
    """
    path = store_path(settings, mode)
    deadline = time.monotonic() + lock_wait_s
    while True:
        try:
            return PositionStore.open(path)
        except StoreLocked:
            if time.monotonic() >= deadline:
                raise
            log.warning("position_store_busy", path=str(path), waiting_s=lock_wait_s)
            time.sleep(1.0)


def serve(
    settings: Settings,
    *,
    mode: str,
    store: PositionStore,
    port: CcxtExchange,
    ws_url: str | None,
    speed: float = 1.0,
    duration_s: float | None = None,
    stop: threading.Event | None = None,
    on_ready: Callable[[System], None] | None = None,
    config_path: Path | None = None,
) -> int:
    """Run until a signal, ``stop`` or ``duration_s``; returns the exit code."""
    stop = stop or threading.Event()
    _install_signal_handlers(stop)
    systemd.status(f"starting {mode}")
    venue_ids = port.venue_ids()
    history = open_history(settings, mode, store.path)
    relay = AlertRelay() if settings.telegram.token is not None else None
    system = build_system(
        settings,
        port,
        store,
        ws_url=ws_url,
        venue_ids=venue_ids,
        speed=speed,
        history=history,
        relay=relay,
    )
    if relay is not None:
        relay.tell(f"Bastion {mode} starting: reconciling with the venue")
    live = _wait_until_reconciled(system, stop)
    if live is None:  # stopped before the venue could be reconciled
        system.stop()
        return 0
    view = MetricsView(system)
    beats = Heartbeats(system)
    beats.start()
    telegram = _start_telegram(settings, mode, system, port, beats, relay, config_path)
    symbols = list(settings.universe.symbols)
    health = HealthServer(
        settings.health.host,
        settings.health.port,
        check=lambda: _health(system, beats, symbols),
        metrics=view.render,
    )
    bound = health.start()
    system.health_url = f"http://{settings.health.host}:{bound}"
    watchdog = systemd.Watchdog(healthy=system.supervisor.healthy)
    watchdog.start()
    view.metrics.ready.set(1)
    systemd.ready(f"{mode}: {live} managed positions, trading")
    log.info("system_ready", mode=mode, managed_positions=live, health_port=bound)
    if relay is not None:
        relay.tell(f"Bastion {mode} READY: {live} managed position(s), trading")
    if on_ready is not None:
        on_ready(system)
    started = time.monotonic()
    while not stop.wait(0.5):
        if duration_s is not None and time.monotonic() - started >= duration_s:
            break
    systemd.stopping()
    log.info("system_stopping", mode=mode)
    if relay is not None:
        relay.tell(f"Bastion {mode} shutting down; stops stay at the venue")
    watchdog.stop()
    beats.stop()
    health.stop()
    system.stop()
    if telegram is not None:
        telegram.stop()  # after the actors: their last alerts go out
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log.info("system_exited", mode=mode, peak_rss_mb=round(peak_mb, 1))
    return 0


def _start_telegram(  # noqa: PLR0917 - one call site
    settings: Settings,
    mode: str,
    system: System,
    port: CcxtExchange,
    beats: Heartbeats,
    relay: AlertRelay | None,
    config_path: Path | None,
) -> TelegramControl | None:
    """The Telegram transport, when a token is configured (commands and alerts)."""
    if relay is None:
        return None
    ops = Operations(
        system,
        settings,
        mode,
        port,
        config_path=config_path_for(config_path, mode),
        heartbeats=lambda: dict(beats.last),
    )
    history = system.history

    def audit(code: str, who: str, payload: dict[str, Any]) -> None:
        if history is not None:
            at = int(time.time() * 1000)
            history.tell(Audit(EventKind.OPERATOR_COMMAND, code, at, who=who, payload=payload))

    bot = TelegramControl(
        settings.telegram,
        ops.execute,
        relay.queue,
        symbols=list(settings.universe.symbols),
        audit=audit,
    )
    ops.on_reload = lambda fresh: bot.apply(fresh.telegram)
    system.operations = ops
    system.telegram = bot
    bot.start()
    return bot


def config_path_for(config: Path | None, mode: str) -> Path | None:
    """The configuration a reload reads: the one the service started with."""
    return config_path(config, paper=mode == "paper")


def _wait_until_reconciled(system: System, stop: threading.Event) -> int | None:
    """Reconciliation passes until one says READY; the number of managed positions then."""
    started = time.monotonic()
    while not stop.is_set():
        try:
            answer = system.directory.ask(EXECUTION, Run(until_ready()), timeout_s=120.0)
        except (ChildDown, pykka.Timeout) as err:  # restarting: the supervisor brings it back
            log.warning("reconciliation_unanswered", error=str(err))
            answer = {"ready": False}
        if answer["ready"]:
            return int(answer["registry"])
        waited = time.monotonic() - started
        systemd.status(f"reconciling with the venue ({waited:.0f}s)")
        log.warning("waiting_for_reconciliation", waited_s=round(waited, 1))
        stop.wait(RECONCILE_RETRY_S)
    return None


def _install_signal_handlers(stop: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("signal_received", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_paper(
    settings: Settings,
    *,
    speed: float,
    duration_s: float | None,
    stop: threading.Event | None = None,
    on_ready: Callable[[System], None] | None = None,
    config_path: Path | None = None,
) -> int:
    """Start the emulator (state under ``<data_dir>/paper/exchange``) and trade against it."""
    store = open_store(settings, "paper")
    state = paper_exchange_dir(settings)
    try:
        emulator = EmulatorProcess.start(state, speed=speed)
    except BaseException:
        store.close()
        raise
    try:
        port = CcxtExchange(
            "krakenfutures",
            api_key=PAPER_API_KEY,
            api_secret=PAPER_API_SECRET,
            api_url=emulator.url,
        )

        def ready(system: System) -> None:
            system.venue_url = emulator.url
            if on_ready is not None:
                on_ready(system)

        return serve(
            settings,
            mode="paper",
            store=store,
            port=port,
            ws_url=emulator.ws_url,
            speed=speed,
            duration_s=duration_s,
            stop=stop,
            on_ready=ready,
            config_path=config_path,
        )
    finally:
        emulator.stop()


def live_ws_url(settings: Settings) -> str:
    if settings.exchange.ws_url:
        return str(settings.exchange.ws_url)
    if settings.exchange.id != "krakenfutures":
        raise ValueError(f"set exchange.ws_url for {settings.exchange.id}")
    if settings.exchange.sandbox:
        return KRAKEN_FUTURES_WS.replace("futures.", "demo-futures.")
    return KRAKEN_FUTURES_WS
