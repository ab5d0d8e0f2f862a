"""The one exception hierarchy of Bastion (ARCHITECTURE section 6).

Exchange outcomes fall into four classes that decide what the caller does next:

- ``Temporary``: retry later (network error, 5xx, rate limit).
- ``Rejected``: definitive "no" from the venue; do not retry the same request.
- ``AmbiguousOutcome``: we do not know whether a write took effect; resolve by query, never re-send.
- ``Fatal``: stop safely (bad credentials, corrupt store, another instance running).

Domain rule violations (``DomainError``) are programming or sequencing errors detected by pure code.
"""

from __future__ import annotations


class BastionError(Exception):
    """Base class of every error Bastion raises on purpose."""


class DomainError(BastionError):
    """A domain rule was violated; nothing was changed."""


class InvalidTransition(DomainError):
    """A trigger is not allowed from the position's current state (rule 6)."""

    def __init__(self, position_id: str, state: str, trigger: str, reason: str = "") -> None:
        self.position_id = position_id
        self.state = state
        self.trigger = trigger
        self.reason = reason
        detail = f": {reason}" if reason else ""
        super().__init__(
            f"position {position_id}: trigger {trigger!r} is not allowed in state {state!r}{detail}"
        )


class StopLoosening(InvalidTransition):
    """A new stop would be further from profit than the resting one (rule 4)."""


class SymbolHasLivePosition(DomainError):
    """Rule 5: one live (non-terminal) position per symbol, adopted ones included."""


class PrecisionError(DomainError):
    """A price or quantity cannot be expressed on the instrument's grid."""


class ExchangeError(BastionError):
    """Base of the four exchange outcome classes."""


class Temporary(ExchangeError):
    """Transient failure; the same request may be retried after a back-off."""


class Rejected(ExchangeError):
    """The venue definitively refused the request; ``reason`` carries its words."""

    def __init__(self, message: str, reason: str = "") -> None:
        self.reason = reason or message
        super().__init__(message)


class AmbiguousOutcome(ExchangeError):
    """A write may or may not have taken effect; resolve by looking the client order id up."""


class Fatal(BastionError):
    """Continuing would be unsafe; stop and tell the operator."""


class StoreError(Fatal):
    """The position store cannot be used safely."""


class StoreCorrupt(StoreError):
    """The store's file is not a healthy SQLite database."""


class StoreSchemaTooNew(StoreError):
    """The store was written by a newer Bastion; refusing to touch it."""


class StoreLocked(StoreError):
    """Another running Bastion holds the store."""


class StaleVersion(StoreError):
    """A position was changed behind our back (optimistic version check failed)."""
