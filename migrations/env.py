"""Alembic environment for the harvester schema (``harvester.models``).

The database comes from ``harvester.config.database_url()``, the same place the crawler and
the CLI get it from, unless a caller hands in an open Connection as
``config.attributes["connection"]`` (``harvester.db.ensure_schema`` and the tests do), in
which case the migration runs on it, inside its transaction if it has one.

There is no alembic.ini: the options live in ``[tool.alembic]`` of pyproject.toml, and the
logging an ini file would configure is set up here, for the command line only, so that a
crawler that migrates programmatically keeps its own logging.

Revision ids are a zero-padded sequence (0001, 0002, ...) that also prefixes the file name
(``file_template`` in pyproject.toml); ``_number_revision`` assigns the next one, so plain
``alembic revision -m "..."`` and ``--autogenerate`` both produce ``NNNN_slug.py``.
"""

from __future__ import annotations

import io
import logging.config
import re
from collections.abc import Iterable
from typing import Any

from alembic import context
from alembic.operations.ops import MigrationScript
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from harvester.config import database_url
from harvester.db import create_engine_for, migration_connection, normalize_url
from harvester.models import Base
from harvester.search import include_in_autogenerate

config = context.config
target_metadata = Base.metadata

SEQUENCE_ID = re.compile(r"^\d{4}$")


def _configure_cli_logging() -> None:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"generic": {"format": "%(levelname)-5.5s [%(name)s] %(message)s"}},
            "handlers": {
                "console": {
                    "class": "logging.StreamHandler",
                    "stream": "ext://sys.stderr",
                    "formatter": "generic",
                }
            },
            "root": {"level": "WARNING", "handlers": ["console"]},
            "loggers": {
                "sqlalchemy.engine": {"level": "WARNING"},
                "alembic": {"level": "INFO"},
            },
        }
    )


def _number_revision(
    _context: MigrationContext, _revision: Any, directives: list[MigrationScript]
) -> None:
    """Give a new revision the next sequence number unless ``--rev-id NNNN`` was given."""
    script = ScriptDirectory.from_config(config)
    taken = [int(r.revision) for r in script.walk_revisions() if SEQUENCE_ID.match(r.revision)]
    for directive in directives:
        if directive.rev_id is None or not SEQUENCE_ID.match(directive.rev_id):
            directive.rev_id = f"{max(taken, default=0) + 1:04d}"


def _options(dialect_name: str) -> dict[str, Any]:
    sqlite = dialect_name == "sqlite"
    return {
        "target_metadata": target_metadata,
        "compare_type": True,
        # SQLite cannot ALTER most things; batch mode recreates the table instead.
        "render_as_batch": sqlite,
        # harvester.db makes SQLite emit a real BEGIN, so one failed revision rolls back
        # whole instead of leaving half its tables behind.
        "transactional_ddl": True if sqlite else None,
        "process_revision_directives": _number_revision,
        # The search index of migration 0004 is no model: see include_in_autogenerate.
        "include_object": include_in_autogenerate,
    }


def _cli_command() -> str | None:
    cmd: Iterable[Any] = getattr(config.cmd_opts, "cmd", ()) or ()
    function = next(iter(cmd), None)
    return getattr(function, "__name__", None)


def _writes_scripts_only() -> bool:
    """`alembic revision` without --autogenerate, or `alembic merge`: no database needed.

    ``revision_environment = true`` runs this file for them (that is how plain revisions get
    their sequence number); without this check they would open, and even create, a database.
    """
    name = _cli_command()
    if name == "merge":
        return True
    return name == "revision" and not getattr(config.cmd_opts, "autogenerate", False)


def run_scripts_only() -> None:
    context.configure(
        dialect_name="sqlite",
        output_buffer=io.StringIO(),  # the would-be SQL of an empty step, discarded
        as_sql=True,
        **_options("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """`alembic upgrade head --sql`: print the SQL for DATABASE_URL's dialect."""
    url = normalize_url(database_url())
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **_options(url.get_backend_name()),
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    context.configure(connection=connection, **_options(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine_for(database_url())
    try:
        # The same lock harvester.db.ensure_schema takes, so the CLI and a starting crawler
        # never migrate one database at the same time.
        with migration_connection(engine) as locked:
            _run(locked)
    finally:
        engine.dispose()


if config.cmd_opts is not None:
    _configure_cli_logging()

if _writes_scripts_only():
    run_scripts_only()
elif context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
