"""History from the venue's public charts API (``/api/charts/v1/trade/{product}/{tf}``).

A ready ``warmup`` for :class:`~adapters.marketdata.client.MarketDataFeed` that needs neither
ccxt nor credentials: plain HTTP, pages of at most 2000 candles (the venue's cap) from
``since`` on, oldest first, up to the candles closed by ``until``. ``from``/``to`` are epoch
seconds, ``time`` in the answer is ms.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping

from adapters.marketdata.timeframes import timeframe_ms
from domain.models import Candle

PAGE = 2000


class ChartsWarmup:
    """``ChartsWarmup(base_url, {unified: product_id})(symbol, timeframe, since_ms, until_ms)``."""

    def __init__(self, base_url: str, symbols: Mapping[str, str], timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.symbols = dict(symbols)
        self.timeout_s = timeout_s

    def __call__(self, symbol: str, timeframe: str, since_ms: int, until_ms: int) -> list[Candle]:
        step = timeframe_ms(timeframe)
        product = self.symbols[symbol]
        out: list[Candle] = []
        start = max(since_ms - since_ms % step, 0)
        while start + step <= until_ms:
            first_s = start // 1000
            last_s = first_s + PAGE * step // 1000 - 1
            url = f"{self.base_url}/api/charts/v1/trade/{product}/{timeframe}"
            query = f"?from={first_s}&to={last_s}"
            with urllib.request.urlopen(url + query, timeout=self.timeout_s) as response:
                payload = json.loads(response.read())
            rows = payload.get("candles") or []
            page = [_candle(symbol, timeframe, row) for row in rows]
            out.extend(c for c in page if since_ms <= c.open_time <= until_ms - step)
            if len(page) < PAGE and not payload.get("more_candles"):
                break
            start = page[-1].open_time + step if page else start + PAGE * step
        return out


def _candle(symbol: str, timeframe: str, row: Mapping[str, object]) -> Candle:
    return Candle(
        symbol,
        timeframe,
        int(str(row["time"])),
        float(str(row["open"])),
        float(str(row["high"])),
        float(str(row["low"])),
        float(str(row["close"])),
        float(str(row["volume"])),
    )
