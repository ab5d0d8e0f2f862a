"""Performance statistics of closed trades: win rate, profit factor, drawdown, expectancy, R.

Pure functions over plain values, shared by the history report and the backtester. Conventions:

- Input PnL is each trade's realised PnL net of fees and funding, in the settlement currency,
  as an exact ``Decimal``; a trade sequence is in the order the trades closed (drawdown depends
  on it, nothing else does).
- A trade with ``pnl > 0`` is a win, ``pnl < 0`` a loss. A break-even trade (``pnl == 0``) is
  neither, but it is a trade: it counts in ``count`` and in the denominators of the win rate
  and the expectancy, so scratch trades pull the win rate down rather than vanish from it.
- Money and R come out as ``Decimal`` (exact, same units as the input); dimensionless ratios
  (win rate, profit factor, drawdown fraction) as ``float``.
- A statistic that has no meaning for the input is ``None``, never 0 or infinity: the win rate,
  expectancy and average R of no trades; the profit factor when nothing was lost (including
  no trades at all); the average R when no trade has an R multiple.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class TradeResult:
    """One closed trade as the statistics see it.

    ``pnl`` is realised and net of ``fees`` and ``funding``, which are kept as recorded (their
    sums are reported, never subtracted again). ``r_multiple`` is ``pnl`` over the risk planned
    at entry, None when there was no plan (an adopted position).
    """

    pnl: Decimal
    fees: Decimal = ZERO
    funding: Decimal = ZERO
    r_multiple: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Drawdown:
    """The deepest fall of a curve below its running peak.

    ``amount`` (>= 0) is the largest peak-to-trough fall in the curve's units. ``fraction`` is
    the largest fall relative to the peak it fell from, over peaks above zero (on an equity
    curve: the usual "max drawdown %"; on a cumulative-PnL curve starting at 0: the share of
    the best profit given back, which can exceed 1). The two may come from different episodes.
    ``fraction`` is None when the curve never rose above zero before falling.
    """

    amount: Decimal = ZERO
    fraction: float | None = None


@dataclass(frozen=True, slots=True)
class TradeStats:
    """Summary of a sequence of closed trades (see the module docstring for the conventions).

    ``gross_profit`` is the sum of the wins, ``gross_loss`` the sum of the losses as a positive
    amount, ``net_pnl = gross_profit - gross_loss``; ``fees`` and ``funding`` are the sums of
    what the trades recorded (already inside their PnL). ``max_drawdown`` is measured on the
    cumulative PnL curve, starting from the ``start`` given to :func:`summarize`.
    """

    count: int = 0
    wins: int = 0
    losses: int = 0
    win_rate: float | None = None
    gross_profit: Decimal = ZERO
    gross_loss: Decimal = ZERO
    net_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    funding: Decimal = ZERO
    profit_factor: float | None = None
    max_drawdown: Drawdown = Drawdown()
    expectancy: Decimal | None = None
    avg_r: Decimal | None = None

    @property
    def breakeven(self) -> int:
        """Trades that neither won nor lost (``pnl == 0``)."""
        return self.count - self.wins - self.losses


def win_rate(pnls: Iterable[Decimal]) -> float | None:
    """Wins over all trades (break-even trades included in the denominator); None if none."""
    values = list(pnls)
    if not values:
        return None
    return sum(1 for p in values if p > 0) / len(values)


def gross_profit_loss(pnls: Iterable[Decimal]) -> tuple[Decimal, Decimal]:
    """(sum of the wins, sum of the losses as a positive amount)."""
    profit = loss = ZERO
    for p in pnls:
        if p > 0:
            profit += p
        elif p < 0:
            loss -= p
    return profit, loss


def profit_factor(pnls: Iterable[Decimal]) -> float | None:
    """Gross profit over gross loss; None when nothing was lost (also for no trades).

    Only wins: None (unbounded, not infinity). Only losses: 0.0. Break-even trades add to
    neither side.
    """
    profit, loss = gross_profit_loss(pnls)
    return _ratio(profit, loss)


def expectancy(pnls: Iterable[Decimal]) -> Decimal | None:
    """Average PnL per trade; None for no trades.

    Equal to ``win_rate * average_win - loss_rate * average_loss`` with break-even trades in
    the trade count, which is the textbook definition.
    """
    values = list(pnls)
    if not values:
        return None
    return sum(values, ZERO) / len(values)


def average_r(r_multiples: Iterable[Decimal | None]) -> Decimal | None:
    """Mean of the R multiples that are known (None entries are skipped); None if none are."""
    known = [r for r in r_multiples if r is not None]
    if not known:
        return None
    return sum(known, ZERO) / len(known)


def equity_curve(pnls: Iterable[Decimal], start: Decimal = ZERO) -> list[Decimal]:
    """``start`` followed by the running total after each trade: ``[start, start + p1, ...]``.

    With ``start = 0`` this is the cumulative PnL curve; with the account's equity before the
    first trade it is the (closed-trade) equity curve.
    """
    curve = [start]
    for p in pnls:
        curve.append(curve[-1] + p)
    return curve


def max_drawdown(curve: Sequence[Decimal]) -> Drawdown:
    """The deepest fall of ``curve`` (equity or cumulative PnL, oldest first) below its
    running peak; a curve that never falls has ``Drawdown(0, None)``.

    Pass the curve with its starting point (see :func:`equity_curve`): a first losing trade is
    a drawdown from that start.
    """
    if not curve:
        return Drawdown()
    peak = curve[0]
    amount = ZERO
    fraction: float | None = None
    for value in curve:
        if value > peak:
            peak = value
            continue
        fall = peak - value
        amount = max(amount, fall)
        if peak > 0 and fall > 0:
            relative = float(fall / peak)
            fraction = relative if fraction is None else max(fraction, relative)
    return Drawdown(amount, fraction)


def summarize(trades: Iterable[TradeResult], start: Decimal = ZERO) -> TradeStats:
    """Every statistic of ``trades`` (oldest close first) in one :class:`TradeStats`.

    ``start`` is the curve's value before the first trade for the drawdown: 0 (the default)
    measures the drawdown of cumulative PnL; a backtester passes its starting equity to get a
    meaningful fraction.
    """
    items = list(trades)
    pnls = [t.pnl for t in items]
    profit, loss = gross_profit_loss(pnls)
    return TradeStats(
        count=len(items),
        wins=sum(1 for p in pnls if p > 0),
        losses=sum(1 for p in pnls if p < 0),
        win_rate=win_rate(pnls),
        gross_profit=profit,
        gross_loss=loss,
        net_pnl=profit - loss,
        fees=sum((t.fees for t in items), ZERO),
        funding=sum((t.funding for t in items), ZERO),
        profit_factor=_ratio(profit, loss),
        max_drawdown=max_drawdown(equity_curve(pnls, start)),
        expectancy=expectancy(pnls),
        avg_r=average_r(t.r_multiple for t in items),
    )


def _ratio(profit: Decimal, loss: Decimal) -> float | None:
    return None if loss == 0 else float(profit / loss)


__all__ = [
    "Drawdown",
    "TradeResult",
    "TradeStats",
    "average_r",
    "equity_curve",
    "expectancy",
    "gross_profit_loss",
    "max_drawdown",
    "profit_factor",
    "summarize",
    "win_rate",
]
