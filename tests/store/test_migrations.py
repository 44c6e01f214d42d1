"""Schema migrations, up and down, on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from lockgate.config import load_settings
from lockgate.errors import StoreError
from lockgate.store import Store, metadata
from lockgate.store._engine import HEAD_REVISION


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_settings(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return load_settings(home=tmp_path / "home")
    return load_settings(
        home=tmp_path / "home", database_url=request.getfixturevalue("fresh_pg_url")
    )


def tables(store: Store) -> set[str]:
    return set(sa.inspect(store.engine).get_table_names()) - {"alembic_version"}


def test_first_use_migrates_and_schema_matches_the_tables(empty_settings) -> None:  # type: ignore[no-untyped-def]
    store = Store.open(empty_settings)
    try:
        current, head = store.revisions()
        assert current == head
        assert tables(store) == {t.name for t in metadata.sorted_tables}
        with store.engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diffs == []
    finally:
        store.close()


def test_the_fast_path_head_is_the_newest_migration(empty_settings) -> None:  # type: ignore[no-untyped-def]
    store = Store.open(empty_settings)
    try:
        assert store.revisions() == (HEAD_REVISION, HEAD_REVISION)
    finally:
        store.close()


def test_down_to_base_and_up_again(empty_settings) -> None:  # type: ignore[no-untyped-def]
    store = Store.open(empty_settings)
    try:
        store.downgrade("base")
        assert tables(store) == set()
        assert store.revisions()[0] is None
        store.upgrade()
        assert tables(store) == {t.name for t in metadata.sorted_tables}
        store.ensure_schema()  # idempotent
    finally:
        store.close()


def test_open_without_migrate_leaves_database_empty(tmp_path: Path) -> None:
    store = Store.open(load_settings(home=tmp_path), migrate=False)
    try:
        assert store.revisions()[0] is None
        assert tables(store) == set()
    finally:
        store.close()


def test_database_from_a_newer_lockgate_is_refused(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path)
    Store.open(settings).close()
    engine = sa.create_engine(settings.db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_future'")
    engine.dispose()
    with pytest.raises(StoreError, match=r"9999_future.*upgrade lockgate"):
        Store.open(settings)


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    store = Store.open(load_settings(home=tmp_path))
    try:
        with store.read() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        store.close()


def test_unreachable_database_is_a_runtime_failure(tmp_path: Path) -> None:
    settings = load_settings(
        home=tmp_path, database_url="postgresql+psycopg://nobody@127.0.0.1:1/none"
    )
    with pytest.raises(StoreError, match="database error"):
        Store.open(settings)
