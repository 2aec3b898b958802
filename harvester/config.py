"""The one place that decides which database the crawler, Alembic and the CLI talk to."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

DEFAULT_DATABASE_URL = "sqlite:///ncjrs.sqlite"


def database_url(settings: Mapping[str, Any] | None = None) -> str:
    """`-s DATABASE_URL=...` wins over the DATABASE_URL environment variable, then the default.

    Scrapy's settings object is passed in from the crawler; Alembic and the CLI pass nothing.
    """
    if settings is not None:
        configured = settings.get("DATABASE_URL")
        if configured:
            return str(configured)
    return os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
