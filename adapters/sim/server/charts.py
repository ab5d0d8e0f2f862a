"""The charts API: ``GET /api/charts/v1/{price_type}/{symbol}/{interval}?from=&to=`` (seconds).

Candles are aggregated from the engine's 1m bars (buckets aligned to the epoch). ``mark`` and
``spot`` candles equal the trade candles with volume 0.

Time window decision: ccxt computes ``to`` from the **wall clock** ("up to now"), while the
emulator's clock is simulated and may lag or lead it. A ``to`` within 5 minutes of the wall clock
or later is read as "up to the simulated now"; if the window then starts after the simulated now,
it is shifted back to end there (same length). Without ``from``/``to`` the latest candles are
returned. At most 2000 candles per answer (from the start of the window); ``more_candles`` tells
when the window held more.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from adapters.sim.models import Bar
from adapters.sim.server.httpio import HttpResponse

if TYPE_CHECKING:
    from adapters.sim.server.venue import Venue

MAX_CANDLES = 2000
NOW_SLACK_S = 300
RESOLUTIONS_S = {
    "1m": 60,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "4h": 14400,
    "12h": 43200,
    "1d": 86400,
    "1w": 604800,
}


def aggregate(bars: list[Bar], step_ms: int) -> list[Bar]:
    out: list[Bar] = []
    for bar in bars:
        bucket = bar.open_time - bar.open_time % step_ms
        if out and out[-1].open_time == bucket:
            last = out[-1]
            out[-1] = Bar(
                bucket,
                last.open,
                max(last.high, bar.high),
                min(last.low, bar.low),
                bar.close,
                last.volume + bar.volume,
            )
        else:
            out.append(Bar(bucket, bar.open, bar.high, bar.low, bar.close, bar.volume))
    return out


def _int(value: str | None) -> int | None:
    if value in (None, ""):
        return None
    return int(float(value))


def candles_response(
    venue: Venue, price_type: str, symbol: str, interval: str, params: dict[str, str]
) -> HttpResponse:
    engine = venue.engine
    symbol = symbol.upper()
    if price_type not in ("trade", "mark", "spot") or symbol not in engine.instruments:
        return HttpResponse.json({"error": "contractNotFound"}, 400)
    step_s = RESOLUTIONS_S.get(interval)
    if step_s is None:
        return HttpResponse.json({"error": "invalidArgument: resolution"}, 400)
    sim_now_s = engine.now // 1000
    start, end = _int(params.get("from")), _int(params.get("to"))
    if end is not None and end >= time.time() - NOW_SLACK_S:
        if start is not None and start > sim_now_s:
            start = sim_now_s - (end - start)
        end = sim_now_s
    candles = aggregate(engine.ohlcv(symbol), step_s * 1000)
    if start is not None:
        candles = [c for c in candles if c.open_time >= start * 1000]
    if end is not None:
        candles = [c for c in candles if c.open_time <= end * 1000]
    more = len(candles) > MAX_CANDLES
    open_ended = start is None and end is None
    candles = candles[-MAX_CANDLES:] if open_ended else candles[:MAX_CANDLES]
    volume_zero = price_type != "trade"
    rows: list[dict[str, Any]] = [
        {
            "time": c.open_time,
            "open": _plain(c.open),
            "high": _plain(c.high),
            "low": _plain(c.low),
            "close": _plain(c.close),
            "volume": 0 if volume_zero else _plain(c.volume),
        }
        for c in candles
    ]
    return HttpResponse.json({"candles": rows, "more_candles": more})


def _plain(value: Decimal) -> str:
    return format(value, "f")
