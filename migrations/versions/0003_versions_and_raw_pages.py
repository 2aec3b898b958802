"""Record versions, raw pages (and their zstd dictionaries), quarantine replay, conflict counts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:00:00

Written by hand, no application imports (see 0001). The columns that reference raw_pages are
added in batch mode: SQLite cannot add a named table constraint to an existing table, so batch
mode rebuilds the table there (harvester.db.migration_connection turns foreign keys off
meanwhile, so the rebuild cascades nothing); PostgreSQL gets plain ALTER TABLE statements.
Offline (`alembic upgrade head --sql`) there is no table to reflect for a rebuild, so SQLite
gets `ADD COLUMN ... REFERENCES` instead: the same constraint, which SQLAlchemy only reflects
without its name and ON DELETE rule.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _add_page_reference(table: str) -> None:
    """``table.raw_page_sha256``, a reference to ``raw_pages`` that becomes NULL if it goes."""
    name = op.f(f"fk_{table}_raw_page_sha256_raw_pages")
    if context.is_offline_mode() and op.get_context().dialect.name == "sqlite":
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN raw_page_sha256 VARCHAR(64) CONSTRAINT {name}"
            " REFERENCES raw_pages (sha256) ON DELETE SET NULL"
        )
        return
    with op.batch_alter_table(table) as batch:
        batch.add_column(sa.Column("raw_page_sha256", sa.String(length=64), nullable=True))
        batch.create_foreign_key(
            name, "raw_pages", ["raw_page_sha256"], ["sha256"], ondelete="SET NULL"
        )


def upgrade() -> None:
    op.create_table(
        "raw_page_dictionaries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dictionary", sa.LargeBinary(), nullable=False),
        sa.Column("sample_pages", sa.Integer(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_raw_page_dictionaries")),
    )
    op.create_table(
        "raw_pages",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("codec", sa.String(length=16), nullable=False),
        sa.Column("dictionary_id", sa.Integer(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=True),
        sa.Column("encoding", sa.String(length=40), nullable=False),
        sa.Column("redirect_urls", _json(), nullable=False),
        sa.Column("fetched_at", _timestamp(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dictionary_id"],
            ["raw_page_dictionaries.id"],
            name=op.f("fk_raw_pages_dictionary_id_raw_page_dictionaries"),
        ),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_raw_pages")),
    )

    op.add_column(
        "crawl_runs",
        sa.Column("conflicts", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column("records", sa.Column("parser_version", sa.Integer(), nullable=True))
    _add_page_reference("records")
    op.add_column("quarantine", sa.Column("parser_version", sa.Integer(), nullable=True))
    op.add_column("quarantine", sa.Column("resolved_at", _timestamp(), nullable=True))
    op.add_column("quarantine", sa.Column("resolution", sa.String(length=20), nullable=True))
    _add_page_reference("quarantine")

    op.create_table(
        "record_versions",
        sa.Column("ncj_number", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("changes", _json(), nullable=False),
        sa.Column("changed_fields", sa.Text(), nullable=False),
        sa.Column("crawl_run_id", sa.Integer(), nullable=True),
        sa.Column("parser_version", sa.Integer(), nullable=False),
        sa.Column("source_url", sa.Text(), nullable=False),
        sa.Column("raw_page_sha256", sa.String(length=64), nullable=True),
        sa.Column("observed_at", _timestamp(), nullable=False),
        sa.CheckConstraint("version >= 1", name=op.f("ck_record_versions_version")),
        sa.ForeignKeyConstraint(
            ["ncj_number"],
            ["records.ncj_number"],
            name=op.f("fk_record_versions_ncj_number_records"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["crawl_run_id"],
            ["crawl_runs.id"],
            name=op.f("fk_record_versions_crawl_run_id_crawl_runs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["raw_page_sha256"],
            ["raw_pages.sha256"],
            name=op.f("fk_record_versions_raw_page_sha256_raw_pages"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("ncj_number", "version", name=op.f("pk_record_versions")),
    )
    op.create_index(op.f("ix_record_versions_observed_at"), "record_versions", ["observed_at"])


def downgrade() -> None:
    op.drop_table("record_versions")
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_constraint(op.f("fk_quarantine_raw_page_sha256_raw_pages"), type_="foreignkey")
        for column in ("resolution", "resolved_at", "raw_page_sha256", "parser_version"):
            batch.drop_column(column)
    with op.batch_alter_table("records") as batch:
        batch.drop_constraint(op.f("fk_records_raw_page_sha256_raw_pages"), type_="foreignkey")
        for column in ("raw_page_sha256", "parser_version"):
            batch.drop_column(column)
    with op.batch_alter_table("crawl_runs") as batch:
        batch.drop_column("conflicts")
    op.drop_table("raw_pages")
    op.drop_table("raw_page_dictionaries")
