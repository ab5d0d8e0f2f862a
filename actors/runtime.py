"""The live actor system: cores in supervised pykka actors, a feed, a timer (ARCHITECTURE 2).

Startup order: config -> logging -> store -> exchange connectivity -> recovery (the execution
core reloads the registry and resolves orders left ``sending``/``unknown``) -> READY -> entries.
Shutdown (SIGTERM/SIGINT): new entries stop, the message being handled finishes, the store is
closed, and every stop stays at the exchange.

Time: cores get the *venue's* time, not the wall clock. :class:`VenueClock` follows the latest
venue timestamps seen on the feed and extrapolates between them at the venue's speed (1 for a
real venue; the emulator may run faster), so signal expiry and entry timeouts mean the same in
paper and live. An estimate made from a message the venue dated earlier runs behind the venue,
never ahead of it.

The timer-driven cores (:data:`TICK_TARGETS`) are beaten as a backtest's clock beats them
(:mod:`actors.backtest`), plus a regular beat for what happens between bars:

- at each bar close, before the bar's candles reach the analyzers
  (:mod:`actors.runtime_feed`);
- when the venue's time reaches a core's ``deadline``: the allocator's collect window
  (:class:`Ticker`);
- every ``tick_interval_s`` of wall time (:class:`Ticker`): fills are polled and exposure
  protected within that, whatever the bars do.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import structlog

from actors.alerting import RELAYED, AlertRelay
from actors.alerts import AlertsCore
from actors.allocator import AllocatorCore
from actors.analyzer import AnalyzerCore
from actors.audit import Observed, observed
from actors.control import Command, ControlCore
from actors.core import (
    ALLOCATOR,
    CONTROL,
    EXECUTION,
    HISTORY,
    PROTECTION,
    RISK,
    TELEGRAM,
    Core,
    Outbox,
    analyzer,
)
from actors.execution import ExecutionCore, ExecutionParams
from actors.history import HistoryWriter
from actors.messages import (
    KillSwitchChanged,
    SnapshotRequest,
    StopEntries,
    Tick,
)
from actors.protection import ProtectionCore
from actors.risk import RiskCore
from actors.runtime_feed import FeedRelay, start_feed
from actors.supervisor import ChildSpec, Directory, Escalated, SupervisedActor, Supervisor
from adapters.marketdata import MarketDataFeed
from adapters.settings import Settings
from domain.allocation import AllocatorParams
from domain.models import Instrument
from domain.ports import ExchangePort
from domain.risk import RiskParams
from domain.strategy import load_strategy
from persistence.control import ControlInbox
from persistence.store import PositionStore

log = structlog.get_logger(__name__)
TICK_TARGETS = (EXECUTION, PROTECTION, ALLOCATOR, RISK, CONTROL)
COMMAND_TIMEOUT_S = 120.0  # a kill with flatten waits for the venue to show the account flat
WAIT_FOR_VENUE_S = 30.0


class VenueClock:
    """Venue time in ms, never going backwards.

    Anchored on the newest venue timestamp observed and extrapolated at ``speed`` since then. A
    new observation re-anchors it even when the estimate had run ahead (the venue stalled); the
    clock then holds until the venue catches up instead of stepping back.
    """

    def __init__(self, speed: float = 1.0, wall: Callable[[], float] = time.time) -> None:
        self.speed = speed
        self._wall = wall
        self._lock = threading.Lock()
        self._anchor_ms = int(wall() * 1000)
        self._anchor_at = wall()
        self._observed = False
        self._last = 0

    def observe(self, venue_ms: int) -> None:
        with self._lock:
            if not self._observed:
                self._last = 0  # the wall-clock guess before any observation is discarded
            if not self._observed or venue_ms >= self._anchor_ms:
                self._anchor_ms, self._anchor_at, self._observed = venue_ms, self._wall(), True

    @property
    def observed(self) -> bool:
        """True once a venue timestamp has been seen (before that, ``now`` is wall time)."""
        return self._observed

    def now(self) -> int:
        with self._lock:
            estimate = self._anchor_ms + int((self._wall() - self._anchor_at) * 1000 * self.speed)
            self._last = max(self._last, estimate) if self._observed else estimate
            return self._last


@dataclass(frozen=True, slots=True)
class Call:
    """Run ``fn(core)`` on the actor's thread and answer with its result (``ask`` only)."""

    fn: Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Run:
    """Run a control command ``fn(core, now) -> (result, outbox)`` on the actor's thread: the
    outbox is delivered and the result is the answer (``ask`` only)."""

    fn: Callable[[Any, int], tuple[Any, list[tuple[str, object]]]]


class CoreActor(SupervisedActor):
    """Runs one core: messages in, the outbox out through the directory.

    The history writer (when there is one) sees every message the core sends that the audit
    trail records, and takes the outbox entries addressed to ``history``. A core that has a
    ``deadline`` (venue ms: the allocator's collect window) after a message is handed to ``wake``
    (:meth:`Ticker.wake_at`), so a beat comes when the venue's time reaches it.
    """

    def __init__(  # noqa: PLR0917 - the runtime's one call site names them
        self,
        build: Callable[[], Core],
        directory: Directory,
        clock: VenueClock,
        history: HistoryWriter | None = None,
        relay: AlertRelay | None = None,
        wake: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__()
        self._build = build
        self._directory = directory
        self._clock = clock
        self._history = history
        self._relay = relay
        self._wake = wake
        self.core: Core | None = None

    def on_start_guarded(self) -> None:
        self.core = self._build()  # a restart rebuilds the core from the store or the feed

    def on_receive(self, message: Any) -> Any:
        assert self.core is not None
        if isinstance(message, Call):
            return message.fn(self.core)
        now = self._clock.now()
        if isinstance(message, Run):
            result, outbox = message.fn(self.core, now)
            self._send(outbox, now)
            return result
        if isinstance(message, SnapshotRequest):
            views = getattr(self.core, "views", None)
            return views() if callable(views) else None
        self._send(self.core.handle(message, now), now)
        deadline = getattr(self.core, "deadline", None)
        if isinstance(deadline, int) and self._wake is not None:
            self._wake(deadline)
        return None

    def _send(self, outbox: Outbox, now: int) -> None:
        history, relay = self._history, self._relay
        name = self.core.name if self.core is not None else "?"
        if history is not None:
            # an alert relayed to Telegram is the same alert its raiser already sent
            for item in observed(name, now, [o for o in outbox if o[0] != TELEGRAM]):
                history.tell(item)
        if relay is not None:
            for item in observed(name, now, outbox, RELAYED):
                relay.tell(item.message)
        for destination, outgoing in outbox:
            if destination == HISTORY:
                if history is not None:
                    history.tell(outgoing)
            elif destination == TELEGRAM:
                if relay is not None:
                    relay.tell(outgoing)
            else:
                self._directory.tell(destination, outgoing)


class Ticker(threading.Thread):
    """Sends ``Tick`` to the timer-driven actors every ``interval_s`` of wall time, and once the
    venue's time reaches a moment asked for with :meth:`wake_at`.

    The wake-ups are for deadlines: the allocator's auction closes when its collect window ends
    (on the first message at or after it), so it is beaten then rather than at the next regular
    beat, a quarter of a second later in wall time: many venue seconds at a simulated venue's
    speed, against the minute a bar gives to act before the next one. A backtest's clock beats
    there too.
    """

    def __init__(self, directory: Directory, clock: VenueClock, interval_s: float) -> None:
        super().__init__(name="bastion-ticker", daemon=True)
        self._directory = directory
        self._clock = clock
        self._interval_s = interval_s
        self._changed = threading.Condition()
        self._wakes: list[int] = []  # a heap of venue times
        self._stopped = False

    def wake_at(self, venue_ms: int) -> None:
        """Beat once the venue's time reaches ``venue_ms`` (from any thread; repeats are one)."""
        with self._changed:
            if venue_ms not in self._wakes:
                heapq.heappush(self._wakes, venue_ms)
                self._changed.notify()

    def run(self) -> None:
        started = time.monotonic()
        beat_at = started + self._interval_s
        while True:
            with self._changed:
                if not self._stopped:
                    self._changed.wait(self._wait_s(beat_at))
                if self._stopped:
                    return
                woken = self._pop_due()
            if time.monotonic() >= beat_at:
                beat_at = time.monotonic() + self._interval_s
            elif not woken:
                continue
            if not self._clock.observed and time.monotonic() - started < WAIT_FOR_VENUE_S:
                continue  # wall time could be far from a simulated venue's: wait for the feed
            tick = Tick(self._clock.now())
            for name in TICK_TARGETS:
                self._directory.tell(name, tick)

    def _wait_s(self, beat_at: float) -> float:
        """Wall seconds until the next beat or the first wake-up, whichever is sooner."""
        wait = beat_at - time.monotonic()
        if self._wakes:
            ahead_ms = max(self._wakes[0] - self._clock.now(), 0)
            wait = min(wait, ahead_ms / 1000 / max(self._clock.speed, 1e-9))
        return max(wait, 0.0)

    def _pop_due(self) -> bool:
        """Drop the wake-ups the venue's time has reached; whether there were any."""
        now = self._clock.now()
        due = False
        while self._wakes and self._wakes[0] <= now:
            heapq.heappop(self._wakes)
            due = True
        return due

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify()


@dataclass
class Limits:
    """Risk and allocator parameters in force; a reload replaces them here and in the actors."""

    risk: RiskParams
    allocator: AllocatorParams

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            RiskParams.from_mapping(settings.risk.model_dump()),
            AllocatorParams.from_mapping(settings.allocator.model_dump()),
        )


@dataclass
class System:
    """Everything the runtime started, for health checks, status and shutdown."""

    supervisor: Supervisor
    directory: Directory
    clock: VenueClock
    ticker: Ticker
    feed: MarketDataFeed | None
    store: PositionStore
    latencies: list[float]
    venue_url: str = ""  # the emulator's URL in paper mode
    health_url: str = ""  # /healthz and /metrics, once serving
    history: HistoryWriter | None = None
    telegram: Any = None  # the Telegram transport, once started (adapters.telegram.bot)
    operations: Any = None  # its control layer (actors.operations.Operations)
    limits: Limits | None = None
    relay: AlertRelay | None = None  # alerts for the operators' chats
    feed_relay: FeedRelay | None = None  # the feed's events to the actors (with the feed)

    def ask(self, name: str, fn: Callable[[Any], Any], timeout_s: float = 5.0) -> Any:
        return self.directory.ask(name, Call(fn), timeout_s=timeout_s)

    def stop(self) -> None:
        """Stop entries first, then the feed and the timer, then the actors; stops stay put."""
        self.directory.tell(EXECUTION, StopEntries("shutdown"))
        if self.feed is not None:
            self.feed.stop()
        if self.feed_relay is not None:
            self.feed_relay.stop()
        self.ticker.stop()
        self.supervisor.stop()
        if self.history is not None:
            self.history.stop()  # after the actors: their last messages are written or spooled
        self.store.close()
        log.info("system_stopped")


def execution_params(settings: Settings) -> ExecutionParams:
    """Execution's parameters from the configuration (the service and the ops tools alike)."""
    return ExecutionParams(
        adopted_stop_distance_frac=Decimal(str(settings.protection.adopted_stop_distance_frac)),
        latched_on_start=settings.kill_switch.latched_on_start,
    )


def core_builders(
    settings: Settings,
    port: ExchangePort,
    store: PositionStore,
    limits: Limits,
    *,
    speed: float = 1.0,
    execution: ExecutionParams | None = None,
    on_latency: Callable[[float], None] | None = None,
) -> dict[str, Callable[[], Core]]:
    """How to build each pipeline core from the configuration, by destination name: the
    service runs each in a supervised actor, a backtest dispatches them synchronously. Control
    (the operators' inbox) is the service's own and not among them."""
    universe = list(settings.universe.symbols)
    instruments: dict[str, Instrument] = {s: port.instruments()[s] for s in universe}
    bias = tuple(settings.universe.bias_timeframes)
    entry = tuple(settings.universe.entry_timeframes)

    def strategy_for() -> Any:
        return load_strategy(settings.strategy.name, settings.strategy.params, bias, entry)

    exec_params = execution or execution_params(settings)
    builders: dict[str, Callable[[], Core]] = {
        EXECUTION: lambda: ExecutionCore(port, store, params=exec_params, on_latency=on_latency),
        PROTECTION: lambda: ProtectionCore.from_settings(port, settings.protection, speed=speed),
        AlertsCore.name: lambda: AlertsCore(
            window_ms=int(settings.protection.quarantine_alert_interval_s * 1000 * speed)
        ),
        # read at each (re)start: a restarted actor keeps limits an operator reloaded
        RISK: lambda: RiskCore(limits.risk, instruments),
        ALLOCATOR: lambda: AllocatorCore(limits.allocator, instruments, limits.risk),
    }
    for symbol in universe:
        inst = instruments[symbol]
        builders[analyzer(symbol)] = lambda s=symbol, i=inst: AnalyzerCore(
            s, i, strategy_for(), bias, entry
        )
    return builders


def build_system(
    settings: Settings,
    port: ExchangePort,
    store: PositionStore,
    *,
    ws_url: str | None,
    venue_ids: Mapping[str, str],
    speed: float = 1.0,
    tick_interval_s: float = 0.25,
    on_escalate: Callable[[Escalated], None] | None = None,
    history: HistoryWriter | None = None,
    relay: AlertRelay | None = None,
) -> System:
    """Build and start the actors (the store is already open and the port reachable)."""
    universe = list(settings.universe.symbols)
    clock = VenueClock(speed)
    directory = Directory()
    latencies: list[float] = []
    limits = Limits.of(settings)
    bias = tuple(settings.universe.bias_timeframes)
    entry = tuple(settings.universe.entry_timeframes)
    builders = core_builders(
        settings, port, store, limits, speed=speed, on_latency=latencies.append
    )
    inbox = ControlInbox(store.path.with_name("control.db"))
    interrupted = inbox.interrupt_running()
    if interrupted:
        log.warning("control_requests_interrupted", count=interrupted)

    def execute(command: Command) -> Any:
        return directory.ask(EXECUTION, Run(command), timeout_s=COMMAND_TIMEOUT_S)

    builders[CONTROL] = lambda: ControlCore(inbox, execute)

    def escalate(event: Escalated) -> None:
        log.error("supervisor_escalated", child=event.child, reason=event.reason)
        latch = KillSwitchChanged(True, f"escalated: {event.reason}", clock.now())
        directory.tell(EXECUTION, latch)
        directory.tell(RISK, latch)
        if history is not None:
            history.tell(Observed("supervisor", latch.at, latch))
        if relay is not None:
            relay.tell(
                f"CRITICAL: actor {event.child} keeps failing ({event.reason}); kill switch on"
            )
        if on_escalate is not None:
            on_escalate(event)

    ticker = Ticker(directory, clock, tick_interval_s)
    specs = [
        ChildSpec(
            name,
            lambda b=build: CoreActor.start(b, directory, clock, history, relay, ticker.wake_at),
            protected=name in (EXECUTION, PROTECTION),
        )
        for name, build in builders.items()
    ]
    supervisor = Supervisor(specs, on_escalate=escalate, directory=directory)
    supervisor.start_children()

    feed = feed_relay = None
    if ws_url is not None:
        feed_relay = FeedRelay(directory, TICK_TARGETS, barrier=Call(_nothing))
        sinks = (history, relay)
        feed = start_feed(
            ws_url,
            universe,
            venue_ids,
            bias + entry,
            port,
            directory,
            clock.observe,
            sinks,
            feed_relay,
        )
    ticker.start()
    return System(
        supervisor,
        directory,
        clock,
        ticker,
        feed,
        store,
        latencies,
        history=history,
        limits=limits,
        relay=relay,
        feed_relay=feed_relay,
    )


def _nothing(core: Core) -> None:
    """A no-op for ``Call``: its answer says the messages before it were handled."""


__all__ = [
    "Call",
    "CoreActor",
    "Limits",
    "Run",
    "System",
    "VenueClock",
    "build_system",
    "core_builders",
    "execution_params",
]
