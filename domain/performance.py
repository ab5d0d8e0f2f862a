"""Performance of a run over a time window: returns, risk-adjusted ratios, drawdown, exposure.

Pure functions over plain values, used by the backtester's report. The trade statistics (win
rate, profit factor, expectancy, average R, fees, funding) come from :mod:`domain.metrics`, the
same functions the live history report uses. Conventions:

- Times are epoch milliseconds (UTC). A day is 86,400,000 ms; days are UTC calendar days.
- Money stays an exact ``Decimal``; dimensionless figures (returns, ratios, shares) are
  ``float``. A figure that has no meaning for the input is ``None``, never 0, infinity or NaN.
- The equity curve is mark-to-market: each :class:`EquityPoint` is the account's equity
  (cash plus unrealised PnL) at one instant. Its value at time ``t`` is that of the last sample
  at or before ``t``; samples with equal times count in the order given (the later one wins).
- Ratios are annualised with 365 periods a year by default (crypto trades every day), with a
  risk-free rate of 0.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

from domain.metrics import Drawdown, TradeResult, TradeStats, max_drawdown, summarize

DAY_MS = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SIDES = ("long", "short")
_MONEY_STATS = ("gross_profit", "gross_loss", "net_pnl", "fees", "funding", "expectancy", "avg_r")


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    """One position from entry to exit, as the report shows it.

    ``realized_pnl`` is net of ``fees`` and ``funding``, which are kept as recorded (their sums
    are reported, never subtracted again). ``side`` is ``"long"`` or ``"short"``. ``exit_price``
    is the average exit price, None when unknown; ``r_multiple`` is the PnL over the risk
    planned at entry, None without a plan.
    """

    position_id: str
    symbol: str
    side: str
    strategy: str | None
    opened_at: int
    closed_at: int
    qty: Decimal
    entry_price: Decimal
    exit_price: Decimal | None
    fees: Decimal
    funding: Decimal
    realized_pnl: Decimal
    r_multiple: Decimal | None
    exit_reason: str | None

    def __post_init__(self) -> None:
        if self.side not in _SIDES:
            raise ValueError(f"{self.position_id}: side must be long or short, not {self.side!r}")
        if self.closed_at < self.opened_at:
            raise ValueError(f"{self.position_id}: closed at {self.closed_at} before it opened")

    def result(self) -> TradeResult:
        """The trade as :func:`domain.metrics.summarize` sees it."""
        return TradeResult(self.realized_pnl, self.fees, self.funding, self.r_multiple)


@dataclass(frozen=True, slots=True)
class EquityPoint:
    """The account's mark-to-market equity at ``at`` (ms)."""

    at: int
    equity: Decimal


def window_curve(
    points: Sequence[EquityPoint], start_ms: int, end_ms: int, start_equity: Decimal
) -> list[EquityPoint]:
    """The curve of a run: ``start_equity`` at ``start_ms``, then the samples inside
    ``[start_ms, end_ms]`` in time order (samples outside the window are left out)."""
    inside = sorted((p for p in points if start_ms <= p.at <= end_ms), key=lambda p: p.at)
    return [EquityPoint(start_ms, start_equity), *inside]


def daily_closes(points: Sequence[EquityPoint], start_ms: int, end_ms: int) -> list[Decimal]:
    """Equity at the start of the window, then at every UTC midnight strictly inside it, then
    at ``end_ms`` (unless ``end_ms`` is itself a midnight, already counted); [] without samples.

    The equity at an instant is the last sample at or before it, or the first sample when
    there is none before (the curve is taken as flat before its first sample). A day's close
    is the equity as of the instant the day ends, so a sample stamped exactly at midnight
    closes the day before. Days without a sample carry the last value forward (a return of 0).
    A window that starts or ends inside a day gives a partial first or last day; one with
    ``end_ms <= start_ms`` gives only the value at the start. ``points`` may come in any order.
    """
    ordered = sorted(points, key=lambda p: p.at)
    if not ordered:
        return []
    instants = [start_ms]
    midnight = (start_ms // DAY_MS + 1) * DAY_MS
    while midnight < end_ms:
        instants.append(midnight)
        midnight += DAY_MS
    if end_ms > start_ms:
        instants.append(end_ms)
    closes: list[Decimal] = []
    index = 0  # ordered[index - 1] is the last sample at or before the current instant
    for instant in instants:
        while index < len(ordered) and ordered[index].at <= instant:
            index += 1
        closes.append(ordered[max(index - 1, 0)].equity)
    return closes


def period_returns(values: Sequence[Decimal]) -> list[float]:
    """Simple returns ``v[i] / v[i-1] - 1`` of consecutive values.

    A return from a value at or below zero has no meaning (the account is gone), so the series
    stops at the first such value: ``[100, 50, 0, 0]`` gives ``[-0.5, -1.0]``.
    """
    returns: list[float] = []
    for previous, current in pairwise(values):
        if previous <= 0:
            break
        returns.append(float(current / previous - 1))
    return returns


def sharpe(returns: Sequence[float], periods_per_year: int = 365) -> float | None:
    """Annualised Sharpe ratio: mean / sample standard deviation (ddof=1) * sqrt(periods),
    risk-free rate 0. None with fewer than 2 returns or when the returns do not vary."""
    if len(returns) < 2:
        return None
    deviation = statistics.stdev(returns)  # exact for equal values: 0, not a rounding residue
    if deviation == 0:
        return None
    return _finite(statistics.fmean(returns) / deviation * math.sqrt(periods_per_year))


def sortino(returns: Sequence[float], periods_per_year: int = 365) -> float | None:
    """Annualised Sortino ratio: mean / downside deviation * sqrt(periods), target 0.

    The downside deviation is ``sqrt(mean over ALL periods of min(r, 0) ** 2)`` (periods
    without a loss count as 0, they are not left out). None with fewer than 2 returns or when
    no return is negative (nothing to measure the downside on).
    """
    if len(returns) < 2 or not any(r < 0 for r in returns):
        return None
    downside = math.sqrt(math.fsum(min(r, 0.0) ** 2 for r in returns) / len(returns))
    return _finite(statistics.fmean(returns) / downside * math.sqrt(periods_per_year))


def total_return(start: Decimal, end: Decimal) -> float | None:
    """``end / start - 1``; None when ``start <= 0`` (no capital to return on)."""
    if start <= 0:
        return None
    return float(end / start - 1)


def cagr(start: Decimal, end: Decimal, days: float) -> float | None:
    """Compound annual growth rate ``(end / start) ** (365 / days) - 1``.

    ``end <= 0`` gives -1.0 (everything lost). None when ``start <= 0`` or ``days <= 0``, and
    when the figure overflows a float (a large gain over a very short window).
    """
    if start <= 0 or days <= 0:
        return None
    if end <= 0:
        return -1.0
    try:
        return _finite(math.pow(float(end / start), 365 / days) - 1)
    except OverflowError:
        return None


def calmar(cagr: float | None, max_drawdown_fraction: float | None) -> float | None:
    """CAGR over the maximum drawdown (as a fraction); None if either is unknown or the
    drawdown is not positive (a curve that never fell)."""
    if cagr is None or max_drawdown_fraction is None or max_drawdown_fraction <= 0:
        return None
    return _finite(cagr / max_drawdown_fraction)


def exposure(intervals: Sequence[tuple[int, int]], start_ms: int, end_ms: int) -> float | None:
    """Share of ``[start_ms, end_ms]`` during which at least one position was open.

    The ``(opened_at, closed_at)`` intervals are clipped to the window and merged, so
    overlapping positions count once; intervals outside the window or empty add nothing.
    None when ``end_ms <= start_ms``.
    """
    if end_ms <= start_ms:
        return None
    clipped = sorted((max(a, start_ms), min(b, end_ms)) for a, b in intervals)
    covered = 0
    reach = start_ms  # everything before reach is already counted
    for opened, closed in clipped:
        begin = max(opened, reach)
        if closed > begin:
            covered += closed - begin
            reach = closed
    return covered / (end_ms - start_ms)


def trades_per_day(count: int, start_ms: int, end_ms: int) -> float | None:
    """``count`` over the window's length in days; None when ``end_ms <= start_ms``."""
    if end_ms <= start_ms:
        return None
    return count / ((end_ms - start_ms) / DAY_MS)


@dataclass(frozen=True, slots=True)
class Performance:
    """Every summary figure of a run over ``[start_ms, end_ms]`` (see :func:`performance`).

    ``max_drawdown`` is the mark-to-market equity curve's; ``return_periods`` is the number of
    daily returns behind Sharpe and Sortino. ``trades`` holds the trade statistics; its own
    ``max_drawdown`` (over closed-trade equity) is not part of :meth:`to_dict`.
    """

    start_ms: int
    end_ms: int
    start_equity: Decimal
    end_equity: Decimal
    total_return: float | None
    cagr: float | None
    sharpe: float | None
    sortino: float | None
    calmar: float | None
    max_drawdown: Drawdown
    exposure: float | None
    trades_per_day: float | None
    return_periods: int
    trades: TradeStats

    @property
    def days(self) -> float:
        """Length of the window in days (fractional)."""
        return (self.end_ms - self.start_ms) / DAY_MS

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: money and R as decimal strings, ratios as floats or None, times as ms and
        ISO-8601 UTC. ``max_drawdown`` is the equity curve's."""
        stats = self.trades
        return {
            "window": {
                "start": self.start_ms,
                "end": self.end_ms,
                "start_utc": iso_utc(self.start_ms),
                "end_utc": iso_utc(self.end_ms),
                "days": self.days,
            },
            "start_equity": decimal_text(self.start_equity),
            "end_equity": decimal_text(self.end_equity),
            "total_return": self.total_return,
            "cagr": self.cagr,
            "sharpe": self.sharpe,
            "sortino": self.sortino,
            "calmar": self.calmar,
            "return_periods": self.return_periods,
            "max_drawdown": {
                "amount": decimal_text(self.max_drawdown.amount),
                "fraction": self.max_drawdown.fraction,
            },
            "exposure": self.exposure,
            "trades_per_day": self.trades_per_day,
            "trade_count": stats.count,
            "wins": stats.wins,
            "losses": stats.losses,
            "breakeven": stats.breakeven,
            "win_rate": stats.win_rate,
            "profit_factor": stats.profit_factor,
            **{name: decimal_text(getattr(stats, name)) for name in _MONEY_STATS},
        }


def performance(
    trades: Sequence[ClosedTrade],
    equity: Sequence[EquityPoint],
    *,
    start_ms: int,
    end_ms: int,
    start_equity: Decimal,
) -> Performance:
    """Summarise a run: the trades it closed and its equity curve over ``[start_ms, end_ms]``.

    - The curve is :func:`window_curve`: ``start_equity`` at ``start_ms``, then the samples
      inside the window. Its last value is the end equity, from
      which come the total return and the CAGR (over the window's length in days).
    - The maximum drawdown is measured on that mark-to-market curve, so it includes open
      losses that later recovered, unlike a drawdown over closed trades.
    - Sharpe and Sortino use the daily returns of :func:`daily_closes` over the window.
    - Trade statistics come from :func:`domain.metrics.summarize` over the trades ordered by
      ``(closed_at, position_id)``; the trades are taken as given (the caller passes those of
      the window), and so are the exposure and the trades per day.
    """
    curve = window_curve(equity, start_ms, end_ms, start_equity)
    end_equity = curve[-1].equity
    drawdown = max_drawdown([p.equity for p in curve])
    returns = period_returns(daily_closes(curve, start_ms, end_ms))
    growth = cagr(start_equity, end_equity, (end_ms - start_ms) / DAY_MS)
    ordered = sorted(trades, key=lambda t: (t.closed_at, t.position_id))
    return Performance(
        start_ms=start_ms,
        end_ms=end_ms,
        start_equity=start_equity,
        end_equity=end_equity,
        total_return=total_return(start_equity, end_equity),
        cagr=growth,
        sharpe=sharpe(returns),
        sortino=sortino(returns),
        calmar=calmar(growth, drawdown.fraction),
        max_drawdown=drawdown,
        exposure=exposure([(t.opened_at, t.closed_at) for t in ordered], start_ms, end_ms),
        trades_per_day=trades_per_day(len(ordered), start_ms, end_ms),
        return_periods=len(returns),
        trades=summarize((t.result() for t in ordered), start_equity),
    )


def iso_utc(ms: int) -> str:
    """A time in ms as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC, millisecond precision)."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def decimal_text(value: Decimal | None) -> str | None:
    """An exact decimal as plain text without exponent or trailing zeros (``"12.5"``)."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
