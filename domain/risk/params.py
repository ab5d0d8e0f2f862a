"""Risk limits: the ``risk`` config section, one to one, plus the estimates sizing needs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from domain.errors import DomainError
from domain.params import params_from_mapping


class RiskConfigError(DomainError):
    """Risk parameters that do not fit together."""


@dataclass(frozen=True, slots=True)
class RiskParams:
    """Hard limits (config key = field name; defaults as in the ``risk`` section).

    ``risk_per_trade`` (0.005): equity fraction lost if the stop fills, the sizing basis.
    ``max_leverage`` (3.0): cap on open notional / equity; margin is computed at this leverage
    (or the instrument's, if lower).
    ``max_margin_util`` (0.5): cap on all positions' margin / equity.
    ``max_position_margin_frac`` (0.15): cap on one position's margin / equity.
    ``max_positions`` (5): open positions and working entries together.
    ``daily_loss_limit_frac`` (0.03): loss since the UTC day's start, as a fraction of that day's
    starting equity, that latches new entries off until the next UTC day.
    ``loss_streak_limit`` (4) consecutive losing trades on a symbol start a cooldown of
    ``cooldown_minutes`` (60.0) for that symbol.
    ``min_notional_usd`` (10.0): smallest entry notional (in the quote currency, USD for the
    supported venues). ``stale_after_s`` (60.0): market data older than this refuses entries.

    Not yet in the config section (defaults used until it gains them):
    ``max_loss_per_trade_frac`` (None = twice ``risk_per_trade``): cap on the estimated loss at
    the stop including fees and stop slippage, as a fraction of equity; refuses trades whose stop
    is so tight that slippage dominates.
    ``margin_buffer_frac`` (0.1): margin is reserved with this much headroom for the caps.
    ``fee_rate`` (0.0005): taker fee per side, counted in the loss at the stop.
    ``stop_slippage_frac`` (0.001): assumed slippage of a stop fill, as a fraction of its price.
    """

    risk_per_trade: float = 0.005
    max_leverage: float = 3.0
    max_margin_util: float = 0.5
    max_position_margin_frac: float = 0.15
    max_positions: int = 5
    daily_loss_limit_frac: float = 0.03
    loss_streak_limit: int = 4
    cooldown_minutes: float = 60.0
    min_notional_usd: float = 10.0
    stale_after_s: float = 60.0
    max_loss_per_trade_frac: float | None = None
    margin_buffer_frac: float = 0.1
    fee_rate: float = 0.0005
    stop_slippage_frac: float = 0.001

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.risk_per_trade <= self.max_loss_frac:
            problems.append("need 0 < risk_per_trade <= max_loss_per_trade_frac")
        if self.max_leverage < 1:
            problems.append("max_leverage must be >= 1")
        if not 0 < self.max_position_margin_frac <= self.max_margin_util < 1:
            problems.append("need 0 < max_position_margin_frac <= max_margin_util < 1")
        if self.max_positions < 1 or self.loss_streak_limit < 1:
            problems.append("max_positions and loss_streak_limit must be >= 1")
        if not self.risk_per_trade <= self.daily_loss_limit_frac < 1:
            problems.append("need risk_per_trade <= daily_loss_limit_frac < 1")
        negatives = (
            "cooldown_minutes",
            "min_notional_usd",
            "margin_buffer_frac",
            "fee_rate",
            "stop_slippage_frac",
        )
        if any(getattr(self, name) < 0 for name in negatives) or self.stale_after_s <= 0:
            problems.append(f"{', '.join(negatives)} must be >= 0 and stale_after_s > 0")
        if problems:
            raise RiskConfigError("; ".join(problems))

    @property
    def max_loss_frac(self) -> float:
        """The effective ``max_loss_per_trade_frac``."""
        if self.max_loss_per_trade_frac is None:
            return 2 * self.risk_per_trade
        return self.max_loss_per_trade_frac

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RiskParams:
        """From a config mapping (``settings.risk.model_dump()``); unknown keys refused."""
        return params_from_mapping(cls, values, RiskConfigError, "risk")
