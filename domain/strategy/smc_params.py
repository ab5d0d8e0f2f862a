"""Parameters of the ``smc`` strategy: the keys of ``strategy.params`` when ``strategy.name`` is
``smc``. Every key is optional; the defaults below are the documented ones.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SmcParams:
    """Smart-Money-Concepts parameters (config key = field name).

    Structure (all timeframes):
      ``swing_left`` (5): bars left of a swing that must be strictly beyond it.
      ``swing_right`` (3): bars right of a swing that must not exceed it; also the confirmation
      delay in bars.
      ``atr_period`` (14): bars in the average true range used for sizes and buffers.
    Zones (entry timeframes):
      ``ob_lookback`` (10): bars searched back from the leg origin for the order-block candle.
      ``fvg_min_atr`` (0.1): smallest fair value gap, in ATRs.
      ``ote_low`` (0.618) / ``ote_high`` (0.786): retracement band of the optimal trade entry.
      ``require_discount`` (true): longs only below the leg's midpoint, shorts only above.
      ``min_leg_atr`` (1.5): smallest impulse leg, in ATRs.
      ``setup_max_bars`` (48): bars after a break during which its setup can still trigger.
      ``sweep_lookback`` (20): bars before the leg origin in which a liquidity sweep counts.
    Orders:
      ``stop_buffer_atr`` (0.25): stop distance beyond the invalidation swing, in ATRs.
      ``min_rr`` (2.0): smallest reward-to-risk of every target.
      ``max_targets`` (3): targets kept, nearest first.
      ``signal_expiry_bars`` (2): entry-timeframe bars a signal stays valid.
    Score (0..1): ``1 - sum(weights)`` for the base setup (bias, break, zone in OTE), plus
      ``weight_order_block`` (0.15), ``weight_fvg`` (0.15), ``weight_sweep`` (0.1) and
      ``weight_choch`` (0.1) when that confluence is present, plus ``weight_rr`` (0.1) scaled
      by how far the first target's reward-to-risk exceeds ``min_rr`` (full at twice ``min_rr``).
    """

    swing_left: int = 5
    swing_right: int = 3
    atr_period: int = 14
    ob_lookback: int = 10
    fvg_min_atr: float = 0.1
    ote_low: float = 0.618
    ote_high: float = 0.786
    require_discount: bool = True
    min_leg_atr: float = 1.5
    setup_max_bars: int = 48
    sweep_lookback: int = 20
    stop_buffer_atr: float = 0.25
    min_rr: float = 2.0
    max_targets: int = 3
    signal_expiry_bars: int = 2
    weight_order_block: float = 0.15
    weight_fvg: float = 0.15
    weight_sweep: float = 0.1
    weight_choch: float = 0.1
    weight_rr: float = 0.1

    def __post_init__(self) -> None:
        at_least_one = (
            "swing_left",
            "swing_right",
            "atr_period",
            "setup_max_bars",
            "max_targets",
            "signal_expiry_bars",
        )
        for name in at_least_one:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in (
            "ob_lookback",
            "sweep_lookback",
            "fvg_min_atr",
            "min_leg_atr",
            "stop_buffer_atr",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if not 0 < self.ote_low < self.ote_high < 1:
            raise ValueError("need 0 < ote_low < ote_high < 1")
        if self.min_rr <= 0:
            raise ValueError("min_rr must be positive")
        weights = self.weights
        if any(w < 0 for w in weights) or sum(weights) > 1:
            raise ValueError("score weights must be >= 0 and sum to at most 1")

    @property
    def weights(self) -> tuple[float, ...]:
        return (
            self.weight_order_block,
            self.weight_fvg,
            self.weight_sweep,
            self.weight_choch,
            self.weight_rr,
        )

    @property
    def base_score(self) -> float:
        return 1.0 - sum(self.weights)
