"""Timeframes the feed builds and their UTC alignment.

Every supported timeframe divides a day, so buckets aligned to the Unix epoch are aligned to UTC
minute, hour and day boundaries (the venue's charts API aligns them the same way). Weekly
candles are not built: their anchor weekday is venue-specific.
"""

from __future__ import annotations

from domain.timeframes import TIMEFRAME_MS


def timeframe_ms(timeframe: str) -> int:
    """Length of ``timeframe`` in ms; ``ValueError`` for an unsupported one."""
    try:
        return TIMEFRAME_MS[timeframe]
    except KeyError:
        raise ValueError(
            f"unsupported timeframe {timeframe!r}; use one of {', '.join(TIMEFRAME_MS)}"
        ) from None


def floor_time(ts_ms: int, step_ms: int) -> int:
    """Start of the bucket of length ``step_ms`` that holds ``ts_ms``."""
    return ts_ms - ts_ms % step_ms


def normalise_timeframes(timeframes: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Validated, deduplicated, shortest first; ``1m`` is always built (the others derive
    from it)."""
    unique = {tf: timeframe_ms(tf) for tf in (*timeframes, "1m")}
    return tuple(sorted(unique, key=unique.__getitem__))
