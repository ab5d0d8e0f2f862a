"""Retrying reads with exponential back-off and jitter; writes are never retried here.

A read that raises ``Temporary`` is tried again up to ``attempts`` times in all; the wait before
try ``n`` (1-based, after the first) is ``min(max_s, base_s * 2 ** (n - 1))`` scaled by a random
factor in ``[1 - jitter, 1]``, or the venue's ``retry_after`` when it gave one. The last
``Temporary`` is raised unchanged.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

from domain.errors import Temporary

T = TypeVar("T")
log = structlog.get_logger(__name__)


class RateLimited(Temporary):
    """The venue said slow down; ``retry_after`` (seconds) when it said how long."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4
    base_s: float = 0.2
    max_s: float = 2.0
    jitter: float = 0.5
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, attempt: int, error: Temporary) -> float:
        """Seconds to wait before try ``attempt + 1`` after ``error`` ended try ``attempt``."""
        if isinstance(error, RateLimited) and error.retry_after is not None:
            return min(self.max_s * 4, error.retry_after)
        raw = min(self.max_s, self.base_s * 2 ** (attempt - 1))
        return raw * (1 - self.jitter * self.rng.random())


def read_with_retry(what: str, fn: Callable[[], T], policy: RetryPolicy) -> T:
    """Run the read ``fn``; retry ``Temporary`` failures per ``policy``."""
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn()
        except Temporary as err:
            if attempt == policy.attempts:
                raise
            wait = policy.delay(attempt, err)
            log.warning(
                "read_retrying", what=what, attempt=attempt, wait_s=round(wait, 3), error=str(err)
            )
            policy.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover
