"""Crash points: a test hook for the crash harness (``tests/crash/test_live_crash.py``).

Production code marks the moments where a crash is most dangerous with
``crash_point("before_send:sl")``. Nothing happens unless the environment variable
``BASTION_CRASH_POINT`` names that point when the process starts; then the process kills itself
with SIGKILL there, exactly as ``kill -9`` from outside would, with no chance to clean up.

Format: a comma-separated list of point names, each optionally followed by ``@N`` to fire on the
N-th time the point is reached (default: the first), e.g. ``before_send:sl`` or
``after_send:en@2,before_send:ex``. Points in use (``adapters/exchange/ccxt_exchange.py``):

- ``before_send:<role>``: the order is journaled ``sending`` and about to leave the process
  (roles ``en``, ``sl``, ``tp``, ``ex``; ``before_send:sl`` is the window between a fill and its
  stop);
- ``after_send:<role>``: the venue has answered, the answer is not yet recorded.

With ``BASTION_CRASH_ARM_FILE`` also set, the points are live only while that file exists (hits
while it is absent are not counted), so a harness can let the process start and pass its checks
before arming it.

The variables are read once, at import: with them unset, :func:`crash_point` is a single
dictionary lookup on an empty dictionary. Never set them outside tests.
"""

from __future__ import annotations

import os
import signal
import threading

ENV_VAR = "BASTION_CRASH_POINT"
ARM_FILE_VAR = "BASTION_CRASH_ARM_FILE"


def parse(spec: str) -> dict[str, int]:
    """``"a@2,b"`` -> ``{"a": 2, "b": 1}``: each armed point and the hit on which it fires."""
    armed: dict[str, int] = {}
    for item in spec.split(","):
        name, _, count = item.strip().partition("@")
        if not name:
            continue
        times = int(count) if count else 1
        if times < 1:
            raise ValueError(f"{ENV_VAR}: the count of {name!r} must be at least 1")
        armed[name] = times
    return armed


_ARMED: dict[str, int] = parse(os.environ.get(ENV_VAR, ""))
_ARM_FILE: str | None = os.environ.get(ARM_FILE_VAR) or None
_LOCK = threading.Lock()


def crash_point(name: str) -> None:
    """SIGKILL this process if ``name`` is armed and this is its firing hit; else nothing."""
    if name not in _ARMED:
        return
    if _ARM_FILE is not None and not os.path.exists(_ARM_FILE):
        return
    with _LOCK:
        _ARMED[name] -= 1
        fire = _ARMED[name] == 0
    if fire:
        os.kill(os.getpid(), signal.SIGKILL)


__all__ = ["ARM_FILE_VAR", "ENV_VAR", "crash_point", "parse"]
