"""Distributed runs (harvester/distributed.py): one run shared by many worker processes.

``distributed_runs`` holds the shared run; each worker's own ``crawl_runs`` row names it
(``distributed_run_id``) and says whether the worker has nothing in hand (``idle_since``);
``record_urls.visited_run_id`` is the crawl run that last wrote a URL's state, answer or
failure, so the coordinator can tell which of the run's URLs were never answered.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 00:00:00

Hand-written, no application imports. New nullable columns only: no rewrite of existing rows.
The new references are plain integers, not foreign keys: SQLite cannot add a foreign key to
an existing table without rebuilding it (and the views that read it).
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "distributed_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("spider", sa.Text(), nullable=False),
        sa.Column("arguments", _json(), nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("started_at", _timestamp(), nullable=False),
        sa.Column("finished_at", _timestamp(), nullable=True),
        sa.Column("finish_reason", sa.Text(), nullable=True),
        sa.Column("issued", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("repushed", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_distributed_runs")),
        sa.UniqueConstraint("token", name=op.f("uq_distributed_runs_token")),
    )
    op.add_column("crawl_runs", sa.Column("distributed_run_id", sa.Integer(), nullable=True))
    op.add_column("crawl_runs", sa.Column("idle_since", _timestamp(), nullable=True))
    op.add_column("record_urls", sa.Column("visited_run_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    # Not batch mode: SQLite (3.35+) drops a column in place, while rebuilding the tables would
    # break the views that read them (0004).
    op.drop_column("record_urls", "visited_run_id")
    op.drop_column("crawl_runs", "idle_since")
    op.drop_column("crawl_runs", "distributed_run_id")
    op.drop_table("distributed_runs")
