"""A cost-based request budget with a reserve that only urgent (protective) calls may use.

The venue meters private calls in cost units over a rolling window (Kraken Futures: 500 units
per 10 s; an order write costs 10, most reads 2 — the table below, overridable). The budget is a
token bucket refilled continuously. Ordinary calls wait until spending their cost would leave at
least ``reserve`` units; urgent calls (stops, flattening exits, their look-ups) only need their
own cost, so a burst of reads can never starve protection. A rate-limit answer from the venue
empties the bucket, which makes every caller back off until it refills.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

# cost units per call; unknown endpoints cost DEFAULT_COST
KRAKEN_FUTURES_COSTS: Mapping[str, int] = {
    "sendorder": 10,
    "editorder": 10,
    "cancelorder": 10,
    "cancelallorders": 25,
    "batchorder": 9,
    "accounts": 2,
    "openpositions": 2,
    "openorders": 2,
    "fills": 2,
    "orders/status": 1,
    "leveragepreferences": 2,
}
DEFAULT_COST = 2


class RequestBudget:
    """Thread-safe token bucket with an urgent-only reserve."""

    def __init__(
        self,
        *,
        capacity: float = 500.0,
        window_s: float = 10.0,
        reserve: float = 100.0,
        costs: Mapping[str, int] = KRAKEN_FUTURES_COSTS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 0 <= reserve < capacity:
            raise ValueError("the urgent reserve must be below the capacity")
        self.capacity = capacity
        self.rate = capacity / window_s
        self.reserve = reserve
        self.costs = dict(costs)
        self._clock = clock
        self._sleep = sleep
        self._tokens = capacity
        self._stamp = clock()
        self._lock = threading.Lock()

    def cost(self, endpoint: str) -> int:
        return self.costs.get(endpoint, DEFAULT_COST)

    def _refill(self, now: float) -> None:
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def acquire(self, endpoint: str, *, urgent: bool = False, timeout_s: float = 30.0) -> float:
        """Spend the endpoint's cost, waiting as needed; returns the seconds waited.

        Raises ``TimeoutError`` if the budget cannot be had within ``timeout_s``.
        """
        cost = self.cost(endpoint)
        floor = 0.0 if urgent else self.reserve
        started = self._clock()
        while True:
            with self._lock:
                now = self._clock()
                self._refill(now)
                missing = cost + floor - self._tokens
                if missing <= 0:
                    self._tokens -= cost
                    return now - started
                wait = missing / self.rate
            if now - started + wait > timeout_s:
                raise TimeoutError(f"request budget for {endpoint} not available in {timeout_s}s")
            self._sleep(wait)

    def rate_limited(self) -> None:
        """The venue said slow down: spend everything, so all callers wait for a refill."""
        with self._lock:
            self._refill(self._clock())
            self._tokens = 0.0

    @property
    def available(self) -> float:
        with self._lock:
            self._refill(self._clock())
            return self._tokens
