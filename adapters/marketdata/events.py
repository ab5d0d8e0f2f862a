"""What the feed tells its consumer. Frozen; symbols are ccxt unified symbols.

A consumer must start every symbol as stale and trade it only between a :class:`FeedFresh` and
the next :class:`FeedStale` (the feed reports transitions, not the initial state).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from domain.models import Candle
from domain.values import fast_init

CandleSource = Literal["live", "rest"]


@fast_init
@dataclass(frozen=True, slots=True)
class CandleClosed:
    """A closed candle. ``source`` is ``rest`` for warm-up and gap repair, ``live`` when built
    from the trade feed (higher timeframes: ``live`` when aggregated after start-up)."""

    symbol: str
    timeframe: str
    candle: Candle
    source: CandleSource = "live"


@dataclass(frozen=True, slots=True)
class MarkPrice:
    """The venue's mark price from the ticker feed; ``ts`` is the venue's time in ms."""

    symbol: str
    price: Decimal
    ts: int


@dataclass(frozen=True, slots=True)
class FeedStale:
    """No message for ``symbol`` since ``since_ms`` (local clock) for longer than the threshold."""

    symbol: str
    since_ms: int


@dataclass(frozen=True, slots=True)
class FeedFresh:
    """Messages for ``symbol`` flow again (also sent on the first message after start)."""

    symbol: str


FeedEvent = CandleClosed | MarkPrice | FeedStale | FeedFresh
