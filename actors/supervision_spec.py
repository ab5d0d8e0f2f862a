"""What the supervisor needs to know about one child, and the back-off it applies.

Back-off: the n-th restart inside a child's window waits ``min(max, initial * 2**n)`` scaled by a
jitter factor in ``(0.5, 1]`` (so children failing together do not restart in lockstep). A
protected child over its budget always waits the maximum.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

ActorFactory = Callable[[], pykka.ActorRef[Any]]


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How to start one child and how much failure it is allowed."""

    name: str
    factory: ActorFactory
    essential: bool = True
    max_restarts: int = 5
    window_s: float = 60.0
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0
    protected: bool = False
    restart_after_missed: int | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("child name must not be empty")
        if self.max_restarts < 0 or self.window_s <= 0:
            raise ValueError(f"{self.name}: need max_restarts >= 0 and window_s > 0")
        if not 0 <= self.backoff_initial_s <= self.backoff_max_s:
            raise ValueError(f"{self.name}: need 0 <= backoff_initial_s <= backoff_max_s")
        if self.restart_after_missed is not None and self.restart_after_missed < 1:
            raise ValueError(f"{self.name}: restart_after_missed must be >= 1 or None")


def backoff_delay(spec: ChildSpec, attempt: int, rng: random.Random, *, at_max: bool) -> float:
    """Delay before restart number ``attempt`` (0-based within the window), jittered into (½, 1]."""
    base = spec.backoff_max_s if at_max else spec.backoff_initial_s * 2.0 ** min(attempt, 60)
    return min(base, spec.backoff_max_s) * (1.0 - 0.5 * rng.random())
