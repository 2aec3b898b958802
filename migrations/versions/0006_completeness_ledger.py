"""The completeness ledger: why a record URL has no stored record yet and when it is asked
again (record_urls.gap_*), the sitemap that listed it, the page kind "failed", and a run
heartbeat (crawl_runs.heartbeat_at) so that a live run is never taken for a killed one.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 23:50:00

Hand-written, no application imports. The kind check constraint gains "failed": SQLite cannot
alter a constraint in place, so record_urls is rebuilt there (batch mode).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_KINDS = (
    "'record', 'quarantined', 'soft_404', 'no_record_fields', 'several_records', 'not_html', 'gone'"
)
_NEW_KINDS = f"{_OLD_KINDS}, 'failed'"
_GAP_REASONS = (
    "'fetch_failed', 'timeout', 'data_loss', 'too_large', 'redirect_loop', 'offsite_redirect', "
    "'robots_blocked', 'not_a_record', 'store_error', 'quarantined'"
)


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _record_urls_before() -> sa.Table:
    """record_urls as 0002 made it: batch mode copies from this instead of reflecting the
    table, so `alembic upgrade head --sql` works on SQLite too."""
    return sa.Table(
        "record_urls",
        sa.MetaData(),
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
        sa.Column("redirect_chain", sa.JSON(), nullable=False),
        sa.Column("gone_runs", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("gone_since", _timestamp(), nullable=True),
        sa.Column("gone_counted_at", _timestamp(), nullable=True),
        sa.CheckConstraint(f"kind IN ({_OLD_KINDS})", name="ck_record_urls_kind"),
        sa.PrimaryKeyConstraint("id", name="pk_record_urls"),
        sa.UniqueConstraint("url", name="uq_record_urls_url"),
        sa.Index("ix_record_urls_ncj_number", "ncj_number"),
    )


def upgrade() -> None:
    op.add_column("crawl_runs", sa.Column("heartbeat_at", _timestamp(), nullable=True))
    with op.batch_alter_table("record_urls", copy_from=_record_urls_before()) as batch:
        batch.add_column(sa.Column("gap_reason", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("gap_detail", sa.Text(), nullable=True))
        batch.add_column(sa.Column("gap_since", _timestamp(), nullable=True))
        batch.add_column(
            sa.Column("gap_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch.add_column(sa.Column("retry_at", _timestamp(), nullable=True))
        batch.add_column(sa.Column("sitemap_url", sa.Text(), nullable=True))
        batch.add_column(sa.Column("requested_url", sa.Text(), nullable=True))
        batch.drop_constraint(op.f("ck_record_urls_kind"), type_="check")
        batch.create_check_constraint(
            op.f("ck_record_urls_kind"), sa.text(f"kind IN ({_NEW_KINDS})")
        )
        batch.create_check_constraint(
            op.f("ck_record_urls_gap_reason"), sa.text(f"gap_reason IN ({_GAP_REASONS})")
        )
        batch.create_index(op.f("ix_record_urls_retry_at"), ["retry_at"])
        batch.create_index(op.f("ix_record_urls_sitemap_url"), ["sitemap_url"])
    # Pages remembered as "not a record" before the ledger are soft errors at record URLs
    # (an empty body, a captcha, an outage page): ask for them again on the next run.
    op.execute(
        "UPDATE record_urls SET gap_reason = 'not_a_record', gap_attempts = 1, "
        "gap_since = last_seen_at, retry_at = last_seen_at "
        "WHERE kind IN ('no_record_fields', 'several_records', 'not_html')"
    )


def downgrade() -> None:
    op.execute("DELETE FROM record_urls WHERE kind = 'failed'")
    with op.batch_alter_table("record_urls") as batch:
        batch.drop_index(op.f("ix_record_urls_sitemap_url"))
        batch.drop_index(op.f("ix_record_urls_retry_at"))
        batch.drop_constraint(op.f("ck_record_urls_gap_reason"), type_="check")
        batch.drop_constraint(op.f("ck_record_urls_kind"), type_="check")
        batch.create_check_constraint(
            op.f("ck_record_urls_kind"), sa.text(f"kind IN ({_OLD_KINDS})")
        )
        for name in (
            "requested_url",
            "sitemap_url",
            "retry_at",
            "gap_attempts",
            "gap_since",
            "gap_detail",
        ):
            batch.drop_column(name)
        batch.drop_column("gap_reason")
    with op.batch_alter_table("crawl_runs") as batch:
        batch.drop_column("heartbeat_at")
