"""Signature schemes against the published test vectors (API-FACTS.md 1 and 4.3)."""

from __future__ import annotations

import base64

import pytest

from adapters.sim.server.auth import PAPER_API_SECRET, Authenticator, AuthError, sign

SECRET = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZg=="


@pytest.mark.parametrize(
    ("post_data", "path", "authent"),
    [
        (
            "symbol=PF_XBTUSD&side=buy&size=0.01&orderType=mkt",
            "/api/v3/sendorder",
            "IP9ipPEh81zX64ydjdnFAI5Bj7f82IGJ9TdnGxVjECVxrNjtV5h26B6eu8R7lcuiuU7CCR8wDEIxKExnboqOyQ==",
        ),
        (
            "",
            "/api/v3/accounts",
            "GmynphSLfYRiAUg8JfRvgF0UpQ9ZkhHFG/zwPNL5tFbupJFGZpTBkgSm5PvlWYkeueWs+tBdgzs7OegKQZD2kg==",
        ),
        (
            "orderIds=abc-123",
            "/api/v3/orders/status",
            "sLAXQisPbBSRoOxYir3RMyGz40Y/DhirA/bwumyEyTpdDlB0V9RZWfbzTkXSnnlFbShPKI43f/zbPNKZAABTIQ==",
        ),
    ],
)
def test_rest_vectors(post_data: str, path: str, authent: str) -> None:
    auth = Authenticator()
    auth.add("k", SECRET, "acc")
    assert sign(SECRET, post_data + path) == authent
    assert (
        auth.verify_rest("k", authent, post_data, "/derivatives" + path, None).account_id == "acc"
    )
    with pytest.raises(AuthError):
        auth.verify_rest("k", authent, post_data + "&x=1", "/derivatives" + path, None)


def test_challenge_vector() -> None:
    secret = (
        "7zxMEF5p/Z8l2p2U7Ghv6x14Af+Fx+92tPgUdVQ748FOIrEoT9bgT+bTRfXc5pz8na+hL/QdrCVG7bh9KpT0eMTm"
    )
    expected = (
        "4JEpF3ix66GA2B+ooK128Ift4XQVtc137N9yeg4Kqsn9PI0Kpzbysl9M1IeCEdjg0zl00wkVqcsnG4bmnlMb3A=="
    )
    assert sign(secret, "c100b894-1729-464d-ace1-52dbce11db42") == expected


def test_nonce_must_increase() -> None:
    auth = Authenticator()
    auth.add("k", SECRET, "acc")
    path = "/derivatives/api/v3/accounts"

    def call(nonce: str) -> None:
        auth.verify_rest("k", sign(SECRET, nonce + "/api/v3/accounts"), "", path, nonce)

    call("100")
    call("101")
    with pytest.raises(AuthError, match="nonceDuplicate"):
        call("101")
    with pytest.raises(AuthError, match="nonceBelowThreshold"):
        call("50")


def test_paper_secret_is_base64() -> None:
    assert base64.b64decode(PAPER_API_SECRET, validate=True)
