"""Translation of ccxt's exceptions into Bastion's four outcome classes (ARCHITECTURE 6).

The same ccxt error means different things for a read and for a write: a timeout while reading
is simply worth retrying, while a timeout during an order write may have left a live order at
the venue, so it becomes ``AmbiguousOutcome`` and is resolved by looking the client id up.
Rate limits and nonce errors are refused before the venue acts, so they are ``Temporary`` for
writes too. Messages are scrubbed of the configured secrets.
"""

from __future__ import annotations

from collections.abc import Iterable

import ccxt

from adapters.retry import RateLimited
from domain.errors import AmbiguousOutcome, BastionError, Fatal, Rejected, Temporary


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def translate(err: Exception, *, write: bool, secrets: Iterable[str] = ()) -> BastionError:
    """The domain error for ``err`` raised by a ccxt call (``write``: it was an order write)."""
    message = _scrub(f"{type(err).__name__}: {err}", secrets)
    if isinstance(err, ccxt.AuthenticationError):  # includes PermissionDenied, AccountSuspended
        return Fatal(message)
    if isinstance(err, ccxt.NotSupported):
        return Fatal(message)
    if isinstance(err, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
        return RateLimited(message)
    if isinstance(err, ccxt.InvalidNonce):
        return Temporary(message)
    if isinstance(err, ccxt.DuplicateOrderId):
        # the client id is already at the venue: an earlier send of this very order got through
        return AmbiguousOutcome(message)
    if isinstance(err, ccxt.ExchangeError):
        return Rejected(message, reason=_scrub(str(err), secrets))
    if isinstance(err, ccxt.NetworkError | ccxt.BadResponse | ccxt.OperationFailed):
        return AmbiguousOutcome(message) if write else Temporary(message)
    # anything else (a transport error ccxt did not wrap, a parsing bug): unknown effect
    return AmbiguousOutcome(message) if write else Temporary(message)
