"""Reading a core's outbox in tests: what it sends to actors, and what it audits."""

from __future__ import annotations

from actors.core import HISTORY, Outbox
from actors.messages import Audit


def sent(out: Outbox) -> Outbox:
    """The outbox without its audit-trail entries (those go to ``history``)."""
    return [(d, m) for d, m in out if d != HISTORY]


def audits(out: Outbox) -> list[Audit]:
    """The audit events of an outbox."""
    return [m for d, m in out if d == HISTORY and isinstance(m, Audit)]
