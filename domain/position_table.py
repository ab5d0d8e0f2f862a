"""The position state machine as plain data (ARCHITECTURE section 3).

The table below is the single source of truth: :mod:`domain.position` builds the one shared
``transitions`` machine from it, the tests read it, and ``python run.py fsm-diagram`` renders it.

Rows with the same ``(trigger, source)`` are tried in order; the first whose conditions all hold
wins, so an unconditional row at the end is the fallback. Conditions are names of predicates on
:class:`domain.position.Position` evaluated on the *prospective* data of the event (the position as
it would be after the event), so a row never has to guess what a fill will do.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    PENDING = "pending"
    UNPROTECTED = "unprotected"
    PROTECTED = "protected"
    EXITING = "exiting"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    QUARANTINED = "quarantined"


STATE_MEANING: dict[State, str] = {
    State.PENDING: "entry order in flight or working; no exposure (yet, or again after exits)",
    State.UNPROTECTED: "exposure > 0 and no resting stop covers exactly all of it",
    State.PROTECTED: "exposure > 0 and a resting reduce-only stop covers exactly all of it",
    State.EXITING: "an exit is in flight; the stop stays in place until the exit fills",
    State.CLOSED: "terminal: exposure returned to 0",
    State.CANCELLED: "terminal: entry never filled",
    State.QUARANTINED: "could not be made safe automatically; operator attention",
}

TERMINAL: frozenset[State] = frozenset({State.CLOSED, State.CANCELLED})
EXPOSED: frozenset[State] = frozenset({State.UNPROTECTED, State.PROTECTED, State.EXITING})


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the transition table."""

    trigger: str
    source: State
    dest: State
    conditions: tuple[str, ...] = ()

    @property
    def internal(self) -> bool:
        return self.source is self.dest


P, U, R, X = State.PENDING, State.UNPROTECTED, State.PROTECTED, State.EXITING
C, K, Q = State.CLOSED, State.CANCELLED, State.QUARANTINED


def _settle(trigger: str, source: State, hold: State | None = None) -> tuple[Rule, ...]:
    """Rows for an event that changes exposure or stop coverage.

    Flat after the event -> closed, or back to pending while the entry order still works (more of
    it may fill); no known exposure left but exit fills still waiting for entry
    fills we have not seen -> quarantined (it settles to closed when they arrive); exactly covered
    by the resting stop -> protected; otherwise unprotected, unless ``hold`` names a state the
    position keeps (exiting, quarantined).
    """
    rows = [Rule(trigger, source, C, ("flat_after",))]
    if hold is not Q:  # flat, but the entry still works: more may fill, it is not over
        rows.append(Rule(trigger, source, P, ("flat_entry_working_after",)))
    if hold is not Q:
        rows.append(Rule(trigger, source, Q, ("unbalanced_after",)))
    if hold is None:
        rows.append(Rule(trigger, source, R, ("covered_after",)))
        rows.append(Rule(trigger, source, U))
    else:
        rows.append(Rule(trigger, source, hold))
    return tuple(rows)


TRANSITIONS: tuple[Rule, ...] = (
    # pending: nothing is exposed yet
    Rule("adopted", P, U, ("exposed_after",)),
    *_settle("entry_filled", P, hold=U),  # an entry fill may also settle earlier exit fills
    Rule("exit_filled", P, P, ("no_exposure_after",)),  # reordered: kept until its entry arrives
    Rule("entry_rejected", P, K, ("never_filled_after",)),
    Rule("entry_rejected", P, C, ("flat_after",)),  # filled, then closed by exits
    Rule("entry_rejected", P, Q),
    Rule("entry_cancelled", P, K, ("never_filled_after",)),
    Rule("entry_cancelled", P, C, ("flat_after",)),
    Rule("entry_cancelled", P, Q),
    Rule("quarantine_raised", P, Q),
    # unprotected: exposed, stop missing or wrong size
    *_settle("entry_filled", U),
    *_settle("exit_filled", U),
    Rule("entry_rejected", U, U),
    Rule("entry_cancelled", U, U),
    Rule("stop_submitted", U, U),
    Rule("stop_acked", U, R, ("covered_after",)),
    Rule("stop_acked", U, U),
    Rule("stop_rejected", U, U),
    Rule("stop_lost", U, U),
    Rule("tp_submitted", U, U),
    Rule("exit_requested", U, X),
    Rule("quarantine_raised", U, Q),
    # protected: exposed and exactly covered by a resting stop
    *_settle("entry_filled", R),
    *_settle("exit_filled", R),
    Rule("entry_rejected", R, R),
    Rule("entry_cancelled", R, R),
    Rule("stop_submitted", R, R),  # a replacement: the old stop rests until the new one is acked
    Rule("stop_acked", R, R, ("covered_after",)),
    Rule("stop_acked", R, U),
    Rule("stop_rejected", R, R),  # the replacement failed; the old stop still rests
    Rule("stop_lost", R, R, ("covered_after",)),  # a stop that was not the covering one
    Rule("stop_lost", R, U),
    Rule("stop_triggered", R, X),
    Rule("tp_submitted", R, R),
    Rule("exit_requested", R, X),
    Rule("quarantine_raised", R, Q),
    # exiting: an exit order (or a triggered stop) is in flight
    *_settle("entry_filled", X, hold=X),
    *_settle("exit_filled", X, hold=X),
    Rule("entry_rejected", X, X),
    Rule("entry_cancelled", X, X),
    Rule("stop_submitted", X, X),
    Rule("stop_acked", X, X),
    Rule("stop_rejected", X, X),
    Rule("stop_lost", X, X),
    Rule("stop_triggered", X, X),
    Rule("exit_requested", X, X),  # a further attempt, e.g. after an entry fill grew the position
    Rule("exit_failed", X, R, ("covered_after",)),
    Rule("exit_failed", X, U),
    Rule("quarantine_raised", X, Q),
    # quarantined: tracked, alerting, waiting for an operator or the protection ladder
    *_settle("entry_filled", Q, hold=Q),
    *_settle("exit_filled", Q, hold=Q),
    Rule("entry_rejected", Q, C, ("flat_after",)),  # the entry was all that kept it open
    Rule("entry_rejected", Q, Q),
    Rule("entry_cancelled", Q, C, ("flat_after",)),
    Rule("entry_cancelled", Q, Q),
    Rule("stop_submitted", Q, Q),
    Rule("stop_acked", Q, Q),
    Rule("stop_rejected", Q, Q),
    Rule("stop_lost", Q, Q),
    Rule("stop_triggered", Q, Q),
    Rule("exit_requested", Q, X),
    Rule("exit_failed", Q, Q),
    Rule("quarantine_raised", Q, Q),
    Rule("released", Q, K, ("never_filled_after",)),
    Rule("released", Q, R, ("covered_after",)),
    Rule("released", Q, U, ("exposed_after",)),
)

TRIGGERS: tuple[str, ...] = tuple(dict.fromkeys(rule.trigger for rule in TRANSITIONS))


def rules_for(trigger: str, source: State) -> tuple[Rule, ...]:
    """The rows tried, in order, when ``trigger`` fires in ``source``."""
    return tuple(r for r in TRANSITIONS if r.trigger == trigger and r.source is source)


def to_mermaid() -> str:
    """Render the table as a Mermaid state diagram (internal transitions listed per state)."""
    lines = ["stateDiagram-v2", f"    [*] --> {State.PENDING.value}"]
    for state in State:
        lines.append(f"    {state.value} : {STATE_MEANING[state]}")
    edges: dict[tuple[str, str], list[str]] = {}
    for rule in TRANSITIONS:
        if rule.internal and not rule.conditions:
            continue
        label = rule.trigger + (f" [{', '.join(rule.conditions)}]" if rule.conditions else "")
        edges.setdefault((rule.source.value, rule.dest.value), []).append(label)
    for (src, dst), labels in edges.items():
        lines.append(f"    {src} --> {dst} : {' / '.join(labels)}")
    for state in State:  # declared order: the diagram is byte-identical run to run
        if state in TERMINAL:
            lines.append(f"    {state.value} --> [*]")
    internal: dict[str, list[str]] = {}
    for rule in TRANSITIONS:
        if rule.internal and not rule.conditions:
            internal.setdefault(rule.source.value, []).append(rule.trigger)
    for state_name, triggers in internal.items():
        lines.append(f"    note right of {state_name} : stays on {', '.join(triggers)}")
    return "\n".join(lines) + "\n"
