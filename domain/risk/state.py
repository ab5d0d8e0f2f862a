"""Risk state: daily loss, its latch, loss streaks, cooldowns and the kill switch.

An immutable value changed only by the pure functions below, from equity readings, closed trades
and time (ms), so it can be persisted and replayed. Days are UTC days (``ts // 86_400_000``); the
first reading of a new day resets the daily figures and releases the daily latch. The kill switch
is not released by time: only :func:`release_kill_switch` (an operator's resume) clears it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from decimal import Decimal

from domain.risk.params import RiskParams
from domain.values import fast_init

DAY_MS = 86_400_000


def utc_day(ts_ms: int) -> int:
    return ts_ms // DAY_MS


@fast_init
@dataclass(frozen=True, slots=True)
class ClosedTrade:
    """A position's end: realised PnL (after fees) in the settlement currency."""

    symbol: str
    pnl: Decimal
    closed_at: int


@fast_init
@dataclass(frozen=True, slots=True)
class RiskState:
    """Everything risk remembers between decisions. Mappings are sorted tuples of pairs."""

    day: int = -1
    day_start_equity: Decimal | None = None
    realized_pnl: Decimal = Decimal(0)  # closed trades of ``day``
    daily_latched: bool = False
    kill_switch: bool = False
    loss_streaks: tuple[tuple[str, int], ...] = ()
    cooldowns: tuple[tuple[str, int], ...] = ()  # symbol -> cooldown end (ms)

    def streak(self, symbol: str) -> int:
        return dict(self.loss_streaks).get(symbol, 0)

    def cooldown_until(self, symbol: str) -> int | None:
        return dict(self.cooldowns).get(symbol)

    def daily_loss(self, equity: Decimal) -> Decimal:
        """Loss so far today: the larger of realised losses and the drop in equity."""
        drawdown = Decimal(0) if self.day_start_equity is None else self.day_start_equity - equity
        return max(-self.realized_pnl, drawdown, Decimal(0))

    def daily_limit_hit(self, equity: Decimal, params: RiskParams) -> bool:
        if self.daily_latched:
            return True
        if self.day_start_equity is None or self.day_start_equity <= 0:
            return False
        limit = self.day_start_equity * _fraction(params.daily_loss_limit_frac)
        return self.daily_loss(equity) >= limit


@functools.lru_cache(maxsize=64)
def _fraction(value: float) -> Decimal:
    """A configured fraction as the Decimal of its shortest repr (0.03, not 0.0299999...)."""
    return Decimal(repr(value))


def _set(
    pairs: tuple[tuple[str, int], ...], key: str, value: int | None
) -> tuple[tuple[str, int], ...]:
    items = dict(pairs)
    if value is None:
        items.pop(key, None)
    else:
        items[key] = value
    return tuple(sorted(items.items()))


def roll_day(state: RiskState, now_ms: int, equity: Decimal) -> RiskState:
    """Start a new UTC day if ``now_ms`` is in one: reset the daily figures and latch."""
    day = utc_day(now_ms)
    if day == state.day:
        if state.day_start_equity is None:
            return replace(state, day_start_equity=equity)
        return state
    return replace(
        state, day=day, day_start_equity=equity, realized_pnl=Decimal(0), daily_latched=False
    )


def record_equity(state: RiskState, equity: Decimal, now_ms: int, params: RiskParams) -> RiskState:
    """Take an equity reading; latches the daily limit when today's loss reaches it."""
    state = roll_day(state, now_ms, equity)
    if not state.daily_latched and state.daily_limit_hit(equity, params):
        state = replace(state, daily_latched=True)
    return state


def record_trade(
    state: RiskState, trade: ClosedTrade, equity: Decimal, params: RiskParams
) -> RiskState:
    """Account a closed trade: daily PnL, the symbol's loss streak and its cooldown.

    A loss extends the streak, anything else resets it. Reaching ``loss_streak_limit`` starts a
    cooldown of ``cooldown_minutes`` from the close and resets the streak. ``equity`` is the
    equity after the trade.
    """
    start_equity = equity - trade.pnl if utc_day(trade.closed_at) != state.day else equity
    state = roll_day(state, trade.closed_at, start_equity)
    state = replace(state, realized_pnl=state.realized_pnl + trade.pnl)
    streak = state.streak(trade.symbol) + 1 if trade.pnl < 0 else 0
    cooldowns = tuple((s, until) for s, until in state.cooldowns if until > trade.closed_at)
    if streak >= params.loss_streak_limit:
        until = trade.closed_at + round(params.cooldown_minutes * 60_000)
        cooldowns = _set(cooldowns, trade.symbol, until)
        streak = 0
    state = replace(
        state,
        loss_streaks=_set(state.loss_streaks, trade.symbol, streak or None),
        cooldowns=cooldowns,
    )
    return record_equity(state, equity, trade.closed_at, params)


def latch_kill_switch(state: RiskState) -> RiskState:
    return replace(state, kill_switch=True)


def release_kill_switch(state: RiskState) -> RiskState:
    return replace(state, kill_switch=False)
