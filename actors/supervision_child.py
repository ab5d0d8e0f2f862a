"""The child side of supervision: failure reports, a guarded start and a built-in heartbeat.

A supervised actor subclasses :class:`SupervisedActor`. It never decides about its own restart; it
only reports. Decisions:

- The link to the supervisor (the child's name and a ``report`` callable) is handed over
  implicitly: the supervisor binds it in a context variable while it calls the child's factory, and
  ``SupervisedActor.__init__`` (which pykka runs in the caller's thread) picks it up. Factories stay
  ``Callable[[], ActorRef]`` and constructors need no supervision arguments; an explicit
  ``supervision=`` keyword wins, and an actor started outside a supervisor runs unsupervised
  (failures are only logged).
- ``on_start`` and ``on_failure`` are owned by this class; a subclass that overrides them is
  rejected at class creation. Override ``on_start_guarded`` and ``on_failure_cleanup`` instead.
- A subclass's own ``on_receive`` is wrapped at class creation so that :class:`Heartbeat` is
  answered before the subclass sees anything; subclasses never handle it.
- Only ``tell`` handlers and the start can fail the actor: an exception in an ``ask`` handler goes
  back to the caller and the actor keeps running (pykka semantics).
- Reports carry the traceback as plain text, never frame locals (they may hold credentials).
- Actors run on daemon threads: a handler stuck forever must not keep a dead process alive.
"""

from __future__ import annotations

import functools
import time
import traceback as tb_module
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar

import pykka
import structlog

log = structlog.get_logger(__name__)

_MAX_TRACEBACK_CHARS = 8000


@dataclass(frozen=True, slots=True)
class ChildFailed:
    """A child's report that it died; ``actor_urn`` tells which incarnation."""

    name: str
    error: str
    traceback: str
    actor_urn: str = ""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A liveness probe, sent with ``ask``."""

    seq: int = 0


@dataclass(frozen=True, slots=True)
class HeartbeatReply:
    """The answer to :class:`Heartbeat`; ``at`` is the child's ``time.monotonic()``."""

    name: str
    at: float
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Escalated:
    """A child exceeded its restart budget; the receiver latches the kill switch and alerts."""

    reason: str
    child: str


@dataclass(frozen=True, slots=True)
class SupervisionLink:
    """What a child knows about its supervisor: its own name and where to report failure."""

    name: str
    report: Callable[[ChildFailed], None]


_LINK: ContextVar[SupervisionLink | None] = ContextVar("bastion_supervision_link", default=None)


@contextmanager
def supervised_as(link: SupervisionLink) -> Iterator[None]:
    """Make actors constructed inside the block report through ``link``."""
    token = _LINK.set(link)
    try:
        yield
    finally:
        _LINK.reset(token)


def failure_report(name: str, exc: BaseException, actor_urn: str = "") -> ChildFailed:
    """Build a :class:`ChildFailed` with a locals-free, bounded traceback text."""
    text = "".join(tb_module.format_exception(type(exc), exc, exc.__traceback__))
    if len(text) > _MAX_TRACEBACK_CHARS:
        text = "...\n" + text[-_MAX_TRACEBACK_CHARS:]
    return ChildFailed(name=name, error=repr(exc), traceback=text, actor_urn=actor_urn)


def _with_heartbeat(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    @functools.wraps(handler)
    def on_receive(self: SupervisedActor, message: Any) -> Any:
        if isinstance(message, Heartbeat):
            return self.heartbeat_reply(message)
        return handler(self, message)

    return on_receive


class SupervisedActor(pykka.ThreadingActor):
    """Base class for every supervised actor (see the module docstring for the contract)."""

    use_daemon_thread: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for hook, instead in (
            ("on_start", "on_start_guarded"),
            ("on_failure", "on_failure_cleanup"),
        ):
            if hook in cls.__dict__:
                msg = f"{cls.__name__} overrides {hook}(); override {instead}() instead"
                raise TypeError(msg)
        own = cls.__dict__.get("on_receive")
        if own is not None:
            cls.on_receive = _with_heartbeat(own)  # type: ignore[method-assign]

    def __init__(self, *, supervision: SupervisionLink | None = None) -> None:
        super().__init__()
        self.supervision: SupervisionLink | None = supervision or _LINK.get()
        self.supervised_name: str = (
            self.supervision.name if self.supervision is not None else type(self).__name__
        )

    # -- hooks for subclasses -------------------------------------------------------------------

    def on_start_guarded(self) -> None:
        """Rebuild state (from the store or the feed). An exception is reported and stops us."""

    def on_failure_cleanup(self, error: BaseException | None) -> None:
        """Release resources after a handler raised; runs after the failure was reported."""

    # -- owned pykka hooks ----------------------------------------------------------------------

    def on_start(self) -> None:
        """Run ``on_start_guarded``; on error report, then let pykka stop us before any message."""
        try:
            self.on_start_guarded()
        except Exception as exc:
            self._report(exc)
            raise

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Report the failure of a ``tell`` handler (pykka stops the actor right after)."""
        if exception_value is None and exception_type is not None:
            exception_value = exception_type()
        if exception_value is not None:
            if exception_value.__traceback__ is None and traceback is not None:
                exception_value = exception_value.with_traceback(traceback)
            self._report(exception_value)
        try:
            self.on_failure_cleanup(exception_value)
        except Exception as exc:  # cleanup must not hide the original report
            log.error("actor_cleanup_failed", actor=self.supervised_name, error=repr(exc))

    def on_receive(self, message: Any) -> Any:
        """Answer :class:`Heartbeat`; anything else goes to pykka's default (a warning)."""
        if isinstance(message, Heartbeat):
            return self.heartbeat_reply(message)
        return super().on_receive(message)

    def heartbeat_reply(self, message: Heartbeat) -> HeartbeatReply:
        return HeartbeatReply(name=self.supervised_name, at=time.monotonic(), seq=message.seq)

    def _report(self, exc: BaseException) -> None:
        report = failure_report(self.supervised_name, exc, self.actor_urn)
        if self.supervision is None:
            log.error(
                "actor_failed",
                actor=report.name,
                error=report.error,
                traceback=report.traceback,
                supervised=False,
            )
            return
        try:
            self.supervision.report(report)
        except Exception as err:  # the supervisor's liveness poll still notices the death
            log.error("actor_failure_report_lost", actor=report.name, error=repr(err))
