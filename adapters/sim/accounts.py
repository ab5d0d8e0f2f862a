"""Accounts, one-way positions and the margin model of the simulated exchange.

Margin model (cross margin, one USD collateral balance per account):

- ``unrealized_pnl`` of a position = ``qty * contract_size * (mark - entry_price)``, ``qty`` signed;
- ``equity`` = ``balance + sum(unrealized_pnl)``; realized PnL and fees go into ``balance``;
- ``initial_margin`` of a position = ``|qty| * contract_size * mark / leverage``, where ``leverage``
  is the account's preference for the symbol (default from the engine config, capped at the
  instrument's maximum);
- ``order_margin``: every open order that is **not** reduce-only reserves
  ``remaining * contract_size * reference_price / leverage`` (reference = limit price, else trigger
  price, else last price). Reduce-only orders reserve nothing because they can only release margin;
- ``available_margin`` = ``equity - initial_margin - order_margin``;
- ``maintenance_margin`` = ``|qty| * contract_size * mark * maintenance_rate`` (first tier of the
  venue's ``marginLevels``).

Liquidation price (documented simplification): the mark at which the account's equity equals the
maintenance margin of this position, holding every other position at its current mark and
treating their maintenance margin as spoken for. With ``E0`` = balance + the other positions'
unrealized PnL - their maintenance margin, ``q`` the signed quantity, ``c`` the contract size,
``e`` the entry price and ``m`` the maintenance rate::

    E0 + q*c*(P - e) = m*|q|*c*P   =>   P = (q*c*e - E0) / (q*c*(1 - m*sign(q)))

No liquidation price exists (``None``) when ``P <= 0`` (a long that cannot lose enough).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from adapters.sim.models import USD
from domain.models import AccountState, PositionSide, PositionSnapshot, Side
from domain.values import fast_init

ZERO = Decimal(0)
MONEY_QUANTUM = Decimal("0.00000001")


@fast_init
@dataclass(frozen=True, slots=True)
class Position:
    """A one-way position: ``qty`` is signed (long > 0, short < 0); zero means flat."""

    account_id: str
    symbol: str
    qty: Decimal = ZERO
    entry_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    opened_ts: int = 0
    updated_ts: int = 0

    @property
    def side(self) -> PositionSide | None:
        if self.qty > 0:
            return PositionSide.LONG
        if self.qty < 0:
            return PositionSide.SHORT
        return None

    def unrealized(self, mark: Decimal, contract_size: Decimal) -> Decimal:
        return self.qty * contract_size * (mark - self.entry_price)

    def to_dict(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "symbol": self.symbol,
            "qty": str(self.qty),
            "entry_price": str(self.entry_price),
            "realized_pnl": str(self.realized_pnl),
            "opened_ts": self.opened_ts,
            "updated_ts": self.updated_ts,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Position:
        return cls(
            account_id=data["account_id"],
            symbol=data["symbol"],
            qty=Decimal(data["qty"]),
            entry_price=Decimal(data["entry_price"]),
            realized_pnl=Decimal(data["realized_pnl"]),
            opened_ts=int(data["opened_ts"]),
            updated_ts=int(data["updated_ts"]),
        )


def apply_fill(
    position: Position,
    side: Side,
    qty: Decimal,
    price: Decimal,
    *,
    contract_size: Decimal,
    ts: int,
    entry_quantum: Decimal | None = None,
) -> tuple[Position, Decimal]:
    """The position after a fill and the PnL the fill realized.

    Adding to a position averages the entry price by quantity; reducing realizes PnL on the closed
    quantity at the old entry; a fill that crosses zero closes the old side and opens the rest at
    the fill price. The averaged entry is rounded half-even to ``entry_quantum`` when given, and
    realized PnL to 1e-8 USD, so balances stay short exact decimals.
    """
    signed = qty if side is Side.BUY else -qty
    old = position.qty
    new_qty = old + signed
    realized = ZERO
    if old == 0 or (old > 0) == (signed > 0):
        entry = (abs(old) * position.entry_price + qty * price) / abs(new_qty)
        if entry_quantum is not None and _exponent(entry) < _exponent(entry_quantum):
            entry = entry.quantize(entry_quantum)
        opened = ts if old == 0 else position.opened_ts
    else:
        closed = min(abs(old), qty)
        direction = Decimal(1) if old > 0 else Decimal(-1)
        realized = closed * (price - position.entry_price) * direction * contract_size
        realized = realized.quantize(MONEY_QUANTUM)
        if new_qty == 0:
            entry, opened = ZERO, 0
        elif (new_qty > 0) == (old > 0):
            entry, opened = position.entry_price, position.opened_ts
        else:
            entry, opened = price, ts
    updated = replace(
        position,
        qty=new_qty,
        entry_price=entry,
        realized_pnl=position.realized_pnl + realized,
        opened_ts=opened,
        updated_ts=ts,
    )
    return updated, realized


def _exponent(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return exponent if isinstance(exponent, int) else 0


def fee_for(qty: Decimal, price: Decimal, contract_size: Decimal, rate: Decimal) -> Decimal:
    """Fee in USD on the fill's notional, rounded half-even to 1e-8."""
    return (qty * price * contract_size * rate).quantize(MONEY_QUANTUM)


def liquidation_price(
    qty: Decimal,
    entry: Decimal,
    contract_size: Decimal,
    maintenance_rate: Decimal,
    other_equity: Decimal,
) -> Decimal | None:
    """See the module docstring; ``other_equity`` is ``E0``."""
    if qty == 0:
        return None
    sign = Decimal(1) if qty > 0 else Decimal(-1)
    denominator = qty * contract_size * (1 - maintenance_rate * sign)
    if denominator == 0:
        return None
    price = (qty * contract_size * entry - other_equity) / denominator
    return price if price > 0 else None


@dataclass(slots=True)
class AccountRecord:
    """Mutable per-account bookkeeping owned by the engine (never handed out)."""

    account_id: str
    balance: Decimal
    realized_pnl: Decimal = ZERO
    fees_paid: Decimal = ZERO
    leverage: dict[str, Decimal] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "balance": str(self.balance),
            "realized_pnl": str(self.realized_pnl),
            "fees_paid": str(self.fees_paid),
            "leverage": {k: str(v) for k, v in (self.leverage or {}).items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AccountRecord:
        return cls(
            account_id=data["account_id"],
            balance=Decimal(data["balance"]),
            realized_pnl=Decimal(data["realized_pnl"]),
            fees_paid=Decimal(data["fees_paid"]),
            leverage={k: Decimal(v) for k, v in data["leverage"].items()},
        )


@fast_init
@dataclass(frozen=True, slots=True)
class PositionView:
    """A position as queries return it, valued at the current mark."""

    account_id: str
    symbol: str
    qty: Decimal
    entry_price: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    leverage: Decimal
    initial_margin: Decimal
    maintenance_margin: Decimal
    liquidation_price: Decimal | None
    opened_ts: int
    updated_ts: int

    @property
    def side(self) -> PositionSide:
        return PositionSide.LONG if self.qty > 0 else PositionSide.SHORT

    @property
    def size(self) -> Decimal:
        return abs(self.qty)

    def to_snapshot(self) -> PositionSnapshot:
        return PositionSnapshot(
            symbol=self.symbol,
            side=self.side,
            qty=self.size,
            entry_price=self.entry_price,
            mark_price=self.mark_price,
            unrealized_pnl=self.unrealized_pnl,
            liquidation_price=self.liquidation_price,
            leverage=self.leverage,
        )


@fast_init
@dataclass(frozen=True, slots=True)
class AccountView:
    """Equity and margin of one account (model in the module docstring)."""

    account_id: str
    currency: str
    balance: Decimal
    unrealized_pnl: Decimal
    equity: Decimal
    initial_margin: Decimal
    order_margin: Decimal
    maintenance_margin: Decimal
    available_margin: Decimal
    realized_pnl: Decimal
    fees_paid: Decimal
    ts: int

    def to_account_state(self) -> AccountState:
        return AccountState(
            currency=self.currency,
            equity=self.equity,
            available_margin=self.available_margin,
            used_margin=self.initial_margin + self.order_margin,
            unrealized_pnl=self.unrealized_pnl,
            ts=self.ts,
            balances={USD: self.balance},
        )
