"""Risk: sizing and approval of entries (:func:`assess`) and the risk state it reads.

The risk actor builds :class:`RiskParams` from the ``risk`` config section, keeps a
:class:`RiskState` (persisted between runs), updates it with :func:`record_equity`,
:func:`record_trade`, :func:`latch_kill_switch` and :func:`release_kill_switch`, and turns each
allocated signal into a :class:`RiskDecision` whose refusal code goes to the audit log.
"""

from domain.risk.manager import (
    RiskContext,
    RiskDecision,
    RiskRefusal,
    assess,
    intent_margin,
)
from domain.risk.params import RiskConfigError, RiskParams
from domain.risk.state import (
    ClosedTrade,
    RiskState,
    latch_kill_switch,
    record_equity,
    record_trade,
    release_kill_switch,
    roll_day,
    utc_day,
)

__all__ = [
    "ClosedTrade",
    "RiskConfigError",
    "RiskContext",
    "RiskDecision",
    "RiskParams",
    "RiskRefusal",
    "RiskState",
    "assess",
    "intent_margin",
    "latch_kill_switch",
    "record_equity",
    "record_trade",
    "release_kill_switch",
    "roll_day",
    "utc_day",
]
