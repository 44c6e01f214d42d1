"""Shared fixtures: isolated settings on real SQLite and real PostgreSQL.

PostgreSQL tests use a throw-away database created for the session on the server at
LOCKGATE_TEST_POSTGRES_URL (default: the local server on 127.0.0.1:5432, trust auth).
They fail, rather than skip, when the server is down: CI must exercise both backends.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

# Wide, colourless output for CLI assertions; must be set before rich consoles exist.
os.environ["COLUMNS"] = "200"
os.environ["NO_COLOR"] = "1"
os.environ.pop("FORCE_COLOR", None)

import pytest
import sqlalchemy as sa

from lockgate.config import Settings, load_settings
from lockgate.registry import Registry
from lockgate.store import Store
from lockgate.store._tables import GENESIS_HASH, audit_head, metadata

pytest_plugins = ["pytester"]

ADMIN_URL = os.environ.get(
    "LOCKGATE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's LOCKGATE_* variables or lockgate.yaml."""
    for name in list(os.environ):
        if name.startswith("LOCKGATE_") and name != "LOCKGATE_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _admin_engine() -> sa.Engine:
    return sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")


def create_pg_database() -> str:
    """Create an empty PostgreSQL database; return its URL."""
    name = f"lockgate_test_{uuid.uuid4().hex[:12]}"
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        engine.dispose()
    return sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    name = sa.make_url(url).database
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A session-wide PostgreSQL database, migrated once."""
    url = create_pg_database()
    yield url
    drop_pg_database(url)


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """An empty PostgreSQL database of its own (for migration tests)."""
    url = create_pg_database()
    yield url
    drop_pg_database(url)


def _truncate(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            if not sa.inspect(conn).has_table("audit_head"):
                return
            names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
            conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
            conn.execute(sa.insert(audit_head).values(id=1, seq=0, hash=GENESIS_HASH))
    finally:
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        request.applymarker(pytest.mark.postgres)
    return str(request.param)


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings for an empty store on the parametrised backend."""
    home = tmp_path / "home"
    if backend == "sqlite":
        return load_settings(home=home)
    url = request.getfixturevalue("pg_url")
    _truncate(url)
    return load_settings(home=home, database_url=url)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    opened = Store.open(settings)
    yield opened
    opened.close()


@pytest.fixture
def registry(store: Store) -> Registry:
    return Registry(store, actor="alice")


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Settings:
    """Point the CLI (which reads LOCKGATE_* variables) at the test store."""
    monkeypatch.setenv("LOCKGATE_HOME", str(settings.home))
    if settings.database_url:
        monkeypatch.setenv("LOCKGATE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LOCKGATE_USER", "alice")
    return settings


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
