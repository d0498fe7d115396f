"""Shared fixtures: a small school configuration on disk, a fresh store (SQLite, and PostgreSQL where one is
reachable), a manual clock."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
import pytest
from psycopg import sql

from gateway.clock import ManualClock
from gateway.config import Config, load_config
from gateway.store.base import Store
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from tests.data import ROSTER_CSV, write_config
from tests.web import browser  # noqa: F401 - the browser tests' fixture (Debian's Chromium)

PG_URL = os.environ.get("ZVONOK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    return write_config(tmp_path / "config", roster=ROSTER_CSV)


@pytest.fixture
def config(config_dir: Path) -> Config:
    return load_config(config_dir)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 23, 5, 0, tzinfo=UTC))  # Monday 10:00 in Yekaterinburg


class PgSchemas:
    """Throwaway schemas on the test PostgreSQL (`ZVONOK_TEST_POSTGRES`), one installation each, so that tests
    (and other test runs on the same database) never see each other's rows. Nothing connects until `new()`;
    when the server is not reachable, `new()` skips the test and says why."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.names: list[str] = []

    async def new(self, options: str = "") -> tuple[str, str]:
        """Create a fresh schema; return (its name, a URL whose connections use it and are named after it)."""
        try:
            conn = await psycopg.AsyncConnection.connect(self.base_url, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            reason = f"PostgreSQL is not reachable at {self.base_url} (set ZVONOK_TEST_POSTGRES): {exc}"
            if os.environ.get("ZVONOK_REQUIRE_POSTGRES"):  # CI: never skip these
                pytest.fail(reason)
            pytest.skip(reason)
        name = f"zv_{uuid.uuid4().hex[:12]}"
        async with conn:
            await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        self.names.append(name)
        query = urlencode(
            {"options": f"-csearch_path={name} {options}".strip(), "application_name": name}, quote_via=quote
        )
        return name, f"{self.base_url}{'&' if '?' in self.base_url else '?'}{query}"

    async def drop(self) -> None:
        if not self.names:
            return
        async with await psycopg.AsyncConnection.connect(self.base_url, autocommit=True) as conn:
            await conn.execute("SET lock_timeout = '10s'")
            for name in self.names:
                await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
async def pg_schemas() -> AsyncIterator[PgSchemas]:
    schemas = PgSchemas(PG_URL)
    yield schemas
    await schemas.drop()


@pytest.fixture
async def pg_url(pg_schemas: PgSchemas) -> str:
    """The URL of a fresh PostgreSQL schema (for the tests that are about PostgreSQL alone)."""
    return (await pg_schemas.new())[1]


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path, pg_schemas: PgSchemas) -> str:
    """The URL of a fresh database of each backend (a SQLite file, a new PostgreSQL schema), for a whole gateway."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'z.db'}"
    _, url = await pg_schemas.new()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path, pg_schemas: PgSchemas) -> AsyncIterator[Store]:
    """A fresh, empty store of each backend: the store contract tests run once per backend."""
    s: Store
    if request.param == "sqlite":
        s = await SqliteStore.open(tmp_path / "zvonok.db")
    else:
        _, url = await pg_schemas.new()
        s = await PostgresStore.open(url)
    yield s
    await s.close()
