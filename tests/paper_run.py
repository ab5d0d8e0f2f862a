"""The paper service (``run_paper``: the emulator as a child process, the actors against it) on
a thread of the test's own, for tests that drive the whole system."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from actors.modes import run_paper
from actors.runtime import System
from adapters.settings import Settings

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0


@dataclass
class PaperRun:
    """The running system, and the service's exit code once it stopped."""

    system: System
    code: int | None = None


@contextmanager
def paper_running(
    settings: Settings,
    *,
    speed: float,
    on_ready: Callable[[System], None] | None = None,
) -> Iterator[PaperRun]:
    """Start paper trading, wait for READY (``on_ready`` runs then, on the service's thread),
    yield; on the way out stop it and wait for its exit code (``PaperRun.code``)."""
    ready, stop = threading.Event(), threading.Event()
    holder: dict[str, object] = {}

    def became_ready(system: System) -> None:
        if on_ready is not None:
            on_ready(system)
        holder["system"] = system
        ready.set()

    def serve() -> None:
        holder["code"] = run_paper(
            settings, speed=speed, duration_s=None, stop=stop, on_ready=became_ready
        )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        assert ready.wait(READY_TIMEOUT_S), "the paper system did not become ready"
        system = holder["system"]
        assert isinstance(system, System)
        run = PaperRun(system)
        yield run
    finally:
        stop.set()
        thread.join(STOP_TIMEOUT_S)
    code = holder.get("code")
    run.code = code if isinstance(code, int) else None
