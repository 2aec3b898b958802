"""Engines, sessions, and the schema check every entry point runs before it writes.

``create_engine_for(url)`` is the only place an engine is built, so SQLite always gets its
pragmas and PostgreSQL always goes through psycopg 3. ``ensure_schema`` decides whether a
database may be used: a brand-new empty one is migrated to head (when the caller allows it),
one already at head passes, and anything else is refused with the exact command to run,
without touching it.

Where the migration scripts are found:

* In a checkout (``pip install -e .``, or the Alembic CLI run from the repository root) the
  ``[tool.alembic]`` section of the repository's ``pyproject.toml`` is used, so
  ``migrations/`` at the repository root is the one copy developers edit.
* A plain ``pip install .`` has no ``pyproject.toml`` and no ``migrations/`` next to the
  package, so the scripts ship inside the package: ``harvester/_migrations`` is a symlink to
  ``../migrations`` that setuptools' package discovery follows (it walks with
  ``followlinks=True``) and copies into the wheel as ``harvester/_migrations/...``. Only
  ``env.py`` and ``versions/*.py`` are needed to migrate; ``script.py.mako`` (needed only by
  ``alembic revision``) stays in the checkout.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shlex
import sqlite3
import time
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import quote

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from filelock import FileLock
from filelock import Timeout as FileLockTimeout
from sqlalchemy import Connection, Engine, Table, create_engine, event, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from harvester.errors import DatabaseUnavailable, SchemaError

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
# What one SQLite connection may hold, so that a long crawl's memory stops growing early
# (measured with benchmarks/memprobe.py, docs/performance.md). Prepared statements: the
# sqlite3 module caches 128 per connection by default, and the writer's varying statements
# (a multi-row INSERT per batch size, an IN list per length) filled that with 3-4 MB per
# connection over tens of thousands of records; a statement not cached is prepared again,
# which costs microseconds against the milliseconds of the batch that runs it.
SQLITE_CACHED_STATEMENTS = 32
# Pages cached per connection, in KiB (SQLite's default is 2,000): the file is in the OS's
# page cache anyway, and a crawl's writer fills this within its first batches.
SQLITE_CACHE_KIB = 1024
# Connections kept open between uses. A crawl uses two at a time (the writer thread's and
# the reactor's reads); a third, needed now and then, is closed when it is given back
# instead of being kept, with its page cache and statements, for the rest of the run.
SQLITE_POOL_SIZE = 2
# Execution option: this connection's transactions write (SQLite: BEGIN IMMEDIATE).
WRITE_TRANSACTION_OPTION = "harvester_write_transaction"
T = TypeVar("T")
POSTGRES_CONNECT_TIMEOUT_S = 10
# Long enough for a real migration of a big file, short enough that a hung process holding
# the lock turns into an error instead of a crawler that silently never starts.
MIGRATION_LOCK_TIMEOUT_S = 600.0
VERSION_TABLE = "alembic_version"
PROJECT_NAME = "ncjrs-harvester"

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGED_MIGRATIONS = PACKAGE_DIR / "_migrations"

# One fixed key, so every harvester process (and the Alembic CLI) on one PostgreSQL database
# queues on the same advisory lock while it migrates.
_PG_MIGRATION_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"ncjrs-harvester schema migration").digest()[:8], "big", signed=True
)


# ---------------------------------------------------------------------------------------------
# URLs and engines


def normalize_url(url: str | URL) -> URL:
    """Parse a DATABASE_URL, sending every PostgreSQL URL through psycopg 3.

    ``postgres://`` (Heroku and friends) and plain ``postgresql://`` would otherwise pick
    psycopg2, which this project does not install.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseUnavailable(
            f"DATABASE_URL {_mask_password(str(url))!r} is not a database URL ({exc}); expected "
            "e.g. sqlite:///ncjrs.sqlite or postgresql://user:password@host:5432/dbname"
        ) from exc
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def display_url(url: str | URL) -> str:
    """The URL as it is safe to print: password hidden, SQLite path made absolute."""
    parsed = url if isinstance(url, URL) else normalize_url(url)
    path = _sqlite_path(parsed)
    if path is not None:
        parsed = parsed.set(database=str(path.resolve()))
    return parsed.render_as_string(hide_password=True)


def create_engine_for(url: str | URL, *, read_only: bool = False) -> Engine:
    """An engine for SQLite (a file, tuned for one writer and concurrent readers) or PostgreSQL.

    ``read_only``: for commands that only read (stats, search, export, ...). Nothing they run
    can write, and they work on a file or folder they may not write to: SQLite connections
    are ``query_only`` (opened ``mode=ro`` or ``immutable`` when the file or its folder is
    not writable, see ``sqlite_read_mode``), PostgreSQL transactions are READ ONLY.

    Raises ``DatabaseUnavailable`` for an unusable URL, a SQLite file whose directory does
    not exist (or, read-only, a file that does not exist); a server that refuses connections
    shows up on first use (see ``ensure_schema``).
    """
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise DatabaseUnavailable(
            f"unsupported database {display_url(parsed)}: the harvester supports SQLite "
            "(sqlite:///path/to/file.sqlite) and PostgreSQL (postgresql://user@host/dbname)"
        )
    kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        _check_sqlite_path(parsed)
        path = _sqlite_path(parsed)
        if read_only and path is not None:
            if not path.is_file():
                raise DatabaseUnavailable(
                    f"no database at {path.resolve()}: crawl into it first (harvester demo, "
                    "harvester crawl), or pass --database PATH_OR_URL"
                )
            mode = sqlite_read_mode(path.resolve())
            kwargs["creator"] = lambda: sqlite3.connect(
                sqlite_uri(path.resolve(), mode),
                uri=True,
                check_same_thread=False,
                cached_statements=SQLITE_CACHED_STATEMENTS,
            )
        else:
            kwargs["connect_args"] = {"cached_statements": SQLITE_CACHED_STATEMENTS}
        if path is not None:  # a file: pooled (in-memory databases get a single connection)
            kwargs["pool_size"] = SQLITE_POOL_SIZE
    else:
        # Long crawls outlive server restarts and idle timeouts; ping before reuse.
        kwargs["pool_pre_ping"] = True
        if "connect_timeout" not in parsed.query:
            kwargs["connect_args"] = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}
        if read_only:
            kwargs["execution_options"] = {"postgresql_readonly": True}
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ImportError) as exc:
        hint = " (pip install 'ncjrs-harvester[postgres]')" if backend == "postgresql" else ""
        raise DatabaseUnavailable(
            f"no database driver for {display_url(parsed)}: {exc}{hint}"
        ) from exc
    if backend == "sqlite":
        _install_sqlite_hooks(engine, read_only=read_only)
    else:
        _install_postgres_hooks(engine)
    return engine


SqliteReadMode = Literal["query_only", "ro", "immutable"]


def sqlite_read_mode(path: Path) -> SqliteReadMode:
    """How to open a SQLite file to read it without leaving a trace.

    ``query_only``: an ordinary connection that refuses to write; SQLite's own locking, and
    the last connection out removes the -wal and -shm files it made. Only when the file and
    its folder are ours to write: otherwise (a file or folder made read-only, another user's)
    ``mode=ro``, which needs the -wal and -shm files to exist already (a crawl has them open)
    and would otherwise fail or leave them behind, else ``immutable``, which reads the file as
    it is without any lock or side file.
    """
    if os.access(path, os.W_OK) and os.access(path.parent, os.W_OK):
        return "query_only"
    if Path(f"{path}-wal").is_file() and Path(f"{path}-shm").is_file():
        try:
            probe = sqlite3.connect(sqlite_uri(path, "ro"), uri=True)
            try:
                probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
            finally:
                probe.close()
            return "ro"
        except sqlite3.Error:
            pass
    return "immutable"


def sqlite_uri(path: Path, mode: SqliteReadMode) -> str:
    parameter = {"query_only": "", "ro": "?mode=ro", "immutable": "?immutable=1"}[mode]
    return f"file:{quote(str(path))}{parameter}"


def _sqlite_path(url: URL) -> Path | None:
    """The file behind a SQLite URL, or None for in-memory and ``file:`` URI databases."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:") or url.query.get("uri"):
        return None
    return Path(database)


def reachable_from_another_process(url: str | URL) -> bool:
    """Whether another process that opens ``url`` reaches the same database: not so for an
    in-memory SQLite database (nor, to be safe, a ``file:`` URI one, which may be one)."""
    parsed = make_url(url)
    return parsed.get_backend_name() != "sqlite" or _sqlite_path(parsed) is not None


def _check_sqlite_path(url: URL) -> None:
    path = _sqlite_path(url)
    if path is None:
        return
    absolute = path.resolve()
    if absolute.is_dir():
        raise DatabaseUnavailable(f"SQLite database path {absolute} is a directory, not a file")
    if not absolute.parent.is_dir():
        raise DatabaseUnavailable(
            f"cannot open SQLite database {absolute}: its directory {absolute.parent} does not "
            "exist (create it first, or point DATABASE_URL somewhere else)"
        )


def _install_sqlite_hooks(engine: Engine, *, read_only: bool = False) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # sqlite3's legacy transaction handling never BEGINs before DDL or SELECT, so a failed
        # migration would leave half a schema and reads would not be repeatable. Turn it off
        # and let SQLAlchemy emit BEGIN itself (the recipe in SQLAlchemy's SQLite docs).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first, so that even switching to WAL waits for other writers.
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
            if read_only:
                # Any write fails, and the file keeps its journal mode (switching is a write).
                cursor.execute("PRAGMA query_only = ON")
                return
            # WAL: readers (exports, the CLI) do not block the crawler's writes and vice versa.
            _enable_wal(cursor)
            # NORMAL is durable across application crashes in WAL mode; only an OS crash or
            # power loss can lose the last transactions, which a re-crawl restores anyway.
            cursor.execute("PRAGMA synchronous = NORMAL")
            # SQLite ignores foreign keys unless asked, per connection.
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A connection that will write after reading (the record writer's batches) asks for
        # IMMEDIATE: it takes the write lock up front, so two writers queue on busy_timeout
        # instead of one failing with "database is locked" when it upgrades its read lock.
        immediate = connection.get_execution_options().get(WRITE_TRANSACTION_OPTION)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _install_postgres_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        # Ctrl-C during the pre-ping of a pooled connection can leave psycopg's connection
        # mid-query (ACTIVE); SQLAlchemy's ping then restores autocommit in a ``finally``,
        # which psycopg refuses ("can't change 'autocommit' now"), and that error replaces
        # the interruption: a command stopped by Ctrl-C would fail with a traceback, and
        # exit 1 instead of 130. Raised here, the interruption goes on through the pool,
        # which closes that connection (never reused) and lets it through.
        if not context.is_pre_ping:
            return
        interruption = _interruption_behind(context.original_exception)
        if interruption is not None:
            raise interruption


def _interruption_behind(error: BaseException) -> BaseException | None:
    """The Ctrl-C (or exit) this error was raised while handling, if any."""
    seen: BaseException | None = error.__context__
    while seen is not None:
        if isinstance(seen, (KeyboardInterrupt, SystemExit)):
            return seen
        seen = seen.__context__
    return None


def _enable_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the file to WAL (a persistent setting), retrying while another process does too.

    Two connections switching one new file at once can deadlock on its locks; SQLite then
    fails one of them at once with "database is locked", without waiting out busy_timeout.
    By the time it retries the other has usually switched the file already.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for the pipelines: objects stay readable after commit (counters, logging)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


# ---------------------------------------------------------------------------------------------
# Statements every writer shares

# Rows per IN (...) list: far below SQLite's limit on bound parameters in one statement.
IN_CHUNK = 500


def chunks(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def insert_for(connection: Connection, table: Table) -> Any:
    """``INSERT`` with the dialect's ``ON CONFLICT`` clauses (upserts, insert-or-ignore)."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"upserts are implemented for SQLite and PostgreSQL, not {dialect}")


# ---------------------------------------------------------------------------------------------
# Alembic


def repository_root() -> Path | None:
    """The checkout this package is imported from, if it is one (editable install or source)."""
    root = PACKAGE_DIR.parent
    pyproject = root / "pyproject.toml"
    try:
        with pyproject.open("rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError):
        return None
    if data.get("project", {}).get("name") != PROJECT_NAME:
        return None
    if "alembic" not in data.get("tool", {}) or not (root / "migrations").is_dir():
        return None
    return root


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic ``Config`` equivalent to running the ``alembic`` CLI from the repository root.

    With ``connection``, env.py migrates on that connection (and its transaction, if one is
    open) instead of opening its own from DATABASE_URL.
    """
    root = repository_root()
    if root is not None:
        config = Config(toml_file=str(root / "pyproject.toml"))
    else:
        config = Config()
        # ConfigParser interpolation: a literal % in a path must be doubled.
        config.set_main_option("script_location", str(PACKAGED_MIGRATIONS).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def script_heads() -> tuple[str, ...]:
    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())


def upgrade_command(url: str | URL) -> str:
    """The shell command that brings the database at ``url`` to head."""
    run = f"DATABASE_URL={shlex.quote(display_url(url))} alembic upgrade head"
    root = repository_root()
    if root is not None:
        return f"cd {shlex.quote(str(root))} && {run}"
    return f"{run}   (from the root of the {PROJECT_NAME} checkout)"


@contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection, inside a transaction, that holds this database's migration lock.

    Two processes migrating one new database at once would both see it empty and both create
    tables. SQLite: a file lock next to the database file (``<file>.lock``), taken before any
    connection is opened, so it also covers the moment the file is created. PostgreSQL: a
    transaction-scoped advisory lock, released by the commit. In-memory SQLite needs none.

    On SQLite foreign key enforcement is off for the duration: batch migrations recreate
    tables, and a DROP of a referenced table would otherwise cascade-delete rows. Violations
    are checked before commit instead, as SQLite's own ALTER TABLE procedure prescribes.
    """
    with ExitStack() as stack:
        lock_path = _sqlite_path(engine.url)
        if lock_path is not None:
            stack.enter_context(_acquire_file_lock(engine, Path(f"{lock_path.resolve()}.lock")))
        connection = stack.enter_context(engine.connect())
        is_sqlite = connection.dialect.name == "sqlite"
        driver_connection: Any = connection.connection.driver_connection
        if is_sqlite:
            # Raw driver call: PRAGMA foreign_keys is a no-op inside a transaction, and any
            # SQLAlchemy execute would begin one first.
            driver_connection.execute("PRAGMA foreign_keys = OFF")
        try:
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK_KEY}
                    )
                yield connection
                if is_sqlite:
                    violations = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if violations:
                        raise SchemaError(
                            f"migration left foreign key violations, rolled back: {violations[:10]}"
                        )
        finally:
            if is_sqlite and not connection.invalidated:
                driver_connection.execute("PRAGMA foreign_keys = ON")


@contextmanager
def _acquire_file_lock(engine: Engine, path: Path) -> Iterator[None]:
    lock = FileLock(path, timeout=MIGRATION_LOCK_TIMEOUT_S)
    try:
        lock.acquire()
    except FileLockTimeout as exc:
        raise DatabaseUnavailable(
            f"another process has been migrating {display_url(engine.url)} for more than "
            f"{MIGRATION_LOCK_TIMEOUT_S:.0f} s (lock file {path})"
        ) from exc
    except OSError as exc:
        raise DatabaseUnavailable(
            f"cannot create the migration lock {path} for {display_url(engine.url)}: {exc}"
        ) from exc
    try:
        yield
    finally:
        lock.release()


def upgrade_to_head(engine: Engine) -> None:
    """`alembic upgrade head` on the engine's database, under its migration lock (the one
    ``ensure_schema`` takes); DatabaseUnavailable when the database cannot be reached."""
    try:
        with migration_connection(engine) as connection:
            command.upgrade(alembic_config(connection), "head")
    except DBAPIError as exc:
        if exc.connection_invalidated or _is_connect_error(exc):
            raise DatabaseUnavailable(_unavailable_message(engine, exc)) from exc
        raise


# ---------------------------------------------------------------------------------------------
# Schema check


@dataclass(frozen=True, slots=True)
class SchemaState:
    tables: frozenset[str]  # tables other than alembic_version
    has_version_table: bool
    revisions: tuple[str, ...]  # what alembic_version says, possibly nothing

    @property
    def empty(self) -> bool:
        """No schema at all: a new database, or one downgraded to base."""
        return not self.tables and not self.revisions


def schema_state(connection: Connection) -> SchemaState:
    names = set(inspect(connection).get_table_names())
    has_version_table = VERSION_TABLE in names
    names.discard(VERSION_TABLE)
    revisions: tuple[str, ...] = ()
    if has_version_table:
        revisions = tuple(MigrationContext.configure(connection).get_current_heads())
    return SchemaState(frozenset(names), has_version_table, revisions)


def ensure_schema(engine: Engine, *, auto_migrate: bool) -> None:
    """Make sure the database behind ``engine`` has exactly the schema this code writes.

    * empty (no tables): migrated to head if ``auto_migrate``, else ``SchemaError``;
    * at head: nothing to do;
    * at another revision, or tables without ``alembic_version``: ``SchemaError`` naming
      the command to run, and the database is left as it was;
    * cannot be opened: ``DatabaseUnavailable``.

    Safe to call from several processes at once on one new database (see
    ``migration_connection``).
    """
    heads = script_heads()
    state = _read_state(engine)
    if _at_head(state, heads):
        return
    if not state.empty:
        raise SchemaError(_describe_mismatch(engine, state, heads))
    if not auto_migrate:
        raise SchemaError(
            f"database {display_url(engine.url)} has no tables; this harvester will not create "
            f"them here on its own. Create the schema with: {upgrade_command(engine.url)}"
        )
    _migrate_new_database(engine, heads)


def _read_state(engine: Engine) -> SchemaState:
    try:
        with engine.connect() as connection:
            return schema_state(connection)
    except DBAPIError as exc:
        raise DatabaseUnavailable(_unavailable_message(engine, exc)) from exc
    except OSError as exc:
        raise DatabaseUnavailable(f"cannot open database {display_url(engine.url)}: {exc}") from exc


def _migrate_new_database(engine: Engine, heads: tuple[str, ...]) -> None:
    try:
        with migration_connection(engine) as connection:
            # Under the lock: another process may have finished migrating while we waited.
            state = schema_state(connection)
            if _at_head(state, heads):
                return
            if not state.empty:
                raise SchemaError(_describe_mismatch(engine, state, heads))
            log.info("creating the harvester schema in %s", display_url(engine.url))
            command.upgrade(alembic_config(connection), "head")
    except DBAPIError as exc:
        if exc.connection_invalidated or _is_connect_error(exc):
            raise DatabaseUnavailable(_unavailable_message(engine, exc)) from exc
        raise


def _at_head(state: SchemaState, heads: tuple[str, ...]) -> bool:
    return bool(state.revisions) and set(state.revisions) == set(heads)


def _describe_mismatch(engine: Engine, state: SchemaState, heads: tuple[str, ...]) -> str:
    where = display_url(engine.url)
    fix = upgrade_command(engine.url)
    head = ", ".join(heads)
    if not state.revisions:
        tables = ", ".join(sorted(state.tables)[:8]) + (", ..." if len(state.tables) > 8 else "")
        return (
            f"database {where} has tables ({tables}) but no Alembic version, so it was not "
            "created by the harvester's migrations; it was left untouched. Point DATABASE_URL at "
            f"a new database (or empty this one) and create the schema with: {fix} (if it does "
            "hold exactly this schema, record that with `alembic stamp head` instead)"
        )
    current = ", ".join(state.revisions)
    script = ScriptDirectory.from_config(alembic_config())
    try:
        for revision in state.revisions:
            script.get_revision(revision)
    except CommandError:
        return (
            f"database {where} is at revision {current}, which this version of the harvester "
            f"does not know (its newest is {head}): it was migrated by newer code. It was left "
            f"untouched; install the harvester version that has revision {current}, then run: "
            f"{fix}"
        )
    return (
        f"database {where} is at revision {current}, but this harvester needs {head}; it was "
        f"left untouched. Upgrade it with: {fix}"
    )


def _is_connect_error(exc: DBAPIError) -> bool:
    return exc.statement is None  # raised while connecting, before any statement ran


def _unavailable_message(engine: Engine, exc: DBAPIError) -> str:
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
    return f"cannot open database {display_url(engine.url)}: {reason}"


def _mask_password(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
