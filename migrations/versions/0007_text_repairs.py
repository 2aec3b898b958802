"""records.text_repairs: how a record's text was corrected on the way in (a mislabelled charset
overruled, mojibake repaired), so repaired records can be found and checked.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 00:00:00

Hand-written, no application imports. A nullable column: no rewrite of existing rows.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("records", sa.Column("text_repairs", _json(), nullable=True))


def downgrade() -> None:
    # Not batch mode: SQLite (3.35+) drops a column in place, while rebuilding records would
    # break the views that read it (0004).
    op.drop_column("records", "text_repairs")
