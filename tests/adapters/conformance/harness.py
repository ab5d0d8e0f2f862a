"""What a port implementation provides to the conformance suite.

Each implementation under test supplies a :class:`VenueHarness`: the port itself plus the few
levers the suite needs to stage situations at its venue (prices, time, faults). The suite then
exercises only the port.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from domain.ports import ExchangePort

BTC = "BTC/USD:USD"
ETH = "ETH/USD:USD"


class Fault(StrEnum):
    """Faults staged at the venue; each hits the next ``times`` matching calls."""

    TIMEOUT_AFTER_ACCEPT = "timeout_after_accept"  # order sends: applied, the answer is lost
    TIMEOUT_BEFORE_ACCEPT = "timeout_before_accept"  # order sends: not applied, answer lost
    READ_5XX = "read_5xx"  # position reads: a server error, nothing served
    RATE_LIMIT_READ = "rate_limit_read"  # open-order reads: the venue's rate-limit answer
    RATE_LIMIT_WRITE = "rate_limit_write"  # order sends: rate-limited, nothing applied
    REJECT_STOP = "reject_stop"  # stop sends: rejected as "would trigger immediately"


class VenueHarness(Protocol):
    port: ExchangePort

    def set_price(self, symbol: str, price: Decimal) -> None:
        """Move the last and mark price of ``symbol`` now (resting orders match)."""
        ...

    def now_ms(self) -> int:
        """The venue's clock (simulated time)."""
        ...

    def advance_minutes(self, minutes: int) -> None:
        """Let simulated time pass, closing that many 1m candles."""
        ...

    def inject(self, fault: Fault, *, times: int = 1) -> None: ...

    def clear_faults(self) -> None: ...

    def pending_faults(self) -> int:
        """Staged fault hits not yet consumed (0 once every injected fault has fired)."""
        ...

    def slept(self) -> list[float]:
        """Back-off waits the port's retry policy asked for, in order (recorded, not slept)."""
        ...

    def close(self) -> None: ...
