"""Suite-wide options."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--crash-runs",
        type=int,
        default=50,
        help="number of SIGKILLs in the store crash test (default 50; raise it for soak runs)",
    )
    parser.addoption(
        "--live-crash-runs",
        type=int,
        default=30,
        help="number of SIGKILLs of `run.py live` in the live crash harness (default 30)",
    )
