"""Configuration of the simulated matching engine (frozen, serialisable)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Fees, slippage, liquidity and retention of the engine.

    - ``maker_fee`` / ``taker_fee``: rates on notional (venue-like defaults 0.02 % / 0.05 %).
    - Taker fills (market orders, marketable limits, fired stop/take-profit orders) pay
      ``slippage_bps + impact_bps_per_million * notional_usd / 1e6`` away from the last price,
      rounded to the tick against the taker; a limit price caps it.
    - ``participation``: the share of a candle's volume (or of the ``volume`` given to
      ``set_price``) that resting limit orders of one symbol may fill in total; ``None`` disables
      the limit (full fills). Taker fills are never volume-limited.
    - ``default_leverage``: the leverage preference of a symbol nobody set (capped at the
      instrument's maximum).
    - ``liquidation``: whether positions are liquidated when the mark crosses their liquidation
      price.
    - Retention caps keep snapshots bounded: closed orders, events and bars per symbol.
    """

    maker_fee: Decimal = Decimal("0.0002")
    taker_fee: Decimal = Decimal("0.0005")
    slippage_bps: Decimal = Decimal("1")
    impact_bps_per_million: Decimal = Decimal("5")
    participation: Decimal | None = Decimal("0.1")
    default_leverage: Decimal = Decimal(10)
    liquidation: bool = True
    max_cli_ord_id_length: int = 100
    max_closed_orders: int = 10_000
    max_events: int = 200_000
    max_bars: int = 20_000

    def to_dict(self) -> dict[str, Any]:
        return {
            "maker_fee": str(self.maker_fee),
            "taker_fee": str(self.taker_fee),
            "slippage_bps": str(self.slippage_bps),
            "impact_bps_per_million": str(self.impact_bps_per_million),
            "participation": None if self.participation is None else str(self.participation),
            "default_leverage": str(self.default_leverage),
            "liquidation": self.liquidation,
            "max_cli_ord_id_length": self.max_cli_ord_id_length,
            "max_closed_orders": self.max_closed_orders,
            "max_events": self.max_events,
            "max_bars": self.max_bars,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EngineConfig:
        participation = data["participation"]
        return cls(
            maker_fee=Decimal(data["maker_fee"]),
            taker_fee=Decimal(data["taker_fee"]),
            slippage_bps=Decimal(data["slippage_bps"]),
            impact_bps_per_million=Decimal(data["impact_bps_per_million"]),
            participation=None if participation is None else Decimal(participation),
            default_leverage=Decimal(data["default_leverage"]),
            liquidation=bool(data["liquidation"]),
            max_cli_ord_id_length=int(data["max_cli_ord_id_length"]),
            max_closed_orders=int(data["max_closed_orders"]),
            max_events=int(data["max_events"]),
            max_bars=int(data["max_bars"]),
        )
