"""Generic supervision for pykka actors: back-off restarts, a restart budget, escalation, heartbeat.

The supervisor is a plain object with one event thread, not an actor: children only enqueue
reports (``Supervisor.report``), so nothing a child does can raise inside the supervisor, and every
event is handled under a catch-all that logs ``supervisor_error`` and carries on. Decisions:

- Failure detection: a child reports :class:`ChildFailed` from ``on_failure`` or from a failed
  ``on_start_guarded`` (see :mod:`actors.supervision_child`); a factory that raises counts as a
  failure; a child found dead on two consecutive liveness polls without a report (a stop it did
  not announce) counts too. Reports from an older incarnation (other ``actor_urn``) are ignored.
- Back-off (:func:`backoff_delay`): exponential per restart in the window, jittered. The wait
  happens on a per-restart timer thread (``sleep`` is injectable; the default wakes early on
  ``stop()``), so a slow back-off never delays another child's restart. Restarts are counted in a
  sliding window of ``window_s`` per child.
- Budget: a failure that finds ``max_restarts`` restarts already in the window escalates:
  ``on_escalate(Escalated)`` is called at most once per child per window. A non-protected child
  then stays down until ``revive(name)``; a ``protected`` child keeps being restarted with the
  maximum back-off (protection must outlive the kill switch). Other children are untouched.
- Heartbeat: ``heartbeat(timeout_s)`` asks every child at once and waits on one shared deadline,
  so N children cost one timeout. A child that misses is reported ``False`` and logged
  ``heartbeat_missed``; ``healthy()`` is true only while every essential child answered the last
  round (it gates the systemd ``WATCHDOG=1``). By default a stuck child is only reported, because
  its thread may still wake up and finish its handler; systemd then restarts the whole process.
  ``ChildSpec.restart_after_missed=K`` opts in to restarting it after K consecutive misses: the old
  incarnation is fenced (its stop flag set, so it handles nothing after the current handler) and a
  new one is started. Use it only for actors whose in-flight handler is harmless to finish twice.
- Re-wiring: the supervisor keeps a :class:`Directory` current and calls ``on_restart(name, ref)``
  after each restart; senders should go through the directory rather than hold refs.
- ``stop()`` stops children in reverse start order, each bounded by ``stop_timeout_s``; a stuck
  child is fenced and abandoned (actors run on daemon threads).
"""

from __future__ import annotations

import itertools
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pykka
import structlog

from actors.supervision_child import (
    ChildFailed,
    Escalated,
    Heartbeat,
    HeartbeatReply,
    SupervisedActor,
    SupervisionLink,
    failure_report,
    supervised_as,
)
from actors.supervision_directory import ChildDown, Directory
from actors.supervision_spec import ChildSpec, backoff_delay

__all__ = [
    "ChildDown",
    "ChildFailed",
    "ChildSpec",
    "Directory",
    "Escalated",
    "Heartbeat",
    "HeartbeatReply",
    "SupervisedActor",
    "Supervisor",
    "backoff_delay",
]

log = structlog.get_logger(__name__)

_RUNNING = "running"
_PENDING = "pending"  # waiting for its back-off to elapse
_DOWN = "down"  # over budget, not protected: waits for revive()
_STOPPED = "stopped"
_DEAD_POLLS_BEFORE_FAILURE = 2


@dataclass(eq=False)
class _Child:
    spec: ChildSpec
    ref: pykka.ActorRef[Any] | None = None
    state: str = _PENDING
    epoch: int = 0
    window: deque[float] = field(default_factory=deque)
    total_restarts: int = 0
    escalated_at: float | None = None
    missed: int = 0
    answered: bool = False
    dead_polls: int = 0


@dataclass(frozen=True, slots=True)
class _RestartDue:
    name: str
    epoch: int


@dataclass(frozen=True, slots=True)
class _Stuck:
    name: str
    actor_urn: str
    missed: int


@dataclass(frozen=True, slots=True)
class _Revive:
    name: str


@dataclass(frozen=True, slots=True)
class _Marker:
    done: threading.Event


_STOP = object()


def _fence(ref: pykka.ActorRef[Any]) -> None:
    """Make an incarnation handle nothing more once its current handler returns."""
    ref.actor_stopped.set()
    pykka.ActorRegistry.unregister(ref)


class Supervisor:
    """Starts, watches and restarts a fixed set of children (see the module docstring)."""

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        *,
        on_escalate: Callable[[Escalated], None],
        on_restart: Callable[[str, pykka.ActorRef[Any]], None] | None = None,
        directory: Directory | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        sleep: Callable[[float], object] | None = None,
        stop_timeout_s: float = 5.0,
        poll_interval_s: float = 0.5,
    ) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate child names in {names}")
        self._children: dict[str, _Child] = {s.name: _Child(spec=s) for s in specs}
        self._on_escalate = on_escalate
        self._on_restart = on_restart
        self.directory = directory if directory is not None else Directory()
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._stopping = threading.Event()
        self._sleep = sleep if sleep is not None else self._stopping.wait
        self._stop_timeout_s = stop_timeout_s
        self._poll_interval_s = poll_interval_s
        self._lock = threading.RLock()
        self._events: queue.Queue[object] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._seq = itertools.count(1)
        self._heartbeat_done = False

    # -- lifecycle ------------------------------------------------------------------------------

    def start_children(self) -> None:
        """Start every child in spec order, then the event thread.

        Children start in the caller's thread before the event thread runs, so an early failure
        report is always handled against the ref it belongs to. A factory that raises is handled
        like any failure (retried with back-off), not raised to the caller.
        """
        if self._thread is not None:
            raise RuntimeError("supervisor already started")
        for child in self._children.values():
            self._start(child, restart=False)
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the event thread, then the children in reverse start order, each bounded."""
        self._stopping.set()
        self._events.put(_STOP)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self._stop_timeout_s)
        for child in reversed(list(self._children.values())):
            with self._lock:
                ref, child.ref, child.state = child.ref, None, _STOPPED
                child.answered = False
            self.directory.set(child.spec.name, None)
            if ref is not None:
                self._stop_ref(child.spec.name, ref)

    def _stop_ref(self, name: str, ref: pykka.ActorRef[Any]) -> None:
        try:
            ref.stop(block=True, timeout=self._stop_timeout_s)
        except pykka.Timeout:
            log.error("actor_stop_timeout", actor=name, timeout_s=self._stop_timeout_s)
            _fence(ref)
        except Exception as exc:
            log.error("actor_stop_failed", actor=name, error=repr(exc))
            _fence(ref)

    # -- queries --------------------------------------------------------------------------------

    def ref(self, name: str) -> pykka.ActorRef[Any] | None:
        """The current ref of ``name`` (``None`` while down); re-read it after every restart."""
        with self._lock:
            return self._children[name].ref

    def refs(self) -> dict[str, pykka.ActorRef[Any] | None]:
        with self._lock:
            return {name: c.ref for name, c in self._children.items()}

    def restarts(self) -> dict[str, int]:
        """Restarts performed per child since start (for ``bastion_actor_restarts_total``)."""
        with self._lock:
            return {name: c.total_restarts for name, c in self._children.items()}

    def escalated(self) -> dict[str, bool]:
        """Children whose restart budget was exceeded in their current window."""
        now = self._clock()
        with self._lock:
            return {
                name: c.escalated_at is not None and now - c.escalated_at < c.spec.window_s
                for name, c in self._children.items()
            }

    def healthy(self) -> bool:
        """True while the event thread runs and every essential child answered the last round."""
        if self._stopping.is_set() or self._thread is None or not self._thread.is_alive():
            return False
        with self._lock:
            return self._heartbeat_done and all(
                c.answered for c in self._children.values() if c.spec.essential
            )

    # -- commands -------------------------------------------------------------------------------

    def report(self, failure: ChildFailed) -> None:
        """Called from a child's thread; only enqueues, never raises."""
        self._events.put(failure)

    def revive(self, name: str) -> None:
        """Start a child that stayed down after escalation, with a fresh restart budget."""
        if name not in self._children:
            raise KeyError(name)
        self._events.put(_Revive(name))

    def drain(self, timeout_s: float) -> bool:
        """Wait until every event queued before this call has been handled (tests, shutdown)."""
        done = threading.Event()
        self._events.put(_Marker(done))
        return done.wait(timeout_s)

    def heartbeat(self, timeout_s: float) -> dict[str, bool]:
        """Ask all children at once; ``False`` if down or silent past the one shared deadline."""
        deadline = time.monotonic() + timeout_s
        seq = next(self._seq)
        with self._lock:
            targets = {name: c.ref for name, c in self._children.items()}
        futures: dict[str, pykka.Future[Any]] = {}
        result: dict[str, bool] = {}
        for name, ref in targets.items():
            result[name] = False
            if ref is not None:
                try:
                    futures[name] = ref.ask(Heartbeat(seq=seq), block=False)
                except Exception:  # dead between snapshot and ask: reported False
                    futures.pop(name, None)
        for name, future in futures.items():
            try:
                reply = future.get(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:  # Timeout, ActorDeadError: not answered
                continue
            result[name] = isinstance(reply, HeartbeatReply)
        self._record_heartbeat(targets, result)
        return result

    def _record_heartbeat(
        self, targets: dict[str, pykka.ActorRef[Any] | None], result: dict[str, bool]
    ) -> None:
        with self._lock:
            self._heartbeat_done = True
            for name, ok in result.items():
                child = self._children[name]
                child.answered = ok
                ref = targets[name]
                if ok or ref is None or child.ref is not ref:
                    child.missed = 0 if ok else child.missed
                    continue
                child.missed += 1
                log.warning("heartbeat_missed", actor=name, consecutive=child.missed)
                limit = child.spec.restart_after_missed
                if limit is not None and child.missed >= limit:
                    self._events.put(_Stuck(name, ref.actor_urn, child.missed))

    # -- event thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        last_poll = time.monotonic()
        while True:
            try:
                event = self._events.get(timeout=self._poll_interval_s)
            except queue.Empty:
                event = None
            if event is _STOP:
                return
            try:
                if event is not None:
                    self._dispatch(event)
                if time.monotonic() - last_poll >= self._poll_interval_s:
                    last_poll = time.monotonic()
                    self._poll_liveness()
            except Exception as exc:  # the supervisor must outlive any bug in one event
                log.error("supervisor_error", event=type(event).__name__, error=repr(exc))

    def _dispatch(self, event: object) -> None:
        if isinstance(event, _Marker):
            event.done.set()
        elif self._stopping.is_set():
            return
        elif isinstance(event, ChildFailed):
            self._on_reported(event)
        elif isinstance(event, _RestartDue):
            child = self._children[event.name]
            if child.state == _PENDING and child.epoch == event.epoch:
                self._start(child, restart=True)
        elif isinstance(event, _Stuck):
            child = self._children[event.name]
            ref = child.ref
            if child.state == _RUNNING and ref is not None and ref.actor_urn == event.actor_urn:
                error = f"no heartbeat answer for {event.missed} consecutive checks"
                self._fail(child, ChildFailed(event.name, error, "", event.actor_urn))
        elif isinstance(event, _Revive):
            child = self._children[event.name]
            if child.state == _DOWN:
                with self._lock:
                    child.window.clear()
                    child.escalated_at = None
                self._start(child, restart=True)

    def _on_reported(self, failure: ChildFailed) -> None:
        child = self._children.get(failure.name)
        if child is None:
            log.error("actor_failed", actor=failure.name, error=failure.error, unknown=True)
            return
        if child.state != _RUNNING or child.ref is None or child.ref.actor_urn != failure.actor_urn:
            log.info("stale_failure_report", actor=failure.name, error=failure.error)
            return
        self._fail(child, failure)

    def _poll_liveness(self) -> None:
        for child in self._children.values():
            ref = child.ref
            if child.state != _RUNNING or ref is None:
                continue
            if ref.is_alive():
                child.dead_polls = 0
                continue
            child.dead_polls += 1
            if child.dead_polls >= _DEAD_POLLS_BEFORE_FAILURE:
                error = "actor stopped without a failure report"
                self._fail(child, ChildFailed(child.spec.name, error, "", ref.actor_urn))

    # -- failure, back-off, restart -------------------------------------------------------------

    def _fail(self, child: _Child, failure: ChildFailed) -> None:
        spec, now = child.spec, self._clock()
        with self._lock:
            old, child.ref, child.state = child.ref, None, _PENDING
            child.missed = child.dead_polls = 0
            child.answered = False
            child.epoch += 1
            epoch = child.epoch
            while child.window and now - child.window[0] >= spec.window_s:
                child.window.popleft()
            in_window = len(child.window)
        self.directory.set(spec.name, None)
        if old is not None:
            _fence(old)
        log.error(
            "actor_failed",
            actor=spec.name,
            error=failure.error,
            traceback=failure.traceback,
            restarts_in_window=in_window,
        )
        over = in_window >= spec.max_restarts
        if over:
            self._escalate_once(child, now, in_window)
            if not spec.protected:
                with self._lock:
                    child.state = _DOWN
                log.error("actor_down", actor=spec.name, reason="restart budget exhausted")
                return
        delay = backoff_delay(spec, in_window, self._rng, at_max=over)
        with self._lock:
            child.window.append(now)
        log.warning("actor_restarting", actor=spec.name, delay_s=round(delay, 3), attempt=in_window)
        threading.Thread(
            target=self._restart_after,
            args=(spec.name, epoch, delay),
            name=f"supervisor-backoff-{spec.name}",
            daemon=True,
        ).start()

    def _escalate_once(self, child: _Child, now: float, in_window: int) -> None:
        spec = child.spec
        if child.escalated_at is not None and now - child.escalated_at < spec.window_s:
            return
        with self._lock:
            child.escalated_at = now
        reason = f"{in_window} restarts within {spec.window_s:g}s (limit {spec.max_restarts})"
        log.critical("actor_escalated", actor=spec.name, reason=reason, protected=spec.protected)
        try:
            self._on_escalate(Escalated(reason=reason, child=spec.name))
        except Exception as exc:
            log.error("escalation_callback_failed", actor=spec.name, error=repr(exc))

    def _restart_after(self, name: str, epoch: int, delay: float) -> None:
        try:
            self._sleep(delay)
        finally:
            self._events.put(_RestartDue(name, epoch))

    def _start(self, child: _Child, *, restart: bool) -> None:
        spec = child.spec
        link = SupervisionLink(name=spec.name, report=self.report)
        try:
            with supervised_as(link):
                ref = spec.factory()
        except Exception as exc:
            if restart:
                with self._lock:
                    child.total_restarts += 1
            self._fail(child, failure_report(spec.name, exc))
            return
        with self._lock:
            if self._stopping.is_set():
                ref_to_stop: pykka.ActorRef[Any] | None = ref
            else:
                ref_to_stop = None
                child.ref, child.state = ref, _RUNNING
                child.dead_polls = child.missed = 0
                if restart:
                    child.total_restarts += 1
        if ref_to_stop is not None:
            self._stop_ref(spec.name, ref_to_stop)
            return
        self.directory.set(spec.name, ref)
        if not issubclass(ref.actor_class, SupervisedActor):
            log.warning("actor_unsupervised_class", actor=spec.name, cls=ref.actor_class.__name__)
        if not restart:
            log.info("actor_started", actor=spec.name)
            return
        log.info("actor_restarted", actor=spec.name, restarts=child.total_restarts)
        if self._on_restart is not None:
            try:
                self._on_restart(spec.name, ref)
            except Exception as exc:
                log.error("restart_callback_failed", actor=spec.name, error=repr(exc))
