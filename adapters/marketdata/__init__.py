"""Market data from the venue's WebSocket v1: candles, mark prices, staleness.

Pure pieces: :class:`CandleBuilder` (trades to closed candles), :class:`StalenessTracker`,
:class:`FeedCore` (messages to events, repairs). I/O: :class:`MarketDataFeed` (``websockets``,
own thread or ``await run()``) and :class:`ChartsWarmup` (history over the public charts API).
"""

from adapters.marketdata.bench import measure_feed_throughput
from adapters.marketdata.candles import CandleBuilder
from adapters.marketdata.client import MarketDataFeed, WarmupFn, wall_ms
from adapters.marketdata.core import FeedConfig, FeedCore, FeedStats, RepairRequest
from adapters.marketdata.events import CandleClosed, FeedEvent, FeedFresh, FeedStale, MarkPrice
from adapters.marketdata.rest import ChartsWarmup
from adapters.marketdata.staleness import StalenessTracker
from adapters.marketdata.timeframes import TIMEFRAME_MS, floor_time, timeframe_ms

__all__ = [
    "TIMEFRAME_MS",
    "CandleBuilder",
    "CandleClosed",
    "ChartsWarmup",
    "FeedConfig",
    "FeedCore",
    "FeedEvent",
    "FeedFresh",
    "FeedStale",
    "FeedStats",
    "MarkPrice",
    "MarketDataFeed",
    "RepairRequest",
    "StalenessTracker",
    "WarmupFn",
    "floor_time",
    "measure_feed_throughput",
    "timeframe_ms",
    "wall_ms",
]
