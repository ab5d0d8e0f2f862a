"""Shared fixtures for the history database tests: one URL per backend.

PostgreSQL runs when ``BASTION_TEST_PG_URL`` is set (CI sets it) and is skipped otherwise.
Each PostgreSQL test works in a schema of its own, created and dropped by the fixture, so it
never touches other tables in that database and reruns start clean.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from persistence.history.engine import make_engine

PG_URL = os.environ.get("BASTION_TEST_PG_URL")


def pg_schema_url(base: str, name: str) -> str:
    """``base`` with every connection's search path set to schema ``name``."""
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options={quote(f'-csearch_path={name}')}"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'history.db'}"
        return
    if not PG_URL:
        pytest.skip("BASTION_TEST_PG_URL is not set (e.g. postgresql://postgres@127.0.0.1/test)")
    name = f"bastion_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(PG_URL)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    try:
        yield pg_schema_url(PG_URL, name)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        admin.dispose()
