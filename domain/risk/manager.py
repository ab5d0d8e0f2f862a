"""The risk manager: approve and size a signal into an :class:`OrderIntent`, or refuse it.

Checks run in a fixed order and the first failing one is the refusal (a :class:`RiskRefusal`
code for the audit log, plus a human-readable detail):

1. kill switch latched; 2. market data stale (or missing); 3. signal expired; 4. no equity;
5. daily loss limit (latched, or reached now); 6. the symbol's loss-streak cooldown;
7. the symbol already has a position or working entry; 8. max concurrent positions;
9. stop missing, on the wrong side or at the entry; 10. aggregate margin already at its cap;
11. sizing: the quantity losing ``risk_per_trade`` of equity at the stop (fees included), cut to
the leverage cap (open notional plus this one at most ``max_leverage`` times equity), the
single-position margin cap and the remaining aggregate margin (margin is notional over
``min(max_leverage, instrument.max_leverage)``, reserved with ``margin_buffer_frac`` headroom),
then rounded *down* to the lot; a result below the minimum size is refused, never rounded up
(``margin_cap`` or ``leverage_cap`` when that cap bound the size, ``size_below_minimum``
otherwise); 12. notional below ``min_notional_usd``;
13. estimated loss at the stop with stop slippage above ``max_loss_per_trade_frac``.

Approved intents are limit entries at the signal's entry price with the signal's stop; the
quantity is split over the targets in lot-rounded parts (fewer targets when parts would fall
below the minimum size; the last part takes the remainder).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from domain.models import Instrument, OrderIntent, OrderType, PositionSide, Signal
from domain.precision import Rounding
from domain.risk.params import RiskParams
from domain.risk.state import RiskState, roll_day
from domain.values import fast_init


class RiskRefusal(StrEnum):
    """Why an entry was refused (audit-log reason codes)."""

    KILL_SWITCH = "kill_switch"
    STALE_DATA = "stale_data"
    SIGNAL_EXPIRED = "signal_expired"
    NO_EQUITY = "no_equity"
    DAILY_LOSS_LIMIT = "daily_loss_limit"
    COOLDOWN = "cooldown"
    SYMBOL_HAS_POSITION = "symbol_has_position"
    MAX_POSITIONS = "max_positions"
    INVALID_STOP = "invalid_stop"
    MARGIN_CAP = "margin_cap"
    LEVERAGE_CAP = "leverage_cap"
    SIZE_BELOW_MINIMUM = "size_below_minimum"
    BELOW_MIN_NOTIONAL = "below_min_notional"
    MAX_LOSS_PER_TRADE = "max_loss_per_trade"


@fast_init
@dataclass(frozen=True, slots=True)
class RiskContext:
    """The account and market as the risk actor sees them at ``now_ms``.

    ``open_symbols``: symbols with a live position or a working entry. ``data_ts_ms``: time of
    the newest market data (mark price or closed candle) for the signal's symbol.
    ``used_margin`` is the venue's figure; ``open_notional`` the summed notional of open positions
    and working entries (the leverage cap is on exposure, which the venue's margin can understate
    when it runs at a higher leverage than ``max_leverage``).
    """

    now_ms: int
    equity: Decimal
    used_margin: Decimal
    open_symbols: frozenset[str]
    data_ts_ms: int | None
    open_notional: Decimal = Decimal(0)


@fast_init
@dataclass(frozen=True, slots=True)
class RiskDecision:
    """Exactly one of ``approved`` and ``refusal`` is set; ``detail`` explains either."""

    approved: OrderIntent | None
    refusal: RiskRefusal | None
    detail: str

    @property
    def ok(self) -> bool:
        return self.approved is not None


def _refuse(code: RiskRefusal, detail: str) -> RiskDecision:
    return RiskDecision(None, code, detail)


def _d(value: float) -> Decimal:
    return Decimal(repr(value))


def _gates(
    signal: Signal, ctx: RiskContext, state: RiskState, params: RiskParams
) -> RiskDecision | None:
    """Checks 1-8: everything that does not depend on the size."""
    if state.kill_switch:
        return _refuse(RiskRefusal.KILL_SWITCH, "kill switch is latched")
    max_age = round(params.stale_after_s * 1000)
    if ctx.data_ts_ms is None or ctx.now_ms - ctx.data_ts_ms > max_age:
        age = "none" if ctx.data_ts_ms is None else f"{ctx.now_ms - ctx.data_ts_ms} ms old"
        return _refuse(RiskRefusal.STALE_DATA, f"market data {age}, limit {max_age} ms")
    if signal.expires_at <= ctx.now_ms:
        return _refuse(RiskRefusal.SIGNAL_EXPIRED, f"expired at {signal.expires_at}")
    if ctx.equity <= 0:
        return _refuse(RiskRefusal.NO_EQUITY, f"equity {ctx.equity}")
    today = roll_day(state, ctx.now_ms, ctx.equity)
    if today.daily_limit_hit(ctx.equity, params):
        return _refuse(
            RiskRefusal.DAILY_LOSS_LIMIT,
            f"loss today {today.daily_loss(ctx.equity)} of start equity {today.day_start_equity}"
            f" (limit {params.daily_loss_limit_frac}); entries off until the next UTC day",
        )
    until = state.cooldown_until(signal.symbol)
    if until is not None and ctx.now_ms < until:
        return _refuse(RiskRefusal.COOLDOWN, f"{signal.symbol} cooling down until {until}")
    if signal.symbol in ctx.open_symbols:
        return _refuse(RiskRefusal.SYMBOL_HAS_POSITION, f"{signal.symbol} already has one")
    if len(ctx.open_symbols) >= params.max_positions:
        return _refuse(
            RiskRefusal.MAX_POSITIONS, f"{len(ctx.open_symbols)} of {params.max_positions} open"
        )
    return None


def _split_targets(
    qty: Decimal, targets: tuple[Decimal, ...], instrument: Instrument
) -> tuple[tuple[Decimal, Decimal], ...]:
    for count in range(len(targets), 0, -1):
        part = instrument.round_qty(qty / count, Rounding.DOWN)
        if part >= instrument.min_size:
            parts = [part] * (count - 1) + [qty - part * (count - 1)]
            return tuple(zip(targets[:count], parts, strict=True))
    return ()


def assess(
    signal: Signal,
    instrument: Instrument,
    ctx: RiskContext,
    state: RiskState,
    params: RiskParams,
) -> RiskDecision:
    """Approve and size ``signal``, or refuse it with a reason code (see the module docstring)."""
    refused = _gates(signal, ctx, state, params)
    if refused is not None:
        return refused
    sign = 1 if signal.side is PositionSide.LONG else -1
    entry, stop = signal.entry_price, signal.stop_price
    distance = (entry - stop) * sign
    if entry <= 0 or stop <= 0 or distance <= 0:
        return _refuse(RiskRefusal.INVALID_STOP, f"entry {entry}, stop {stop}, {signal.side}")
    equity = ctx.equity
    margin_room = equity * _d(params.max_margin_util) - ctx.used_margin
    if margin_room <= 0:
        return _refuse(RiskRefusal.MARGIN_CAP, f"margin used {ctx.used_margin} of {equity}")

    cs = instrument.contract_size
    fees = _d(params.fee_rate) * (entry + stop)
    leverage = min(_d(params.max_leverage), instrument.max_leverage)
    margin_per_contract = entry * cs / leverage * (1 + _d(params.margin_buffer_frac))
    caps = {
        "risk": equity * _d(params.risk_per_trade) / ((distance + fees) * cs),
        "leverage": (equity * _d(params.max_leverage) - ctx.open_notional) / (entry * cs),
        "position_margin": equity * _d(params.max_position_margin_frac) / margin_per_contract,
        "aggregate_margin": margin_room / margin_per_contract,
    }
    bound = min(caps, key=lambda name: (caps[name], name))
    qty = instrument.round_qty(max(caps[bound], Decimal(0)), Rounding.DOWN)
    if qty < instrument.min_size:
        code = {
            "leverage": RiskRefusal.LEVERAGE_CAP,
            "position_margin": RiskRefusal.MARGIN_CAP,
            "aggregate_margin": RiskRefusal.MARGIN_CAP,
        }.get(bound, RiskRefusal.SIZE_BELOW_MINIMUM)
        return _refuse(
            code,
            f"size {caps[bound]:.8g} (bound by {bound}) rounds to {qty}, "
            f"below the minimum {instrument.min_size}",
        )
    notional = qty * cs * entry
    if notional < _d(params.min_notional_usd):
        return _refuse(
            RiskRefusal.BELOW_MIN_NOTIONAL,
            f"notional {notional} below {params.min_notional_usd}",
        )
    worst = qty * cs * (distance + fees + _d(params.stop_slippage_frac) * stop)
    max_loss = equity * _d(params.max_loss_frac)
    if worst > max_loss:
        return _refuse(
            RiskRefusal.MAX_LOSS_PER_TRADE,
            f"estimated loss at stop {worst:.2f} (with slippage) above {max_loss:.2f}",
        )
    intent = OrderIntent(
        symbol=signal.symbol,
        side=signal.side,
        qty=qty,
        entry_type=OrderType.LIMIT,
        entry_price=entry,
        stop_price=stop,
        take_profits=_split_targets(qty, signal.targets, instrument),
        score=signal.score,
        reasons=signal.reasons,
        strategy=signal.strategy,
        created_at=ctx.now_ms,
        expires_at=signal.expires_at,
    )
    return RiskDecision(
        intent,
        None,
        f"qty {qty} bound by {bound}; notional {notional}; loss at stop about {worst:.2f}",
    )


def intent_margin(intent: OrderIntent, instrument: Instrument, params: RiskParams) -> Decimal:
    """Margin an approved intent uses at the capped leverage (what the allocator bids with)."""
    leverage = min(_d(params.max_leverage), instrument.max_leverage)
    price = intent.entry_price if intent.entry_price is not None else intent.stop_price
    return intent.qty * instrument.contract_size * price / leverage
