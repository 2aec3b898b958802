"""harvester.db: engines, the Alembic configuration and ensure_schema, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from random import Random

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool

from harvester import db
from harvester.db import (
    alembic_config,
    create_engine_for,
    ensure_schema,
    normalize_url,
    session_factory,
)
from harvester.errors import DatabaseUnavailable, SchemaError
from harvester.models import Base, CrawlRun
from harvester.search import is_search_index_object

REPO_ROOT = Path(__file__).resolve().parents[1]
ALL_TABLES = set(Base.metadata.tables)


def tables(engine: Engine) -> set[str]:
    """Table names, less the search index's (SQLite FTS5 tables: no models, migration 0004)."""
    names = set(inspect(engine).get_table_names())
    return {name for name in names if not is_search_index_object(name, "table")}


def version(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return [
            row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))
        ]


def head() -> str:
    (only,) = ScriptDirectory.from_config(alembic_config()).get_heads()
    return only


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- URLs and engines -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgres://u:p@db.example:5432/ncjrs", "postgresql+psycopg"),
        ("postgresql://u@db.example/ncjrs", "postgresql+psycopg"),
        ("postgresql+psycopg://u@db.example/ncjrs", "postgresql+psycopg"),
        ("sqlite:///ncjrs.sqlite", "sqlite"),
    ],
)
def test_postgres_urls_go_through_psycopg3(given: str, driver: str) -> None:
    url = normalize_url(given)
    assert url.drivername == driver
    assert url.database == normalize_url(given).database  # nothing else changes


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "is not a database URL"),
        ("nosuchdialect://host/db", "unsupported database"),
        ("mysql://user@host/db", "unsupported database"),
    ],
)
def test_unusable_urls_are_unavailable(url: str, expected: str) -> None:
    with pytest.raises(DatabaseUnavailable, match=expected):
        create_engine_for(url)


def test_messages_never_show_the_password() -> None:
    with pytest.raises(DatabaseUnavailable) as caught:
        create_engine_for("mysql://user:s3cret@host/db")
    assert "s3cret" not in str(caught.value)
    assert "s3cret" not in db.upgrade_command("postgresql://user:s3cret@host/db")


def test_sqlite_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    with pytest.raises(DatabaseUnavailable, match="does not exist") as caught:
        create_engine_for(f"sqlite:///{missing / 'ncjrs.sqlite'}")
    assert str(missing) in str(caught.value)
    assert not (tmp_path / "no").exists()


def test_sqlite_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnavailable, match="is a directory"):
        create_engine_for(f"sqlite:///{tmp_path}")


def test_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not a SQLite database, just junk " * 100)
    engine = create_engine_for(f"sqlite:///{path}")
    try:
        with pytest.raises(DatabaseUnavailable, match=r"junk\.sqlite"):
            ensure_schema(engine, auto_migrate=True)
    finally:
        engine.dispose()


def test_postgres_refused_connection_is_unavailable() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/ncjrs"
    engine = create_engine_for(url)
    started = time.monotonic()
    try:
        with pytest.raises(DatabaseUnavailable, match=r"cannot open database .*127\.0\.0\.1"):
            ensure_schema(engine, auto_migrate=False)
    finally:
        engine.dispose()
    assert time.monotonic() - started < 30


@pytest.mark.postgres
def test_postgres_missing_database_is_unavailable() -> None:
    from tests.conftest import postgres_server_url

    url = normalize_url(postgres_server_url()).set(database="harvester_no_such_database")
    engine = create_engine_for(url)
    try:
        with pytest.raises(DatabaseUnavailable, match="harvester_no_such_database"):
            ensure_schema(engine, auto_migrate=True)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_ctrl_c_while_a_pooled_connection_is_checked_out_stays_a_ctrl_c() -> None:
    """Ctrl-C at any moment of ``engine.connect()`` and a query: always KeyboardInterrupt,
    and the engine goes on with connections in a usable state.

    Interrupted inside the pool's pre-ping, psycopg's connection was left mid-query and the
    ping's own clean-up then failed ("can't change 'autocommit' now: connection in
    transaction status ACTIVE"), which replaced the interruption: in about one in eight of
    these, before the fix. Real SIGINTs, sent by a timer thread at varied moments.
    """
    from tests.conftest import postgres_server_url

    engine = create_engine_for(postgres_server_url())
    previous = signal.getsignal(signal.SIGINT)
    delivered = threading.Event()

    def interrupt(signum: int, frame: object) -> None:
        delivered.set()
        raise KeyboardInterrupt

    replaced: list[BaseException] = []
    random = Random(7)
    signal.signal(signal.SIGINT, interrupt)
    try:
        for _ in range(200):
            delivered.clear()
            timer = threading.Timer(random.uniform(0, 0.003), os.kill, (os.getpid(), signal.SIGINT))
            try:
                timer.start()
                while True:  # until the signal arrives
                    with engine.connect() as connection:
                        connection.execute(text("SELECT 1")).all()
            except KeyboardInterrupt:
                pass
            except Exception as error:
                replaced.append(error)
                delivered.wait(5)  # the handler ran, or this error has another cause
            timer.join()
            with engine.connect() as connection:  # no connection left mid-query is reused
                assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        signal.signal(signal.SIGINT, previous)
        engine.dispose()
    assert not replaced, [f"{type(e).__name__}: {e}".splitlines()[0] for e in replaced[:3]]


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'p.sqlite'}")
    try:
        with engine.connect() as connection:

            def pragma(name: str) -> object:
                return connection.exec_driver_sql(f"PRAGMA {name}").scalar()

            assert pragma("journal_mode") == "wal"
            assert pragma("foreign_keys") == 1
            assert pragma("busy_timeout") == db.SQLITE_BUSY_TIMEOUT_MS
            assert pragma("synchronous") == 1  # NORMAL
            assert pragma("cache_size") == -db.SQLITE_CACHE_KIB
    finally:
        engine.dispose()


def test_sqlite_keeps_only_its_pool_of_connections(tmp_path: Path) -> None:
    """A connection needed beyond the pool's size is closed when given back, not kept with
    its page cache and statements for the rest of a crawl."""
    engine = create_engine_for(f"sqlite:///{tmp_path / 'p.sqlite'}")
    try:
        held = [engine.connect() for _ in range(db.SQLITE_POOL_SIZE + 1)]
        for connection in held:
            connection.exec_driver_sql("SELECT 1")
        last = held[-1].connection.dbapi_connection
        for connection in held:
            connection.close()
        assert isinstance(engine.pool, QueuePool)
        assert engine.pool.checkedin() == db.SQLITE_POOL_SIZE
        assert isinstance(last, sqlite3.Connection)
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            last.execute("SELECT 1")
    finally:
        engine.dispose()


def test_sqlite_ddl_is_transactional(tmp_path: Path) -> None:
    """The BEGIN hook: a rolled-back CREATE TABLE leaves nothing behind (sqlite3 alone would)."""
    engine = create_engine_for(f"sqlite:///{tmp_path / 't.sqlite'}")
    try:

        def create_then_fail() -> None:
            with engine.begin() as connection:
                connection.exec_driver_sql("CREATE TABLE scratch (x INTEGER)")
                raise RuntimeError("roll back")

        with pytest.raises(RuntimeError, match="roll back"):
            create_then_fail()
        assert "scratch" not in tables(engine)
    finally:
        engine.dispose()


def test_session_factory(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    factory = session_factory(engine)
    with factory() as session, session.begin():
        run = CrawlRun(spider="records", started_at=datetime.now(UTC))
        session.add(run)
    assert isinstance(session, Session)
    assert run.id is not None  # still readable after commit: expire_on_commit is off
    assert run.pages_fetched == 0


# --- Alembic configuration -------------------------------------------------------------------


def test_alembic_config_comes_from_pyproject() -> None:
    config = alembic_config()
    assert db.repository_root() == REPO_ROOT
    assert config.toml_file_name == str(REPO_ROOT / "pyproject.toml")
    script = ScriptDirectory.from_config(config)
    assert Path(script.dir) == REPO_ROOT / "migrations"


def test_alembic_config_passes_the_connection(engine: Engine) -> None:
    with engine.connect() as connection:
        assert alembic_config(connection).attributes["connection"] is connection


def test_packaged_migrations_match_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a plain `pip install .` uses: harvester/_migrations, without any pyproject.toml."""
    monkeypatch.setattr(db, "repository_root", lambda: None)
    config = alembic_config()
    assert config.toml_file_name is None
    packaged = ScriptDirectory.from_config(config)
    assert Path(packaged.dir) == db.PACKAGED_MIGRATIONS
    repository = ScriptDirectory.from_config(Config(toml_file=str(REPO_ROOT / "pyproject.toml")))
    assert [r.revision for r in packaged.walk_revisions()] == [
        r.revision for r in repository.walk_revisions()
    ]
    assert (db.PACKAGED_MIGRATIONS / "env.py").read_bytes() == (
        REPO_ROOT / "migrations" / "env.py"
    ).read_bytes()


def test_packaged_migrations_can_migrate(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "repository_root", lambda: None)
    ensure_schema(engine, auto_migrate=True)
    assert version(engine) == [head()]


def test_upgrade_command_is_runnable_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    command_line = db.upgrade_command("sqlite:///relative/ncjrs.sqlite")
    assert command_line.startswith(f"cd {REPO_ROOT} && DATABASE_URL=")
    assert command_line.endswith(" alembic upgrade head")
    # A relative SQLite path is made absolute, or the `cd` would change which file it means.
    assert f"sqlite:///{tmp_path}/relative/ncjrs.sqlite" in command_line


# --- ensure_schema ------------------------------------------------------------------------------


def test_new_database_is_migrated_to_head(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    assert tables(engine) == ALL_TABLES | {"alembic_version"}
    assert version(engine) == [head()]


def test_database_at_head_passes_and_stays_unchanged(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    ensure_schema(engine, auto_migrate=True)
    ensure_schema(engine, auto_migrate=False)
    assert version(engine) == [head()]


def test_new_database_without_auto_migrate_is_refused(engine: Engine, database_url: str) -> None:
    with pytest.raises(SchemaError, match="has no tables") as caught:
        ensure_schema(engine, auto_migrate=False)
    message = str(caught.value)
    assert "alembic upgrade head" in message
    assert "DATABASE_URL=" in message
    assert normalize_url(database_url).database in message
    assert tables(engine) == set()


def test_downgraded_database_counts_as_new(engine: Engine) -> None:
    """`alembic downgrade base` leaves an empty alembic_version table and nothing else."""
    ensure_schema(engine, auto_migrate=True)
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    assert tables(engine) == {"alembic_version"}
    ensure_schema(engine, auto_migrate=True)
    assert version(engine) == [head()]


def snapshot(engine: Engine) -> tuple[set[str], list[str] | None]:
    names = tables(engine)
    return names, (version(engine) if "alembic_version" in names else None)


def test_tables_without_alembic_version_are_refused(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE records (ncj_number INTEGER PRIMARY KEY)")
    before = snapshot(engine)
    with pytest.raises(SchemaError, match="no Alembic version") as caught:
        ensure_schema(engine, auto_migrate=True)
    assert "alembic upgrade head" in str(caught.value)
    assert "records" in str(caught.value)
    assert snapshot(engine) == before


def test_unknown_revision_is_refused(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    before = snapshot(engine)
    with pytest.raises(SchemaError, match="ffff, which this version of the harvester does not"):
        ensure_schema(engine, auto_migrate=True)
    assert snapshot(engine) == before


@pytest.fixture
def newer_migrations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The real migrations plus a revision 9000, as the next release of the harvester would have.

    Returns the new head. ``harvester.db.alembic_config`` is pointed at the copy.
    """
    (released,) = db.script_heads()
    copy = tmp_path / "migrations"
    shutil.copytree(REPO_ROOT / "migrations", copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "versions" / "9000_add_notes.py").write_text(
        textwrap.dedent(
            f'''\
            """Add a notes table."""

            import sqlalchemy as sa
            from alembic import op

            revision = "9000"
            down_revision = "{released}"
            branch_labels = None
            depends_on = None


            def upgrade() -> None:
                op.create_table("notes", sa.Column("id", sa.Integer(), primary_key=True))


            def downgrade() -> None:
                op.drop_table("notes")
            '''
        ),
        encoding="utf-8",
    )
    real = db.alembic_config

    def patched(connection: Connection | None = None) -> Config:
        config = real(connection)
        config.set_main_option("script_location", str(copy))
        return config

    monkeypatch.setattr(db, "alembic_config", patched)
    return "9000"


def test_database_at_an_older_revision_is_refused(engine: Engine, newer_migrations: str) -> None:
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "head")  # the released schema
    (released,) = version(engine)
    before = snapshot(engine)
    with pytest.raises(SchemaError) as caught:
        ensure_schema(engine, auto_migrate=True)
    message = str(caught.value)
    assert f"is at revision {released}, but this harvester needs 9000" in message
    assert "alembic upgrade head" in message
    assert "DATABASE_URL=" in message
    assert snapshot(engine) == before
    assert "notes" not in before[0]


def test_new_database_gets_the_newest_head(engine: Engine, newer_migrations: str) -> None:
    ensure_schema(engine, auto_migrate=True)
    assert version(engine) == [newer_migrations]
    assert "notes" in tables(engine)


def test_a_stuck_migration_lock_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ncjrs.sqlite"
    monkeypatch.setattr(db, "MIGRATION_LOCK_TIMEOUT_S", 0.2)
    engine = create_engine_for(f"sqlite:///{path}")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from filelock import FileLock\n"
            "with FileLock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)",
            f"{path}.lock",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DatabaseUnavailable, match="another process has been migrating"):
            ensure_schema(engine, auto_migrate=True)
        assert tables(engine) == set()
    finally:
        holder.kill()
        holder.wait()
        engine.dispose()


# --- two processes, one new database ----------------------------------------------------------

CHILD = textwrap.dedent(
    """\
    import json, sys, time, traceback
    from pathlib import Path
    from harvester.db import create_engine_for, ensure_schema

    url, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    engine = create_engine_for(url)
    ready.touch()
    deadline = time.monotonic() + 60
    while not go.exists():
        if time.monotonic() > deadline:
            sys.exit("never told to go")
        time.sleep(0.001)
    try:
        ensure_schema(engine, auto_migrate=True)
    except Exception:
        traceback.print_exc()
        sys.exit(1)
    print(json.dumps({"ok": True}))
    """
)


@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_two_processes_migrate_one_new_database(
    database_url: str, engine: Engine, tmp_path: Path, attempt: int
) -> None:
    """Both processes start at once on a database with no tables; both must succeed."""
    go = tmp_path / "go"
    readies = [tmp_path / f"ready-{i}" for i in range(2)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, database_url, str(ready), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
        )
        for ready in readies
    ]
    try:
        deadline = time.monotonic() + 120
        while not all(ready.exists() for ready in readies):
            assert time.monotonic() < deadline, "children never became ready"
            assert all(child.poll() is None for child in children), "a child died early"
            time.sleep(0.01)
        go.touch()  # both are imported, connected and spinning: release them together
        results = [child.communicate(timeout=120) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    for child, (out, err) in zip(children, results, strict=True):
        assert child.returncode == 0, f"child failed:\n{err}"
        assert json.loads(out) == {"ok": True}
    assert version(engine) == [head()]
    assert tables(engine) == ALL_TABLES | {"alembic_version"}
