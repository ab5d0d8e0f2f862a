"""The auction allocator: greedy selection, every constraint, hysteresis, locks, determinism."""

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.allocation import (
    Action,
    AllocationConfigError,
    AllocatorParams,
    AllocReason,
    PositionBid,
    SignalBid,
    allocate,
)
from domain.models import PositionSide, Signal

NOW = 1_735_689_600_000
EQUITY = Decimal(10_000)
LONG, SHORT = PositionSide.LONG, PositionSide.SHORT
D = Decimal


def bid(
    symbol: str,
    score: float,
    side: PositionSide = LONG,
    margin: str = "100",
    cost: float = 0.0,
    cluster: str = "",
    expires: int = NOW + 60_000,
) -> SignalBid:
    signal = Signal(
        symbol,
        side,
        D(100),
        D(99) if side is LONG else D(101),
        (D(103),),
        score,
        ("t",),
        NOW - 1000,
        expires,
        "smc",
        "15m",
    )
    return SignalBid(signal, D(margin), cost, cluster)


def pos(
    pid: str,
    symbol: str,
    score: float,
    side: PositionSide = LONG,
    pnl_r: float = 0.0,
    margin: str = "100",
    age_ms: int = 3_600_000,
    cluster: str = "",
    **kw: object,
) -> PositionBid:
    return PositionBid(
        pid, symbol, side, score, pnl_r, D(margin), NOW - age_ms, cluster=cluster, **kw
    )  # type: ignore[arg-type]


def params(**kw: object) -> AllocatorParams:
    base = {"max_net_long": 10, "max_net_short": 10, "max_per_cluster": 10}
    return AllocatorParams(**{**base, **kw})  # type: ignore[arg-type]


def reasons_of(alloc, symbol: str) -> tuple[AllocReason, ...]:
    """Reasons of the (first) decision about a signal for ``symbol``."""
    return next(d.reasons for d in alloc.decisions if d.symbol == symbol and d.signal)


def test_best_values_open_first_and_opens_per_cycle_bind() -> None:
    bids = [bid("A", 0.5), bid("B", 0.9), bid("C", 0.7, cost=0.3), bid("D", 0.6)]
    alloc = allocate(bids, [], EQUITY, NOW, params(max_opens_per_cycle=2))
    assert [s.symbol for s in alloc.opens] == ["B", "D"]  # C is worth 0.4 after its cost
    assert reasons_of(alloc, "A") == (AllocReason.OPENS_PER_CYCLE,)
    assert reasons_of(alloc, "C") == (AllocReason.OPENS_PER_CYCLE,)


def test_max_positions_binds() -> None:
    held = [pos("p1", "X", 0.5), pos("p2", "Y", 0.5)]
    alloc = allocate([bid("A", 0.6)], held, EQUITY, NOW, params(max_positions=2))
    assert alloc.opens == ()
    assert AllocReason.MAX_POSITIONS in reasons_of(alloc, "A")
    assert AllocReason.SWAP_BELOW_THRESHOLD in reasons_of(alloc, "A")


def test_margin_cap_binds() -> None:
    # cap 0.35 * 10000 = 3500; 3000 is used
    held = [pos("p1", "X", 0.9, margin="3000")]
    alloc = allocate(
        [bid("A", 0.9, margin="600"), bid("B", 0.8, margin="500")], held, EQUITY, NOW, params()
    )
    assert [s.symbol for s in alloc.opens] == ["B"]
    assert reasons_of(alloc, "A")[0] is AllocReason.MARGIN_CAP


def test_one_position_per_symbol() -> None:
    held = [pos("p1", "X", 0.1)]
    alloc = allocate(
        [bid("X", 0.99, SHORT), bid("A", 0.8), bid("A", 0.7)], held, EQUITY, NOW, params()
    )
    assert reasons_of(alloc, "X") == (AllocReason.SYMBOL_HELD,)
    a = [d for d in alloc.decisions if d.symbol == "A"]
    assert [(d.action, d.value) for d in a] == [(Action.OPEN, 0.8), (Action.REJECT, 0.7)]
    assert a[1].reasons == (AllocReason.DUPLICATE_SYMBOL,)


def test_cluster_cap_binds() -> None:
    held = [pos("p1", "ETH", 0.7, cluster="majors")]  # too strong to be swapped for SOL
    bids = [
        bid("BTC", 0.9, cluster="majors"),
        bid("SOL", 0.8, cluster="majors"),
        bid("DOGE", 0.7, cluster="memes"),
    ]
    alloc = allocate(bids, held, EQUITY, NOW, params(max_per_cluster=2, max_opens_per_cycle=5))
    assert [s.symbol for s in alloc.opens] == ["BTC", "DOGE"]
    assert reasons_of(alloc, "SOL")[0] is AllocReason.CLUSTER_CAP


def test_net_long_and_short_caps_bind() -> None:
    bids = [bid("A", 0.9), bid("B", 0.8), bid("C", 0.7, SHORT), bid("D", 0.6), bid("E", 0.5)]
    alloc = allocate(
        bids, [], EQUITY, NOW, params(max_net_long=1, max_net_short=0, max_opens_per_cycle=5)
    )
    # A (+1), B would make +2: refused; C (-1 -> 0), D (+1), E would make +2: refused
    assert [s.symbol for s in alloc.opens] == ["A", "C", "D"]
    assert reasons_of(alloc, "B") == (AllocReason.NET_LONG_CAP,)
    alloc = allocate([bid("S", 0.9, SHORT)], [], EQUITY, NOW, params(max_net_short=0))
    assert reasons_of(alloc, "S") == (AllocReason.NET_SHORT_CAP,)


def test_swap_needs_to_beat_the_incumbent_by_the_threshold() -> None:
    held = [pos("p1", "X", 0.5, pnl_r=1.0), pos("p2", "Y", 0.7)]  # values 0.6 and 0.7
    p = params(max_positions=2, swap_threshold=0.25, pnl_weight=0.1)
    below = allocate([bid("A", 0.85)], held, EQUITY, NOW, p)  # 0.85 <= 0.6 + 0.25
    assert below.opens == () and below.closes == ()
    assert reasons_of(below, "A") == (AllocReason.MAX_POSITIONS, AllocReason.SWAP_BELOW_THRESHOLD)
    above = allocate([bid("A", 0.86)], held, EQUITY, NOW, p)
    assert [s.symbol for s in above.opens] == ["A"]
    assert above.closes == ("p1",)  # the weakest incumbent goes
    assert above.of(Action.CLOSE)[0].reasons == (AllocReason.SWAPPED_OUT,)
    assert reasons_of(above, "A")[0] is AllocReason.SWAP_IN


def test_swap_picks_the_weakest_incumbent_that_frees_enough_margin() -> None:
    held = [pos("p1", "X", 0.1, margin="500"), pos("p2", "Y", 0.2, margin="2900")]
    alloc = allocate([bid("A", 0.9, margin="1000")], held, EQUITY, NOW, params())
    assert alloc.closes == ("p2",)  # removing p1 would not make room under 3500


def test_closes_per_cycle_bind() -> None:
    held = [pos("p1", "X", 0.1), pos("p2", "Y", 0.1)]
    alloc = allocate(
        [bid("A", 0.9), bid("B", 0.9)],
        held,
        EQUITY,
        NOW,
        params(max_positions=2, max_closes_per_cycle=1),
    )
    assert len(alloc.closes) == 1 and len(alloc.opens) == 1
    assert AllocReason.CLOSES_PER_CYCLE in reasons_of(alloc, "B")
    none = allocate(
        [bid("A", 0.9)], held, EQUITY, NOW, params(max_positions=2, max_closes_per_cycle=0)
    )
    assert none.closes == () and none.opens == ()


@pytest.mark.parametrize(
    ("kw", "lock"),
    [
        ({"age_ms": 60_000}, AllocReason.LOCKED_YOUNG),
        ({"protected": False}, AllocReason.LOCKED_UNPROTECTED),
        ({"in_flight": True}, AllocReason.LOCKED_IN_FLIGHT),
    ],
)
def test_locked_positions_are_kept(kw: dict, lock: AllocReason) -> None:
    held = [pos("p1", "X", 0.0, pnl_r=-1, **kw)]
    alloc = allocate([bid("A", 1.0)], held, EQUITY, NOW, params(max_positions=1))
    assert alloc.closes == () and alloc.opens == ()
    keep = alloc.of(Action.KEEP)[0]
    assert keep.reasons == (lock,)


def test_expired_and_worthless_signals_are_refused() -> None:
    alloc = allocate(
        [bid("A", 0.9, expires=NOW), bid("B", 0.2, cost=0.2)], [], EQUITY, NOW, params()
    )
    assert reasons_of(alloc, "A") == (AllocReason.EXPIRED,)
    assert reasons_of(alloc, "B") == (AllocReason.NON_POSITIVE_VALUE,)


def test_params_map_the_config_section() -> None:
    section = {
        "auction_max_margin_util": 0.3,
        "max_positions": 3,
        "swap_threshold": 0.1,
        "max_opens_per_cycle": 1,
        "max_closes_per_cycle": 1,
        "max_per_cluster": 2,
        "max_net_long": 2,
        "max_net_short": 2,
        "collect_window_ms": 500,
    }
    assert AllocatorParams.from_mapping(section).max_positions == 3
    with pytest.raises(AllocationConfigError, match="unknown"):
        AllocatorParams.from_mapping({"max_posns": 3})
    with pytest.raises(AllocationConfigError):
        AllocatorParams(auction_max_margin_util=1.5)


symbols = st.sampled_from([f"S{i}" for i in range(8)])
signal_bids = st.builds(
    bid,
    symbols,
    st.floats(0, 1).map(lambda x: round(x, 2)),
    st.sampled_from([LONG, SHORT]),
    st.sampled_from(["100", "400", "900", "1500"]),
    st.sampled_from([0.0, 0.05]),
    st.sampled_from(["", "a", "b"]),
)


@st.composite
def books(draw: st.DrawFn) -> list[PositionBid]:
    chosen = draw(st.lists(st.sampled_from([f"H{i}" for i in range(5)]), unique=True, max_size=4))
    return [
        pos(
            f"p{s}",
            s,
            draw(st.floats(0, 1).map(lambda x: round(x, 2))),
            draw(st.sampled_from([LONG, SHORT])),
            draw(st.sampled_from([-1.0, 0.0, 2.0])),
            draw(st.sampled_from(["100", "500"])),
            draw(st.sampled_from([60_000, 3_600_000])),
            draw(st.sampled_from(["", "a"])),
        )
        for s in chosen
    ]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(signal_bids, max_size=14), books(), st.randoms(use_true_random=False))
def test_same_inputs_in_any_order_give_the_same_allocation(
    bids: list[SignalBid], held: list[PositionBid], rnd
) -> None:
    p = AllocatorParams(
        max_positions=4,
        max_opens_per_cycle=3,
        max_closes_per_cycle=2,
        max_net_long=2,
        max_net_short=2,
    )
    first = allocate(bids, held, EQUITY, NOW, p)
    for _ in range(3):
        b, h = list(bids), list(held)
        rnd.shuffle(b)
        rnd.shuffle(h)
        assert allocate(b, h, EQUITY, NOW, p) == first
    # every contender gets exactly one decision, with at least one reason
    assert len(first.decisions) == len(bids) + len(held)
    assert all(d.reasons for d in first.decisions)
    assert len(first.opens) <= p.max_opens_per_cycle
    assert len(first.closes) <= p.max_closes_per_cycle
    # opens never break a cap the book respected before
    kept = [d for d in first.decisions if d.action is Action.KEEP]
    after = len(kept) + len(first.opens)
    if len(held) <= p.max_positions:
        assert after <= p.max_positions
    assert len({s.symbol for s in first.opens} | {d.symbol for d in kept}) == after
