"""Child process for the store crash test: drives positions through their lifecycle forever.

After each commit returns it prints ``C <seq> <position> <version> <orders> <updates> <fills>``
so the parent knows what is durable. It resumes the positions a previous (killed) run left open.
Run as ``python -m tests.crash.store_child DB SEED``.
"""

from __future__ import annotations

import random
import sys
from decimal import Decimal

from domain.errors import DomainError
from domain.models import Fill, OrderRole, PositionSide
from domain.position import Change, Position
from domain.position_table import State
from persistence.store import PositionStore

SYMBOLS = ("PF_XBTUSD", "PF_ETHUSD", "PF_SOLUSD", "PF_XRPUSD", "PF_LTCUSD")


def step(pos: Position, rng: random.Random, at: int, tag: str) -> Change | None:
    """The next realistic event for a position in its current state."""
    d = pos.data
    side = pos.side

    def fill(role: OrderRole, qty: Decimal, client_id: str | None) -> Fill:
        fill_side = side.exit_side if role.reduces else side.entry_side
        return Fill(f"{tag}-{at}", pos.symbol, fill_side, qty, Decimal(100), at, client_id)

    match pos.current:
        case State.PENDING:
            if rng.random() < 0.1:
                return pos.on_entry_rejected(pos.entry_client_id, "insufficient funds", at=at)
            qty = pos.intended_qty / 2 if rng.random() < 0.5 else pos.intended_qty
            return pos.apply_fill(
                fill(OrderRole.ENTRY, qty, pos.entry_client_id), OrderRole.ENTRY, at=at
            )
        case State.UNPROTECTED:
            if d.stop_pending is not None:
                return pos.on_stop_acked(d.stop_pending.client_id, at=at, exchange_id=f"x{at}")
            if d.entry_working and rng.random() < 0.3:
                left = pos.intended_qty - d.entry_filled
                return pos.apply_fill(
                    fill(OrderRole.ENTRY, left, pos.entry_client_id), OrderRole.ENTRY, at=at
                )
            return pos.submit_stop(
                Decimal(90) if side is PositionSide.LONG else Decimal(110), at=at
            )
        case State.PROTECTED:
            roll = rng.random()
            if d.stop_pending is not None:
                return pos.on_stop_acked(d.stop_pending.client_id, at=at, exchange_id=f"x{at}")
            if roll < 0.4 and d.stop_resting is not None:
                delta = Decimal(1) if side is PositionSide.LONG else Decimal(-1)
                return pos.submit_stop(d.stop_resting.price + delta, at=at)
            if roll < 0.6:
                return pos.submit_take_profit(Decimal(130), d.remaining, at=at)
            if roll < 0.8 and d.stop_resting is not None:
                stop = d.stop_resting
                return pos.apply_fill(
                    fill(OrderRole.STOP, d.remaining, stop.client_id), OrderRole.STOP, at=at
                )
            return pos.request_exit(at=at, reason="signal")
        case State.EXITING:
            return pos.apply_fill(
                fill(OrderRole.EXIT, d.remaining, d.exit_client_id), OrderRole.EXIT, at=at
            )
        case _:
            return pos.release(at=at)


def main(db: str, seed: int) -> None:
    rng = random.Random(seed)
    store = PositionStore.open(db)
    live = store.load_active()
    at = 1_763_000_000_000 + seed * 1_000_000
    print("ready", flush=True)
    while True:
        at += 1
        if len(live) < 5:
            pid = store.next_position_id(at)
            side = rng.choice(list(PositionSide))
            busy = {p.symbol for p in live}
            symbol = next(s for s in SYMBOLS if s not in busy)  # rule 5
            pos, change = Position.open(pid, symbol, side, Decimal(2), at=at)
            live.append(pos)
        else:
            pos = rng.choice(live)
            try:
                change = step(pos, rng, at, f"s{seed}")
            except DomainError:
                continue
        if change is None:
            continue
        seq = store.commit(pos, change)
        print(
            f"C {seq} {pos.id} {change.version} {len(change.orders)} "
            f"{len(change.order_updates)} {len(change.fills)}",
            flush=True,
        )
        if pos.is_terminal:
            live.remove(pos)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
