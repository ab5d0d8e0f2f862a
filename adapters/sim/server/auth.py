"""Credentials and the venue's signature schemes (API-FACTS.md sections 1 and 4.3).

REST: ``Authent = base64(HMAC-SHA512(base64decode(secret), SHA256(postData + nonce + path)))``
where ``postData`` is the raw query string as received (the body for ``batchorder``), ``nonce``
the ``Nonce`` header when sent (ccxt sends none), and ``path`` the URL path without the
``/derivatives`` prefix (``/api/v3/sendorder``). A sent nonce must be strictly greater than the
last one accepted for that key; the check is in memory only (a restart forgets the nonces).

WebSocket: ``signed_challenge = base64(HMAC-SHA512(base64decode(secret), SHA256(challenge)))``.

``PAPER_API_KEY`` / ``PAPER_API_SECRET`` are the documented paper credentials of the default
account; they guard nothing (the server only listens on loopback) and must never be used at the
real venue.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from dataclasses import dataclass

PAPER_API_KEY = "bastion-paper-key"
PAPER_API_SECRET = (
    "YmFzdGlvbi1wYXBlci10cmFkaW5nLXNlY3JldC1mb3ItdGhlLWxvb3BiYWNrLWVtdWxhdG9yLW9ubHkhISEh"
)
_ACCOUNT_NAMESPACE = uuid.UUID("6f1c2d1e-6a57-4f8e-9a51-7b0c5d1e2f30")


def account_id_for(api_key: str) -> str:
    """The account uid of a key: a UUID derived from the key, stable across restarts."""
    return str(uuid.uuid5(_ACCOUNT_NAMESPACE, api_key))


def valid_secret(secret: str) -> bool:
    try:
        base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def sign(secret: str, message: str) -> str:
    """base64(HMAC-SHA512(base64decode(secret), SHA256(message)))."""
    digest = hashlib.sha256(message.encode()).digest()
    mac = hmac.new(base64.b64decode(secret), digest, hashlib.sha512).digest()
    return base64.b64encode(mac).decode()


def endpoint_path(url_path: str) -> str:
    """The path the venue signs: the URL path without the ``/derivatives`` prefix."""
    return url_path.removeprefix("/derivatives")


@dataclass(frozen=True, slots=True)
class ApiKey:
    api_key: str
    secret: str
    account_id: str


class AuthError(Exception):
    """A failed check; ``code`` is the venue's error string for the envelope."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class Authenticator:
    """Verifies REST and WebSocket signatures against the registered keys."""

    def __init__(self) -> None:
        self.keys: dict[str, ApiKey] = {}
        self._nonces: dict[str, int] = {}

    def add(self, api_key: str, secret: str, account_id: str) -> ApiKey:
        if not valid_secret(secret):
            raise ValueError("the api secret must be valid base64")
        key = ApiKey(api_key, secret, account_id)
        self.keys[api_key] = key
        return key

    def verify_rest(
        self,
        api_key: str | None,
        authent: str | None,
        post_data: str,
        url_path: str,
        nonce: str | None,
    ) -> ApiKey:
        """The key's record, or :class:`AuthError` (``authenticationError`` / nonce errors)."""
        key = self.keys.get(api_key or "")
        if key is None or not authent:
            raise AuthError("authenticationError")
        expected = sign(key.secret, post_data + (nonce or "") + endpoint_path(url_path))
        if not hmac.compare_digest(expected, authent):
            raise AuthError("authenticationError")
        if nonce:
            try:
                value = int(nonce)
            except ValueError as exc:
                raise AuthError("invalidArgument: nonce") from exc
            last = self._nonces.get(key.api_key)
            if last is not None and value == last:
                raise AuthError("nonceDuplicate")
            if last is not None and value < last:
                raise AuthError("nonceBelowThreshold")
            self._nonces[key.api_key] = value
        return key

    def verify_challenge(self, api_key: str, challenge: str, signed: str) -> ApiKey | None:
        key = self.keys.get(api_key)
        if key is None or not signed:
            return None
        return key if hmac.compare_digest(sign(key.secret, challenge), signed) else None
