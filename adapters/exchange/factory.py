"""Build the production exchange port from configuration."""

from __future__ import annotations

from adapters.exchange.ccxt_exchange import CcxtExchange
from adapters.settings import ExchangeSettings


def exchange_from_settings(settings: ExchangeSettings, *, timeout_ms: int = 10_000) -> CcxtExchange:
    """The ccxt adapter for ``settings`` (venue id, URL override, sandbox, keys from the env)."""
    return CcxtExchange(
        settings.id,
        api_key=settings.api_key.get_secret_value() if settings.api_key else None,
        api_secret=settings.api_secret.get_secret_value() if settings.api_secret else None,
        api_url=str(settings.api_url) if settings.api_url else None,
        sandbox=settings.sandbox,
        timeout_ms=timeout_ms,
    )
