"""AuctionAllocator core: collect the signals of one bar cycle, auction them, hand out slots.

Decisions:

- A cycle opens with the first ``SignalProposed`` and closes on the first message (any kind,
  ``Tick`` included) at ``now >= cycle start + collect_window_ms``; the deadline is checked before
  a message is taken in, so a late signal opens the next cycle, and again after it, so a zero
  window auctions at once. Symbols whose bars close together therefore compete in one auction.
- On arrival a signal is dropped (logged ``signal_dropped`` with a reason) when it has expired
  (``expires_at < now``), its symbol already has a position or a pending open, its instrument is
  unknown, or its stop is not on the loss side of its entry.
- The auction is :func:`domain.allocation.allocate` over the collected signals and the local view
  of positions (from ``PositionChanged``; terminal ones are dropped) at the last known equity
  (``AccountEquity``). Without equity no auction runs: the signals are dropped (``no_equity``).
- Outbox: ``CloseRequested`` to execution for each swap-out, then ``OpenApproved`` to risk for
  each open, each group sorted by symbol, so any arrival order within a cycle gives one outbox.
- An approved open is held as a pending position of its symbol (locked, counted in every cap)
  until execution reports that symbol, the signal expires or ``pending_ttl_ms`` (60 s) passes
  (risk refused it: refusals are not reported back), so the next cycle cannot hand the same slot
  out twice. A position asked to close is locked (in flight) until it is terminal.

Estimates (risk sizes the real order later; these only rank and budget):

- Signal margin: the quantity :func:`domain.risk.assess` would size before the book-dependent
  caps: ``min(equity * risk_per_trade / ((distance + fee_rate * (entry + stop)) * cs),
  equity * max_position_margin_frac / (entry * cs / L * (1 + margin_buffer_frac)),
  equity * max_leverage / (entry * cs))`` rounded down to the lot, times ``entry * cs / L`` with
  ``L = min(max_leverage, instrument.max_leverage)`` (as :func:`domain.risk.intent_margin`).
- Position margin: ``qty * cs * price / L`` with ``price`` its entry (or stop) price.
- Costs are in R (the trade's initial risk) converted to score units at ``pnl_weight`` per R,
  the allocator's own exchange rate between open PnL and score: a signal's ``entry_cost`` is its
  round trip of taker fees at entry and stop, ``fee_rate * (entry + stop) / distance``; a
  position's ``exit_cost`` is the taker fee of closing at the mark, ``fee_rate * mark /
  initial risk``. ``pnl_r`` is ``(mark - entry) * sign / initial risk``, where the initial risk
  is the entry-stop distance first seen for the position (stops only tighten later); 0 without
  a mark price.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from decimal import Decimal

import structlog

from actors.core import ALLOCATOR, EXECUTION, HISTORY, RISK, Outbox
from actors.messages import (
    AccountEquity,
    Audit,
    CloseRequested,
    MarkPrice,
    OpenApproved,
    PositionChanged,
    PositionView,
    SignalProposed,
)
from domain.allocation import Action, AllocatorParams, PositionBid, SignalBid, allocate
from domain.models import Instrument, PositionSide, Signal
from domain.position_table import TERMINAL, State
from domain.precision import Rounding
from domain.risk import RiskParams
from persistence.history.models import EventKind

log = structlog.get_logger(__name__)

DEFAULT_PENDING_TTL_MS = 60_000
_UNIT = Instrument("_", "_", "_", Decimal(1), Decimal(1), Decimal(1))


@functools.lru_cache(maxsize=256)  # configured floats, read on every bid
def _d(value: float) -> Decimal:
    return Decimal(repr(value))


def _sign(side: PositionSide) -> int:
    return 1 if side is PositionSide.LONG else -1


def leverage(instrument: Instrument, risk: RiskParams) -> Decimal:
    """The leverage margin is computed at: ``min(max_leverage, instrument.max_leverage)``."""
    return min(_d(risk.max_leverage), instrument.max_leverage)


def signal_margin(
    signal: Signal, instrument: Instrument, equity: Decimal, risk: RiskParams
) -> Decimal:
    """Margin the signal would use once sized (see the module docstring)."""
    entry, stop, cs = signal.entry_price, signal.stop_price, instrument.contract_size
    distance = (entry - stop) * _sign(signal.side)
    if equity <= 0 or entry <= 0 or distance <= 0:
        return Decimal(0)
    lev = leverage(instrument, risk)
    fees = _d(risk.fee_rate) * (entry + stop)
    per_contract = entry * cs / lev * (1 + _d(risk.margin_buffer_frac))
    qty = min(
        equity * _d(risk.risk_per_trade) / ((distance + fees) * cs),
        equity * _d(risk.max_position_margin_frac) / per_contract,
        equity * _d(risk.max_leverage) / (entry * cs),
    )
    return instrument.round_qty(qty, Rounding.DOWN) * entry * cs / lev


def entry_cost(signal: Signal, risk: RiskParams, pnl_weight: float) -> float:
    """Round-trip taker fees (entry and stop) in R, in score units."""
    distance = (signal.entry_price - signal.stop_price) * _sign(signal.side)
    if distance <= 0:
        return 0.0
    fees_r = _d(risk.fee_rate) * (signal.entry_price + signal.stop_price) / distance
    return pnl_weight * float(fees_r)


class AllocatorCore:
    """The auction allocator (see the module docstring); destination ``allocator``."""

    def __init__(
        self,
        params: AllocatorParams,
        instruments: Mapping[str, Instrument],
        risk_params: RiskParams,
        *,
        equity: Decimal | None = None,
        clusters: Mapping[str, str] | None = None,
        pending_ttl_ms: int = DEFAULT_PENDING_TTL_MS,
    ) -> None:
        self.name = ALLOCATOR
        self.params = params
        self.instruments = dict(instruments)
        self.risk_params = risk_params
        self.equity = equity
        self.clusters = dict(clusters or {})
        self.pending_ttl_ms = pending_ttl_ms
        self.positions: dict[str, PositionView] = {}
        self.marks: dict[str, Decimal] = {}
        self.pending: dict[str, tuple[Signal, Decimal, int]] = {}  # symbol -> (signal, margin, at)
        self.closing: set[str] = set()
        self.contenders: list[SignalProposed] = []
        self.cycle_start: int | None = None
        self.cycles = 0
        self._initial_risk: dict[str, Decimal] = {}
        self._now = 0
        self._audits: Outbox = []  # decisions that send no message, for the audit trail
        self._log = log.bind(actor=self.name)

    @property
    def deadline(self) -> int | None:
        """When the open cycle closes (None without one)."""
        if self.cycle_start is None:
            return None
        return self.cycle_start + self.params.collect_window_ms

    def handle(self, message: object, now: int) -> Outbox:
        """Take one message in; run the auction when the open cycle's window has passed."""
        self._now = now
        self._expire_pending(now)
        out = self._maybe_close(now)
        if isinstance(message, SignalProposed):
            self._on_signal(message, now)
        elif isinstance(message, PositionChanged):
            self._on_position(message.view)
        elif isinstance(message, AccountEquity):
            self.equity = message.equity
        elif isinstance(message, MarkPrice):
            self.marks[message.symbol] = message.price
        out += self._maybe_close(now)
        audits, self._audits = self._audits, []
        return out + audits

    def _maybe_close(self, now: int) -> Outbox:
        deadline = self.deadline
        if deadline is None or now < deadline:
            return []
        return self._auction(now)

    def _drop(self, signal: Signal, reason: str, **detail: object) -> None:
        self._log.info(
            "signal_dropped", symbol=signal.symbol, reason=reason, score=signal.score, **detail
        )
        self._audit(f"dropped:{reason}", signal, {k: str(v) for k, v in detail.items()})

    def _audit(self, code: str, signal: Signal, detail: Mapping[str, object]) -> None:
        """A decision that sends no message, for the audit trail."""
        payload = {"strategy": signal.strategy, "score": signal.score, **detail}
        audit = Audit(EventKind.ALLOCATOR_DECISION, code, self._now, signal.symbol, payload=payload)
        self._audits.append((HISTORY, audit))

    def _held(self, symbol: str) -> bool:
        return symbol in self.pending or any(v.symbol == symbol for v in self.positions.values())

    def _on_signal(self, message: SignalProposed, now: int) -> None:
        signal = message.signal
        if signal.expires_at < now:
            self._drop(signal, "expired", expires_at=signal.expires_at)
        elif self._held(signal.symbol):
            self._drop(signal, "symbol_held")
        elif signal.symbol not in self.instruments:
            self._drop(signal, "unknown_instrument")
        elif (signal.entry_price - signal.stop_price) * _sign(signal.side) <= 0:
            self._drop(signal, "invalid_stop")
        else:
            self.contenders.append(message)
            if self.cycle_start is None:
                self.cycle_start = now

    def _on_position(self, view: PositionView) -> None:
        self.pending.pop(view.symbol, None)
        if view.state in TERMINAL:
            self.positions.pop(view.position_id, None)
            self.closing.discard(view.position_id)
            self._initial_risk.pop(view.position_id, None)
            return
        self.positions[view.position_id] = view
        if (
            view.position_id not in self._initial_risk
            and view.entry_price is not None
            and view.stop_price is not None
        ):
            distance = (view.entry_price - view.stop_price) * _sign(view.side)
            if distance > 0:
                self._initial_risk[view.position_id] = distance

    def _position_bid(self, view: PositionView) -> PositionBid:
        instrument = self.instruments.get(view.symbol, _UNIT)
        price = view.entry_price if view.entry_price is not None else view.stop_price
        margin = Decimal(0)
        if price is not None:
            margin = (
                view.qty * instrument.contract_size * price / leverage(instrument, self.risk_params)
            )
        risk = self._initial_risk.get(view.position_id)
        mark = self.marks.get(view.symbol)
        pnl_r = exit_cost = 0.0
        if risk is not None and mark is not None and view.entry_price is not None:
            pnl_r = float((mark - view.entry_price) * _sign(view.side) / risk)
            fee_r = _d(self.risk_params.fee_rate) * mark / risk
            exit_cost = self.params.pnl_weight * float(fee_r)
        return PositionBid(
            position_id=view.position_id,
            symbol=view.symbol,
            side=view.side,
            entry_score=view.score,
            pnl_r=pnl_r,
            margin=margin,
            opened_at=view.created_at,
            protected=view.state is State.PROTECTED,
            in_flight=view.state in (State.PENDING, State.EXITING)
            or view.position_id in self.closing,
            exit_cost=exit_cost,
            cluster=self.clusters.get(view.symbol, ""),
        )

    def _expire_pending(self, now: int) -> None:
        for symbol, (signal, _, at) in list(self.pending.items()):
            if signal.expires_at <= now or now - at >= self.pending_ttl_ms:
                del self.pending[symbol]

    def _book(self) -> list[PositionBid]:
        """Positions plus pending opens (locked)."""
        bids = [self._position_bid(v) for v in self.positions.values()]
        for symbol, (signal, margin, at) in self.pending.items():
            bids.append(
                PositionBid(
                    position_id=f"pending:{symbol}",
                    symbol=symbol,
                    side=signal.side,
                    entry_score=signal.score,
                    pnl_r=0.0,
                    margin=margin,
                    opened_at=at,
                    protected=False,
                    in_flight=True,
                    cluster=self.clusters.get(symbol, ""),
                )
            )
        return bids

    def _auction(self, now: int) -> Outbox:
        contenders, self.contenders, self.cycle_start = self.contenders, [], None
        self.cycles += 1
        equity = self.equity
        if equity is None or equity <= 0:
            for message in contenders:
                self._drop(message.signal, "no_equity", equity=str(equity))
            return []
        bids = []
        for message in contenders:
            signal = message.signal
            instrument = self.instruments[signal.symbol]
            bids.append(
                SignalBid(
                    signal=signal,
                    margin=signal_margin(signal, instrument, equity, self.risk_params),
                    entry_cost=entry_cost(signal, self.risk_params, self.params.pnl_weight),
                    cluster=self.clusters.get(signal.symbol, ""),
                )
            )
        allocation = allocate(bids, self._book(), equity, now, self.params)
        closes: Outbox = []
        opens: Outbox = []
        for decision in allocation.decisions:
            reasons = tuple(str(r) for r in decision.reasons)
            if decision.action is Action.CLOSE and decision.position_id is not None:
                self.closing.add(decision.position_id)
                reason = f"{','.join(reasons)}: {decision.detail}"
                closes.append((EXECUTION, CloseRequested(decision.symbol, reason)))
            elif decision.action is Action.OPEN and decision.signal is not None:
                signal = decision.signal
                instrument = self.instruments[signal.symbol]
                margin = signal_margin(signal, instrument, equity, self.risk_params)
                self.pending[signal.symbol] = (signal, margin, now)
                opens.append((RISK, OpenApproved(signal, reasons)))
            elif decision.action is Action.REJECT and decision.signal is not None:
                self._log.info(
                    "signal_rejected",
                    symbol=decision.symbol,
                    reasons=reasons,
                    value=round(decision.value, 6),
                    detail=decision.detail,
                )
                detail = {"reasons": list(reasons), "value": round(decision.value, 6)}
                self._audit("rejected", decision.signal, detail)
        self._log.info(
            "auction_closed",
            contenders=len(contenders),
            positions=len(self.positions),
            opens=[m.signal.symbol for _, m in opens if isinstance(m, OpenApproved)],
            closes=[m.symbol for _, m in closes if isinstance(m, CloseRequested)],
        )
        return sorted(closes, key=_symbol_of) + sorted(opens, key=_symbol_of)


def _symbol_of(item: tuple[str, object]) -> str:
    message = item[1]
    if isinstance(message, OpenApproved):
        return message.signal.symbol
    if isinstance(message, CloseRequested):
        return message.symbol
    return ""
