"""The audit database: one SQLAlchemy engine from the `database_url` setting, migrated by Alembic.

Embedded by default: a SQLite file `var_dir/audit.db` in WAL mode (readers never block the writer),
`synchronous=FULL` (a commit is on disk before it returns), a busy timeout, and every write
transaction opened with `BEGIN IMMEDIATE` so concurrent writers queue instead of failing. In
production a PostgreSQL URL (`postgresql+psycopg://...`, psycopg 3).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import weakref
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url

from cds_hooks.config import Config

log = logging.getLogger("cds_hooks.database")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any constant; identifies the schema-migration lock among the server's advisory locks.
_PG_MIGRATION_LOCK = 0x0F05_10CD
# Execution option for connections that only read (SQLite then starts a deferred transaction).
READ_ONLY = "cds_read_only"


def database_url(config: Config) -> str:
    if config.database_url is not None:
        return config.database_url.get_secret_value()
    return f"sqlite:///{Path(config.var_dir).resolve() / 'audit.db'}"


def create_db_engine(
    url: str,
    busy_timeout: float = 10.0,
    *,
    statement_timeout: float | None = None,
    lock_timeout: float | None = None,
    connect_timeout: float | None = None,
) -> Engine:
    """An engine for `url`, with SQLite's durability and locking settings applied on every connection.

    The service's engine bounds every wait, so no call waits on the database past its deadline:
    `lock_timeout` (PostgreSQL `lock_timeout`; SQLite's busy timeout, instead of `busy_timeout`),
    `statement_timeout` (PostgreSQL `statement_timeout`), `connect_timeout` (a new PostgreSQL
    connection, and the wait for a pooled one). Commands and migrations leave them unset.
    """
    parsed = make_url(url)
    pool_args = {"pool_timeout": connect_timeout} if connect_timeout is not None else {}
    if parsed.get_backend_name() != "sqlite":
        options = []
        if statement_timeout is not None:
            options.append(f"-c statement_timeout={int(statement_timeout * 1000)}")
        if lock_timeout is not None:
            options.append(f"-c lock_timeout={int(lock_timeout * 1000)}")
        connect_args: dict = {"options": " ".join(options)} if options else {}
        if connect_timeout is not None:
            connect_args["connect_timeout"] = max(1, math.ceil(connect_timeout))  # libpq: whole seconds
        engine = create_engine(parsed, pool_pre_ping=True, connect_args=connect_args, **pool_args)
    else:
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        wait = lock_timeout if lock_timeout is not None else busy_timeout
        engine = create_engine(parsed, connect_args={"timeout": wait, "check_same_thread": False}, **pool_args)
        _sqlite_settings(engine, wait)
    # gunicorn --preload: a forked child must not reuse the parent's pooled connections. Weak, so the
    # hook does not keep the engine alive.
    ref = weakref.ref(engine)
    os.register_at_fork(after_in_child=lambda: (e := ref()) is not None and e.dispose(close=False))
    return engine


def _sqlite_settings(engine: Engine, busy_timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy's "begin" event decide how a transaction starts (pysqlite would defer it).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # Writers take the write lock up front: a deferred transaction that reads, then writes, can
        # fail with SQLITE_BUSY at once when another process committed in between; this one waits.
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextlib.contextmanager
def commit_durability(engine: Engine, durable: bool):
    """A connection whose next commits wait for the disk (`durable`) or not.

    SQLite sets this per connection, outside a transaction: `synchronous=NORMAL` in WAL mode writes the
    commit to the WAL file without an fsync (the next FULL commit or checkpoint flushes it), and the
    connection goes back to `synchronous=FULL` before it returns to the pool. PostgreSQL sets it per
    transaction (relax_transaction)."""
    with engine.connect() as conn:
        relaxed = not durable and is_sqlite(engine)
        if relaxed:
            # On the DB-API connection: through SQLAlchemy the pragma would open a transaction.
            conn.connection.dbapi_connection.execute("PRAGMA synchronous=NORMAL")
        try:
            yield conn
        finally:
            if relaxed:
                conn.connection.dbapi_connection.execute("PRAGMA synchronous=FULL")


def relax_transaction(conn) -> None:
    """PostgreSQL: this transaction's commit returns before its WAL record is flushed
    (`synchronous_commit = off`: a crash of the database server may lose the last few hundred
    milliseconds of such commits, never corrupt anything). Nothing to do on SQLite."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Apply the migrations up to `revision`, in one transaction, one process at a time.

    Several processes starting together (gunicorn workers, replicas) serialise on a lock: SQLite's
    write lock (BEGIN IMMEDIATE), PostgreSQL's transaction-level advisory lock.
    """
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # Alembic narrates every start at INFO; the revision reached is logged below instead.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger("alembic").level))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
    return current_revision(engine)


def head_revision() -> str:
    """The newest migration this code ships (what `upgrade()` brings a database to)."""
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
        return MigrationContext.configure(connection).get_current_revision()


def open_database(config: Config, serving: bool = False) -> Engine:
    """The engine for the configured database, migrated first when `database_migrate_on_start`.

    `serving`: the service's engine, with the lock, statement and connect timeouts of the
    configuration (the migration at start still waits `database_busy_timeout` for other processes).
    """
    url = database_url(config)
    if config.database_migrate_on_start:
        migrating = create_db_engine(url, config.database_busy_timeout)
        revision = upgrade(migrating)
        log.info("audit database at schema revision %s (%s)", revision, migrating.dialect.name)
        if not serving:
            return migrating
        migrating.dispose()
    if not serving:
        return create_db_engine(url, config.database_busy_timeout)
    return create_db_engine(
        url,
        config.database_busy_timeout,
        statement_timeout=config.database_statement_timeout,
        lock_timeout=config.database_lock_timeout,
        connect_timeout=config.database_connect_timeout,
    )


def ping(engine: Engine) -> bool:
    """True when the database answers a trivial query."""
    try:
        with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        log.warning("audit database ping failed: %s", type(exc).__name__)
        return False
