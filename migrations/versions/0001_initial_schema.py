"""Initial schema: records and their lists, contributors, agencies, quarantine, crawl runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-28 13:16:13

Written out by hand (an autogenerate run was the starting point) so that it stays what it is
today whatever harvester.models becomes: no application imports, every constraint named as
the naming convention in harvester.models would name it, plain DateTime(timezone=True) where
the models use their UTCDateTime decorator (the decorator changes no DDL).
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _counter(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), server_default=sa.text("0"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "crawl_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("spider", sa.Text(), nullable=False),
        sa.Column("arguments", _json(), nullable=False),
        sa.Column("started_at", _timestamp(), nullable=False),
        sa.Column("finished_at", _timestamp(), nullable=True),
        sa.Column("finish_reason", sa.Text(), nullable=True),
        _counter("pages_fetched"),
        _counter("records_new"),
        _counter("records_updated"),
        _counter("records_unchanged"),
        _counter("records_quarantined"),
        _counter("errors"),
        sa.Column("stats", _json(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crawl_runs")),
    )

    op.create_table(
        "records",
        sa.Column("ncj_number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("annotation", sa.Text(), nullable=True),
        sa.Column("abstract", sa.Text(), nullable=True),
        sa.Column("published_text", sa.Text(), nullable=True),
        sa.Column("published_year", sa.Integer(), nullable=True),
        sa.Column("published_month", sa.Integer(), nullable=True),
        sa.Column("published_day", sa.Integer(), nullable=True),
        sa.Column("published_precision", sa.String(length=16), nullable=True),
        sa.Column("date_created_text", sa.Text(), nullable=True),
        sa.Column("date_created", sa.Date(), nullable=True),
        sa.Column("page_count", sa.Integer(), nullable=True),
        sa.Column("journal_citation", sa.Text(), nullable=True),
        sa.Column("journal_name", sa.Text(), nullable=True),
        sa.Column("journal_volume", sa.Text(), nullable=True),
        sa.Column("journal_issue", sa.Text(), nullable=True),
        sa.Column("journal_dated", sa.Text(), nullable=True),
        sa.Column("journal_pages", sa.Text(), nullable=True),
        sa.Column("language", sa.Text(), nullable=True),
        sa.Column("country", sa.Text(), nullable=True),
        sa.Column("publication_type", sa.Text(), nullable=True),
        sa.Column("publication_format", sa.Text(), nullable=True),
        sa.Column("publication_series", sa.Text(), nullable=True),
        sa.Column("sale_source", sa.Text(), nullable=True),
        sa.Column("publisher", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("part_of", sa.Integer(), nullable=True),
        sa.Column("part_pages", sa.Text(), nullable=True),
        sa.Column("book_title", sa.Text(), nullable=True),
        sa.Column("document_urls", _json(), nullable=False),
        sa.Column("extra_fields", _json(), nullable=False),
        sa.Column("layout", sa.String(length=16), nullable=False),
        sa.Column("source_url", sa.Text(), nullable=False),
        sa.Column("first_seen_at", _timestamp(), nullable=False),
        sa.Column("last_seen_at", _timestamp(), nullable=False),
        sa.Column("last_changed_at", _timestamp(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("crawl_run_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "published_precision IN ('day', 'month', 'month_range', 'season', 'year')",
            name=op.f("ck_records_published_precision"),
        ),
        sa.CheckConstraint(
            "published_month BETWEEN 1 AND 12", name=op.f("ck_records_published_month")
        ),
        sa.CheckConstraint("published_day BETWEEN 1 AND 31", name=op.f("ck_records_published_day")),
        sa.CheckConstraint(
            "layout IN ('current', 'legacy', 'publication', 'generic')",
            name=op.f("ck_records_layout"),
        ),
        sa.ForeignKeyConstraint(
            ["crawl_run_id"],
            ["crawl_runs.id"],
            name=op.f("fk_records_crawl_run_id_crawl_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("ncj_number", name=op.f("pk_records")),
    )
    op.create_index(op.f("ix_records_published_year"), "records", ["published_year"])
    op.create_index(op.f("ix_records_journal_name"), "records", ["journal_name"])
    op.create_index(op.f("ix_records_last_changed_at"), "records", ["last_changed_at"])

    op.create_table(
        "contributors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("normalized_name", sa.Text(), nullable=False),
        sa.Column("family", sa.Text(), nullable=True),
        sa.Column("given", sa.Text(), nullable=True),
        sa.Column("suffix", sa.Text(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.CheckConstraint("kind IN ('person', 'organization')", name=op.f("ck_contributors_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contributors")),
        sa.UniqueConstraint("normalized_name", name=op.f("uq_contributors_normalized_name")),
    )

    op.create_table(
        "record_contributors",
        sa.Column("ncj_number", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("contributor_id", sa.Integer(), nullable=False),
        sa.Column("name_as_shown", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "role IN ('author', 'editor', 'corporate_author')",
            name=op.f("ck_record_contributors_role"),
        ),
        sa.CheckConstraint("position >= 0", name=op.f("ck_record_contributors_position")),
        sa.ForeignKeyConstraint(
            ["ncj_number"],
            ["records.ncj_number"],
            name=op.f("fk_record_contributors_ncj_number_records"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contributor_id"],
            ["contributors.id"],
            name=op.f("fk_record_contributors_contributor_id_contributors"),
        ),
        sa.PrimaryKeyConstraint(
            "ncj_number", "role", "position", name=op.f("pk_record_contributors")
        ),
    )
    op.create_index(
        op.f("ix_record_contributors_contributor_id"), "record_contributors", ["contributor_id"]
    )

    op.create_table(
        "agencies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("normalized_name", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agencies")),
        sa.UniqueConstraint("normalized_name", name=op.f("uq_agencies_normalized_name")),
    )

    op.create_table(
        "record_agencies",
        sa.Column("ncj_number", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("name_as_shown", sa.Text(), nullable=False),
        sa.CheckConstraint("role IN ('sponsor', 'agency')", name=op.f("ck_record_agencies_role")),
        sa.CheckConstraint("position >= 0", name=op.f("ck_record_agencies_position")),
        sa.ForeignKeyConstraint(
            ["ncj_number"],
            ["records.ncj_number"],
            name=op.f("fk_record_agencies_ncj_number_records"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agencies.id"], name=op.f("fk_record_agencies_agency_id_agencies")
        ),
        sa.PrimaryKeyConstraint("ncj_number", "role", "position", name=op.f("pk_record_agencies")),
    )
    op.create_index(op.f("ix_record_agencies_agency_id"), "record_agencies", ["agency_id"])

    op.create_table(
        "record_grants",
        sa.Column("ncj_number", sa.Integer(), nullable=False),
        sa.Column("grant_number", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ncj_number"],
            ["records.ncj_number"],
            name=op.f("fk_record_grants_ncj_number_records"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("ncj_number", "grant_number", name=op.f("pk_record_grants")),
    )
    op.create_index(op.f("ix_record_grants_grant_number"), "record_grants", ["grant_number"])

    op.create_table(
        "record_subjects",
        sa.Column("ncj_number", sa.Integer(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ncj_number"],
            ["records.ncj_number"],
            name=op.f("fk_record_subjects_ncj_number_records"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("ncj_number", "subject", name=op.f("pk_record_subjects")),
    )
    op.create_index(op.f("ix_record_subjects_subject"), "record_subjects", ["subject"])

    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("raw", _json(), nullable=True),
        sa.Column("fetched_at", _timestamp(), nullable=False),
        sa.Column("crawl_run_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["crawl_run_id"],
            ["crawl_runs.id"],
            name=op.f("fk_quarantine_crawl_run_id_crawl_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine")),
    )
    op.create_index(op.f("ix_quarantine_reason"), "quarantine", ["reason"])


def downgrade() -> None:
    # Children before parents; dropping a table drops its indexes and constraints with it.
    for table in (
        "quarantine",
        "record_subjects",
        "record_grants",
        "record_agencies",
        "agencies",
        "record_contributors",
        "contributors",
        "records",
        "crawl_runs",
    ):
        op.drop_table(table)
