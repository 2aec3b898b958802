"""URL state for incremental crawls and withdrawals (record_urls, records.withdrawn_at), run
monitoring figures (crawl_runs), and each record's own parse of its people's names
(record_contributors.family/given/suffix).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 16:05:00

record_urls keeps, per canonical URL, what the next crawl needs to skip or revalidate a page
(sitemap lastmod, ETag, Last-Modified). crawl_runs gains the incremental counters, field
coverage and the monitoring checks that failed. Hand-written, no application imports.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PAGE_KINDS = (
    "'record', 'quarantined', 'soft_404', 'no_record_fields', 'several_records', 'not_html', 'gone'"
)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "record_urls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("ncj_number", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("first_seen_at", _timestamp(), nullable=False),
        sa.Column("last_seen_at", _timestamp(), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=False),
        sa.Column("sitemap_lastmod", _timestamp(), nullable=True),
        sa.Column("etag", sa.Text(), nullable=True),
        sa.Column("last_modified", sa.Text(), nullable=True),
        sa.Column("redirect_chain", _json(), nullable=False),
        sa.Column("gone_runs", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("gone_since", _timestamp(), nullable=True),
        sa.Column("gone_counted_at", _timestamp(), nullable=True),
        sa.CheckConstraint(f"kind IN ({_PAGE_KINDS})", name=op.f("ck_record_urls_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_record_urls")),
        sa.UniqueConstraint("url", name=op.f("uq_record_urls_url")),
    )
    op.create_index(op.f("ix_record_urls_ncj_number"), "record_urls", ["ncj_number"])

    # Plain ADD COLUMN (no batch): SQLite does it in place, and offline --sql mode works.
    for name in ("pages_not_modified", "pages_skipped", "requests"):
        op.add_column(
            "crawl_runs",
            sa.Column(name, sa.Integer(), server_default=sa.text("0"), nullable=False),
        )
    op.add_column("records", sa.Column("withdrawn_at", _timestamp(), nullable=True))
    op.add_column("crawl_runs", sa.Column("coverage", _json(), nullable=True))
    op.add_column("crawl_runs", sa.Column("alerts", _json(), nullable=True))
    # The name parts as this record's page gives them (contributors keeps the first seen).
    for name in ("family", "given", "suffix"):
        op.add_column("record_contributors", sa.Column(name, sa.Text(), nullable=True))
    op.execute(
        "UPDATE record_contributors SET family = c.family, given = c.given, suffix = c.suffix "
        "FROM contributors AS c WHERE c.id = record_contributors.contributor_id"
    )


def downgrade() -> None:
    with op.batch_alter_table("records") as batch:
        batch.drop_column("withdrawn_at")
    with op.batch_alter_table("record_contributors") as batch:
        for name in ("suffix", "given", "family"):
            batch.drop_column(name)
    with op.batch_alter_table("crawl_runs") as batch:
        for name in ("alerts", "coverage", "requests", "pages_skipped", "pages_not_modified"):
            batch.drop_column(name)
    op.drop_index(op.f("ix_record_urls_ncj_number"), table_name="record_urls")
    op.drop_table("record_urls")
