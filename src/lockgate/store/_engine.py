"""Engines, transactions and schema migrations for SQLite and PostgreSQL.

SQLite is opened in WAL mode with foreign keys on. Write transactions start with
``BEGIN IMMEDIATE`` so that two writers queue on the database lock instead of failing
half-way when a read lock cannot be upgraded; readers use a plain deferred ``BEGIN``
and never block writers. PostgreSQL needs none of this.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from lockgate.config import Settings
from lockgate.errors import ConfigError, MissingExtra, StoreError, UserError
from lockgate.store._blobs import BlobStore

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

_READ_ONLY = "lockgate_read_only"
# The newest migration in migrations/versions (a test keeps the two equal). A database
# already there is opened without importing Alembic: 11 MB of memory and ~0.1 s that
# every command, and every gateway process, would otherwise pay.
HEAD_REVISION = "0004"


class Store:
    """The database and blob store behind lockgate.

    Example:
        >>> store = Store.open(load_settings())
        >>> with store.write() as conn:
        ...     conn.execute(...)
    """

    def __init__(self, engine: sa.Engine, blobs: BlobStore) -> None:
        self.engine = engine
        self.blobs = blobs

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True) -> Store:
        """Connect, and bring the schema up to date unless ``migrate`` is false."""
        engine = create_engine(settings)
        store = cls(engine, BlobStore(settings.blob_dir))
        if migrate:
            store.ensure_schema()
        return store

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """One write transaction: committed on success, rolled back on any exception."""
        with _translate_db_errors(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A read-only transaction (never takes SQLite's write lock)."""
        with (
            _translate_db_errors(),
            self.engine.connect().execution_options(**{_READ_ONLY: True}) as conn,
            conn.begin(),
        ):
            yield conn

    def ensure_schema(self) -> None:
        """Apply pending migrations; refuse a database newer than this lockgate."""
        if self._stamped_revision() == HEAD_REVISION:
            return
        current, head = self.revisions()
        if current == head:
            return
        known = {rev.revision for rev in _script().walk_revisions()}
        if current is not None and current not in known:
            raise StoreError(
                f"the database schema is at revision {current}, which this lockgate does not "
                "know; upgrade lockgate (pip install -U lockgate)"
            )
        self.upgrade()

    def _stamped_revision(self) -> str | None:
        """The single revision in ``alembic_version``, read without Alembic; None when
        the table is missing or holds anything else (Alembic then sorts it out)."""
        with _translate_db_errors(), self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
        return str(rows[0][0]) if len(rows) == 1 else None

    def revisions(self) -> tuple[str | None, str | None]:
        """(current revision of the database, newest revision this code knows)."""
        from alembic.runtime.migration import MigrationContext

        with _translate_db_errors(), self.engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
        return current, _script().get_current_head()

    def upgrade(self, revision: str = "head") -> None:
        self._alembic("upgrade", revision)

    def downgrade(self, revision: str) -> None:
        self._alembic("downgrade", revision)

    def close(self) -> None:
        self.engine.dispose()

    def _alembic(self, verb: str, revision: str) -> None:
        from alembic import command
        from alembic.util.exc import CommandError

        config = _alembic_config()
        try:
            with _translate_db_errors(), self.engine.begin() as conn:
                config.attributes["connection"] = conn
                getattr(command, verb)(config, revision)
        except CommandError as exc:
            known = ", ".join(r.revision for r in _script().walk_revisions())
            raise UserError(
                f"cannot {verb} to '{revision}': {exc} (revisions: {known}, head, base)"
            ) from None


def create_engine(settings: Settings) -> sa.Engine:
    """An engine for ``settings.db_url`` with lockgate's per-backend setup."""
    try:
        url = sa.make_url(settings.db_url)
    except sa.exc.ArgumentError:
        raise ConfigError(
            f"database URL {settings.db_url!r} is not a URL; write e.g. "
            "postgresql+psycopg://user@host/db (LOCKGATE_DATABASE_URL or database_url)"
        ) from None
    if url.get_backend_name() == "sqlite":
        database = url.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    try:
        return sa.create_engine(url, pool_pre_ping=True)
    except sa.exc.NoSuchModuleError:
        raise ConfigError(
            f"database URL {url.render_as_string()!r}: lockgate supports SQLite and "
            "PostgreSQL (postgresql+psycopg://…)"
        ) from None
    except ModuleNotFoundError as exc:
        if url.get_backend_name() == "postgresql":
            raise MissingExtra("a PostgreSQL database", "postgres", exc.name or "psycopg") from None
        raise ConfigError(
            f"database URL {url.render_as_string()!r} needs the module '{exc.name}'; "
            "lockgate supports SQLite and PostgreSQL (postgresql+psycopg://…)"
        ) from None


def _configure_sqlite(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        read_only = conn.get_execution_options().get(_READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _alembic_config() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(files("lockgate.store") / "migrations"))
    return config


def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config())


@contextmanager
def _translate_db_errors() -> Iterator[None]:
    try:
        yield
    except sa.exc.OperationalError as exc:
        raise StoreError(f"database error: {exc.orig}") from exc
