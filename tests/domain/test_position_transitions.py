"""Every row of the transition table, and every trigger a state does not allow."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from transitions import Event, MachineError

from domain.errors import InvalidTransition
from domain.models import OrderRole, PositionSide
from domain.position import MACHINE, Change, Position, _build_machine
from domain.position_table import TRANSITIONS, TRIGGERS, State
from persistence.codec import position_to_record
from tests.domain import factory as f

P, U, R, X = State.PENDING, State.UNPROTECTED, State.PROTECTED, State.EXITING
C, K, Q = State.CLOSED, State.CANCELLED, State.QUARANTINED
Case = Callable[[], Change | None]
CASES: dict[tuple[State, str, State], Case] = {}


def case(source: State, trigger: str, dest: State) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        CASES[(source, trigger, dest)] = fn
        return fn

    return register


def _with_deferred_exit(pos: Position, qty: str) -> Position:
    """An exit fill larger than the exposure arrives first and waits for its entry fill."""
    f.exit_fill(pos, qty)
    assert pos.data.deferred_exits
    return pos


def _unbalanced_by_exit(pos: Position) -> Change | None:
    """An oversized exit fill waits; a second one takes the known exposure to zero."""
    f.exit_fill(pos, str(pos.remaining + f.D("0.5")))
    return f.exit_fill(pos, str(pos.remaining))


def _unbalanced_by_entry(pos: Position) -> Change | None:
    """Two exit fills wait; an entry fill lets the smaller one settle, the larger still waits."""
    f.exit_fill(pos, "3")
    f.exit_fill(pos, str(pos.remaining + f.D("0.5")))
    return f.entry_fill(pos, "0.5")


# ------------------------------------------------------------------ pending
case(P, "adopted", U)(
    lambda: Position.adopt("a1", f.SYMBOL, PositionSide.SHORT, f.D(3), f.D(50), at=f.now())[1]
)
case(P, "entry_filled", C)(lambda: f.entry_fill(_with_deferred_exit(f.pending(), "2"), "2"))
case(P, "entry_filled", P)(lambda: f.entry_fill(_with_deferred_exit(f.pending(), "1"), "1"))
case(P, "entry_filled", Q)(lambda: _unbalanced_by_entry(f.pending()))
case(P, "entry_filled", U)(lambda: f.entry_fill(f.pending(), "1"))
case(P, "exit_filled", P)(lambda: f.exit_fill(f.pending(), "1"))


@case(P, "entry_rejected", K)
def _p_rejected() -> Change:
    pos = f.pending()
    return pos.on_entry_rejected(pos.entry_client_id, "insufficient margin", at=f.now())


@case(P, "entry_rejected", Q)
def _p_rejected_after_exit_fill() -> Change:
    pos = _with_deferred_exit(f.pending(), "1")
    return pos.on_entry_rejected(pos.entry_client_id, "late reject", at=f.now())


@case(P, "entry_cancelled", K)
def _p_cancelled() -> Change:
    pos = f.pending()
    return pos.on_entry_cancelled(pos.entry_client_id, at=f.now())


def _stopped_out_while_entry_works() -> Position:
    """1 of 2 filled, then closed by an exit fill: back to pending, the entry still works."""
    pos = f.unprotected()
    f.exit_fill(pos, "1")
    assert pos.current is P
    return pos


@case(P, "entry_cancelled", C)
def _p_cancelled_after_stopped_out() -> Change:
    pos = _stopped_out_while_entry_works()
    return pos.on_entry_cancelled(pos.entry_client_id, at=f.now())


@case(P, "entry_rejected", C)
def _p_rejected_after_stopped_out() -> Change:
    pos = _stopped_out_while_entry_works()
    return pos.on_entry_rejected(pos.entry_client_id, "venue cancelled the rest", at=f.now())


@case(P, "entry_cancelled", Q)
def _p_cancelled_after_exit_fill() -> Change:
    pos = _with_deferred_exit(f.pending(), "1")
    return pos.on_entry_cancelled(pos.entry_client_id, at=f.now())


case(P, "quarantine_raised", Q)(lambda: f.pending().quarantine("operator", at=f.now()))


# ------------------------------------------------------------------ unprotected
case(U, "entry_filled", C)(lambda: f.entry_fill(_with_deferred_exit(f.unprotected(), "2"), "1"))
case(U, "entry_filled", P)(lambda: f.entry_fill(_with_deferred_exit(f.unprotected(), "1.5"), "0.5"))


@case(U, "entry_filled", R)
def _u_entry_restores_cover() -> Change | None:
    pos = f.protected()
    f.exit_fill(pos, "0.5", OrderRole.TAKE_PROFIT)  # stop 1 > exposure 0.5
    assert pos.current is U
    return f.entry_fill(pos, "0.5")


case(U, "entry_filled", Q)(lambda: _unbalanced_by_entry(f.unprotected()))
case(U, "exit_filled", Q)(lambda: _unbalanced_by_exit(f.unprotected()))
case(U, "entry_filled", U)(lambda: f.entry_fill(f.unprotected(), "0.5"))
case(U, "exit_filled", C)(lambda: f.exit_fill(f.entry_done(f.unprotected()), "1"))
case(U, "exit_filled", P)(lambda: f.exit_fill(f.unprotected(), "1"))  # the entry still works


@case(U, "exit_filled", R)
def _u_exit_restores_cover() -> Change | None:
    pos = f.protected()
    f.entry_fill(pos, "0.5")  # exposure 1.5 > stop 1
    assert pos.current is U
    return f.exit_fill(pos, "0.5", OrderRole.TAKE_PROFIT)


case(U, "exit_filled", U)(lambda: f.exit_fill(f.unprotected(), "0.5"))


@case(U, "entry_rejected", U)
def _u_rest_rejected() -> Change:
    pos = f.unprotected()
    return pos.on_entry_rejected(pos.entry_client_id, "post only", at=f.now())


@case(U, "entry_cancelled", U)
def _u_rest_cancelled() -> Change:
    pos = f.unprotected()
    return pos.on_entry_cancelled(pos.entry_client_id, at=f.now())


case(U, "stop_submitted", U)(lambda: f.unprotected().submit_stop(f.D(90), at=f.now()))
case(U, "stop_acked", R)(lambda: f.place_stop(f.unprotected()))
case(U, "stop_acked", U)(lambda: f.place_stop(f.unprotected(), qty="0.5"))


@case(U, "stop_rejected", U)
def _u_stop_rejected() -> Change:
    pos = f.unprotected()
    cid = pos.submit_stop(f.D(90), at=f.now()).orders[0].client_id
    return pos.on_stop_rejected(cid, "would trigger immediately", at=f.now())


@case(U, "stop_lost", U)
def _u_stop_lost() -> Change:
    pos = f.unprotected()
    cid = pos.submit_stop(f.D(90), at=f.now()).orders[0].client_id
    return pos.on_stop_lost(cid, "venue cancel", at=f.now())


case(U, "tp_submitted", U)(lambda: f.unprotected().submit_take_profit(f.D(120), f.D(1), at=1))
case(U, "exit_requested", X)(lambda: f.unprotected().request_exit(at=f.now()))
case(U, "quarantine_raised", Q)(lambda: f.unprotected().quarantine("ladder", at=f.now()))


# ------------------------------------------------------------------ protected
case(R, "entry_filled", C)(lambda: f.entry_fill(_with_deferred_exit(f.protected(), "2"), "1"))
case(R, "entry_filled", P)(lambda: f.entry_fill(_with_deferred_exit(f.protected(), "1.5"), "0.5"))


@case(R, "entry_filled", R)
def _r_entry_settles_deferred() -> Change | None:
    pos = f.protected()
    f.exit_fill(pos, "1.5")  # waits: larger than the exposure
    assert pos.current is R
    return f.entry_fill(pos, "1.5")  # 1 + 1.5 - 1.5 = 1, still exactly covered


case(R, "entry_filled", Q)(lambda: _unbalanced_by_entry(f.protected()))
case(R, "exit_filled", Q)(lambda: _unbalanced_by_exit(f.protected()))
case(R, "entry_filled", U)(lambda: f.entry_fill(f.protected(), "1"))
case(R, "exit_filled", C)(lambda: f.stop_fill(f.entry_done(f.protected()), "1"))
case(R, "exit_filled", P)(lambda: f.stop_fill(f.protected(), "1"))
case(R, "exit_filled", R)(lambda: f.stop_fill(f.protected(), "0.4"))
case(R, "exit_filled", U)(lambda: f.exit_fill(f.protected(), "0.5", OrderRole.TAKE_PROFIT))


@case(R, "entry_rejected", R)
def _r_rest_rejected() -> Change:
    pos = f.protected()
    return pos.on_entry_rejected(pos.entry_client_id, "expired", at=f.now())


@case(R, "entry_cancelled", R)
def _r_rest_cancelled() -> Change:
    pos = f.protected()
    return pos.on_entry_cancelled(pos.entry_client_id, at=f.now())


case(R, "stop_submitted", R)(lambda: f.protected().submit_stop(f.D(95), at=f.now()))
case(R, "stop_acked", R)(lambda: f.place_stop(f.protected(), "95"))
case(R, "stop_acked", U)(lambda: f.place_stop(f.protected(), "95", qty="0.5"))


@case(R, "stop_rejected", R)
def _r_replacement_rejected() -> Change:
    pos = f.protected()
    cid = pos.submit_stop(f.D(95), at=f.now()).orders[0].client_id
    return pos.on_stop_rejected(cid, "would trigger immediately", at=f.now())


@case(R, "stop_lost", R)
def _r_replacement_lost() -> Change:
    pos = f.protected()
    cid = pos.submit_stop(f.D(95), at=f.now()).orders[0].client_id
    return pos.on_stop_lost(cid, "venue cancel", at=f.now())


@case(R, "stop_lost", U)
def _r_resting_lost() -> Change:
    pos = f.protected()
    assert pos.data.stop_resting is not None
    return pos.on_stop_lost(pos.data.stop_resting.client_id, "venue cancel", at=f.now())


@case(R, "stop_triggered", X)
def _r_triggered() -> Change:
    pos = f.protected()
    assert pos.data.stop_resting is not None
    return pos.on_stop_triggered(pos.data.stop_resting.client_id, at=f.now())


case(R, "tp_submitted", R)(lambda: f.protected().submit_take_profit(f.D(120), f.D(1), at=1))
case(R, "exit_requested", X)(lambda: f.protected().request_exit(at=f.now()))
case(R, "quarantine_raised", Q)(lambda: f.protected().quarantine("ladder", at=f.now()))


# ------------------------------------------------------------------ exiting
case(X, "entry_filled", C)(lambda: f.entry_fill(_with_deferred_exit(f.exiting(), "2"), "1"))
case(X, "entry_filled", P)(lambda: f.entry_fill(_with_deferred_exit(f.exiting(), "1.5"), "0.5"))
case(X, "entry_filled", Q)(lambda: _unbalanced_by_entry(f.exiting()))
case(X, "exit_filled", Q)(lambda: _unbalanced_by_exit(f.exiting()))
case(X, "entry_filled", X)(lambda: f.entry_fill(f.exiting(), "1"))
case(X, "exit_filled", C)(lambda: f.exit_fill(f.entry_done(f.exiting()), "1"))
case(X, "exit_filled", P)(lambda: f.exit_fill(f.exiting(), "1"))
case(X, "exit_filled", X)(lambda: f.exit_fill(f.exiting(), "0.5"))


@case(X, "entry_rejected", X)
def _x_rest_rejected() -> Change:
    pos = f.exiting()
    return pos.on_entry_rejected(pos.entry_client_id, "expired", at=f.now())


@case(X, "entry_cancelled", X)
def _x_rest_cancelled() -> Change:
    pos = f.exiting()
    return pos.on_entry_cancelled(pos.entry_client_id, at=f.now())


case(X, "stop_submitted", X)(lambda: f.exiting().submit_stop(f.D(95), at=f.now()))
case(X, "stop_acked", X)(lambda: f.place_stop(f.exiting(), "95"))


@case(X, "stop_rejected", X)
def _x_stop_rejected() -> Change:
    pos = f.exiting()
    cid = pos.submit_stop(f.D(95), at=f.now()).orders[0].client_id
    return pos.on_stop_rejected(cid, "rejected", at=f.now())


@case(X, "stop_lost", X)
def _x_stop_lost() -> Change:
    pos = f.exiting()
    assert pos.data.stop_resting is not None
    return pos.on_stop_lost(pos.data.stop_resting.client_id, "venue cancel", at=f.now())


@case(X, "stop_triggered", X)
def _x_stop_triggered() -> Change:
    pos = f.exiting()
    assert pos.data.stop_resting is not None
    return pos.on_stop_triggered(pos.data.stop_resting.client_id, at=f.now())


case(X, "exit_requested", X)(lambda: f.exiting().request_exit(at=f.now()))


@case(X, "exit_failed", R)
def _x_failed_covered() -> Change:
    pos = f.exiting()
    assert pos.data.exit_client_id is not None
    return pos.on_exit_failed(pos.data.exit_client_id, "rejected", at=f.now())


@case(X, "exit_failed", U)
def _x_failed_naked() -> Change:
    pos = f.exiting()
    assert pos.data.stop_resting is not None and pos.data.exit_client_id is not None
    pos.on_stop_lost(pos.data.stop_resting.client_id, "venue cancel", at=f.now())
    return pos.on_exit_failed(pos.data.exit_client_id, "rejected", at=f.now())


case(X, "quarantine_raised", Q)(lambda: f.exiting().quarantine("ladder", at=f.now()))


# ------------------------------------------------------------------ quarantined
case(Q, "entry_filled", C)(lambda: f.entry_fill(_with_deferred_exit(f.quarantined(), "2"), "1"))
case(Q, "entry_filled", Q)(lambda: f.entry_fill(f.quarantined(), "1"))
case(Q, "exit_filled", C)(lambda: f.stop_fill(f.entry_done(f.quarantined()), "1"))
case(Q, "exit_filled", Q)(lambda: f.stop_fill(f.quarantined(), "0.5"))


@case(Q, "entry_rejected", Q)
def _q_rest_rejected() -> Change:
    pos = f.quarantined()
    return pos.on_entry_rejected(pos.entry_client_id, "expired", at=f.now())


@case(Q, "entry_cancelled", Q)
def _q_rest_cancelled() -> Change:
    pos = f.quarantined()
    return pos.on_entry_cancelled(pos.entry_client_id, at=f.now())


case(Q, "stop_submitted", Q)(lambda: f.quarantined().submit_stop(f.D(95), at=f.now()))
case(Q, "stop_acked", Q)(lambda: f.place_stop(f.quarantined(), "95"))


@case(Q, "stop_rejected", Q)
def _q_stop_rejected() -> Change:
    pos = f.quarantined()
    cid = pos.submit_stop(f.D(95), at=f.now()).orders[0].client_id
    return pos.on_stop_rejected(cid, "rejected", at=f.now())


@case(Q, "stop_lost", Q)
def _q_stop_lost() -> Change:
    pos = f.quarantined()
    assert pos.data.stop_resting is not None
    return pos.on_stop_lost(pos.data.stop_resting.client_id, "venue cancel", at=f.now())


@case(Q, "stop_triggered", Q)
def _q_stop_triggered() -> Change:
    pos = f.quarantined()
    assert pos.data.stop_resting is not None
    return pos.on_stop_triggered(pos.data.stop_resting.client_id, at=f.now())


case(Q, "exit_requested", X)(lambda: f.quarantined().request_exit(at=f.now()))


@case(Q, "exit_failed", Q)
def _q_exit_failed() -> Change:
    pos = f.exiting()
    pos.quarantine("exit stuck", at=f.now())
    assert pos.data.exit_client_id is not None
    return pos.on_exit_failed(pos.data.exit_client_id, "rejected", at=f.now())


case(Q, "quarantine_raised", Q)(lambda: f.quarantined().quarantine("again", at=f.now()))


@case(Q, "released", K)
def _q_release_unfilled() -> Change:
    pos = f.pending()
    pos.quarantine("operator", at=f.now())
    return pos.release(at=f.now())


case(Q, "released", R)(lambda: f.quarantined().release(at=f.now()))


@case(Q, "released", U)
def _q_release_naked() -> Change:
    pos = f.unprotected()
    pos.quarantine("operator", at=f.now())
    return pos.release(at=f.now())


# ------------------------------------------------------------------ tests
TABLE_ROWS = {(r.source, r.trigger, r.dest) for r in TRANSITIONS}


def test_every_row_of_the_table_has_a_case() -> None:
    assert set(CASES) == TABLE_ROWS


@pytest.mark.parametrize("key", sorted(CASES, key=str), ids=lambda k: f"{k[0]}-{k[1]}-{k[2]}")
def test_row(key: tuple[State, str, State]) -> None:
    source, trigger, dest = key
    change = CASES[key]()
    assert change is not None
    assert (change.source, change.trigger, change.dest) == (source, trigger, dest)


BUILDERS: dict[State, Callable[[], Position]] = {
    P: f.pending,
    U: f.unprotected,
    R: f.protected,
    X: f.exiting,
    Q: f.quarantined,
    C: f.closed,
    K: f.cancelled,
}
INVALID = sorted(
    (state, trigger)
    for state in State
    for trigger in TRIGGERS
    if not any(r.source is state and r.trigger == trigger for r in TRANSITIONS)
)


def test_builders_reach_their_states() -> None:
    assert {state: build().current for state, build in BUILDERS.items()} == {s: s for s in State}


@pytest.mark.parametrize(("state", "trigger"), INVALID, ids=str)
def test_invalid_trigger_raises_and_changes_nothing(state: State, trigger: str) -> None:
    pos = BUILDERS[state]()
    before = position_to_record(pos)
    with pytest.raises(InvalidTransition) as err:
        pos._fire(trigger, pos.data, at=f.now())
    assert err.value.position_id == pos.id
    assert err.value.trigger == trigger
    assert position_to_record(pos) == before


def test_terminal_states_allow_nothing() -> None:
    assert {(C, t) for t in TRIGGERS} | {(K, t) for t in TRIGGERS} <= set(INVALID)


def _quarantined_flat_while_entry_works() -> Position:
    pos = f.quarantined()
    f.stop_fill(pos, "1")
    assert pos.current is Q and pos.remaining == 0 and pos.data.entry_working
    return pos


@case(Q, "entry_cancelled", C)
def _q_cancelled_flat() -> Change:
    pos = _quarantined_flat_while_entry_works()
    return pos.on_entry_cancelled(pos.entry_client_id, at=f.now())


@case(Q, "entry_rejected", C)
def _q_rejected_flat() -> Change:
    pos = _quarantined_flat_while_entry_works()
    return pos.on_entry_rejected(pos.entry_client_id, "venue cancelled the rest", at=f.now())


def test_position_triggers_are_taken_as_the_library_takes_them() -> None:
    """For every trigger, source state and outcome of the conditions its rows read, the
    position machine's event moves a model as transitions' own Event.trigger does."""
    assert MACHINE.plain  # nothing registered that the direct path would skip
    names = sorted({c for rule in TRANSITIONS for c in rule.conditions})

    class Model:
        def __init__(self, state: str, outcomes: dict[str, bool]) -> None:
            self.state = state
            for name in names:
                setattr(self, name, lambda nxt, _v=outcomes[name]: _v)

    compared = 0
    for trigger, event in MACHINE.events.items():
        for state in State:
            read = sorted(
                {c.func for ts in event.transitions.values() for t in ts for c in t.conditions}
            )
            for bits in itertools.product([False, True], repeat=len(read)):
                outcomes = dict.fromkeys(names, False) | dict(zip(read, bits, strict=True))
                ours, theirs = Model(state.value, outcomes), Model(state.value, outcomes)
                try:
                    expected = Event.trigger(event, theirs, nxt=None)
                except MachineError:
                    with pytest.raises(MachineError):
                        event.trigger(ours, nxt=None)
                    continue
                assert event.trigger(ours, nxt=None) == expected, (trigger, state, outcomes)
                assert ours.state == theirs.state, (trigger, state, outcomes)
                compared += 1
    assert compared > 100


def test_a_position_with_state_callbacks_is_bound_the_librarys_way() -> None:
    """A model that defines on_enter_/on_exit_ methods gets the library's whole binding, and
    the machine then takes every trigger the library's way (its callbacks run)."""
    entered: list[str] = []

    class Noted(Position):
        def on_enter_protected(self, **_: object) -> None:  # given the trigger's arguments
            entered.append(self.id)

    machine = _build_machine()  # a machine of its own, built as the shared one is
    assert machine.plain
    pos = Noted.__new__(Noted)
    pos.id, pos.data = "n1", f.protected().data
    machine.add_model(pos, initial=State.UNPROTECTED.value)
    assert not machine.plain
    assert pos.trigger("stop_acked", nxt=pos.data)
    assert pos.state == State.PROTECTED.value
    assert entered == ["n1"]
