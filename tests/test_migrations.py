"""migrations/: one linear history, reversible, and in step with harvester.models."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from harvester.db import alembic_config, ensure_schema
from harvester.models import Base
from harvester.search import include_in_autogenerate, is_search_index_object

REPO_ROOT = Path(__file__).resolve().parents[1]


def script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def user_tables(engine: Engine) -> set[str]:
    """Tables other than alembic_version and the search index's (migration 0004, no models)."""
    names = set(inspect(engine).get_table_names()) - {"alembic_version"}
    return {name for name in names if not is_search_index_object(name, "table")}


def current(engine: Engine) -> tuple[str, ...]:
    with engine.connect() as connection:
        return tuple(MigrationContext.configure(connection).get_current_heads())


def upgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)


def downgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), revision)


def test_single_head() -> None:
    assert len(script().get_heads()) == 1


def test_revisions_are_a_numbered_sequence() -> None:
    """0001, 0002, ...: each revises the one before, and its file name starts with its id."""
    revisions = list(reversed(list(script().walk_revisions())))  # base first
    for number, revision in enumerate(revisions, start=1):
        assert revision.revision == f"{number:04d}"
        expected_parent = None if number == 1 else f"{number - 1:04d}"
        assert revision.down_revision == expected_parent
        assert revision.path is not None
        assert re.fullmatch(rf"{revision.revision}_\w+\.py", Path(revision.path).name)


def test_every_revision_round_trips(engine: Engine) -> None:
    """Up to each revision, down to the one before, up again; then all the way down and up."""
    revisions = list(reversed(list(script().walk_revisions())))
    for revision in revisions:
        parent = revision.down_revision or "base"
        assert isinstance(parent, str)
        upgrade(engine, revision.revision)
        assert current(engine) == (revision.revision,)
        tables_here = user_tables(engine)
        downgrade(engine, parent)
        assert current(engine) == (() if parent == "base" else (parent,))
        upgrade(engine, revision.revision)
        assert user_tables(engine) == tables_here
    downgrade(engine, "base")
    assert user_tables(engine) == set()
    assert current(engine) == ()
    upgrade(engine, "head")
    assert user_tables(engine) == set(Base.metadata.tables)


def test_models_match_migrations(engine: Engine) -> None:
    """What `alembic revision --autogenerate` would find: nothing, on either dialect."""
    upgrade(engine, "head")
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "include_object": include_in_autogenerate,
            },
        )
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_ensure_schema_and_alembic_build_the_same_schema(engine: Engine) -> None:
    ensure_schema(engine, auto_migrate=True)
    assert current(engine) == tuple(script().get_heads())


def alembic_cli(
    *args: str, database_url: str, cwd: Path = REPO_ROOT
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_alembic_cli_from_the_repository_root(database_url: str, engine: Engine) -> None:
    """No alembic.ini: the CLI reads [tool.alembic] from pyproject.toml, the URL from config."""
    result = alembic_cli("upgrade", "head", database_url=database_url)
    assert result.returncode == 0, result.stderr
    assert "Running upgrade  -> 0001" in result.stderr  # env.py's CLI logging
    result = alembic_cli("current", database_url=database_url)
    assert result.returncode == 0, result.stderr
    assert "(head)" in result.stdout
    result = alembic_cli("check", database_url=database_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert user_tables(engine) == set(Base.metadata.tables)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:////nonexistent/dir/ncjrs.sqlite", "CREATE TABLE records"),
        ("postgresql://nobody@127.0.0.1:1/ncjrs", "JSONB"),
    ],
)
def test_offline_sql(monkeypatch: pytest.MonkeyPatch, url: str, expected: str) -> None:
    """`alembic upgrade head --sql` renders SQL for DATABASE_URL's dialect, connecting nowhere."""
    monkeypatch.setenv("DATABASE_URL", url)
    config = alembic_config()
    config.output_buffer = io.StringIO()
    command.upgrade(config, "head", sql=True)
    sql = config.output_buffer.getvalue()
    assert expected in sql
    assert "CREATE TABLE alembic_version" in sql


def test_new_revisions_get_the_next_number(tmp_path: Path) -> None:
    """`alembic revision -m ...` numbers the file and touches no database."""
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(
        REPO_ROOT / "migrations",
        tmp_path / "migrations",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    existing = sorted(p.name for p in (tmp_path / "migrations" / "versions").glob("*.py"))
    following = f"{len(existing) + 1:04d}"
    result = alembic_cli(
        "revision",
        "-m",
        "Add notes table",
        database_url=f"sqlite:///{tmp_path / 'missing' / 'never.sqlite'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    created = tmp_path / "migrations" / "versions" / f"{following}_add_notes_table.py"
    assert created.is_file(), sorted(os.listdir(created.parent))
    body = created.read_text(encoding="utf-8")
    assert f'revision: str = "{following}"' in body
    assert f'down_revision: str | Sequence[str] | None = "{existing[-1][:4]}"' in body
    assert not (tmp_path / "missing").exists()
    assert not list(tmp_path.glob("*.sqlite"))
