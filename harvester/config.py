"""The one place that decides which database (and, for a distributed run, which Redis server)
the crawler, Alembic and the CLI talk to."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DEFAULT_DATABASE_URL = "sqlite:///ncjrs.sqlite"


def database_url(settings: Mapping[str, Any] | None = None, option: str | None = None) -> str:
    """The command's ``--database`` option wins, then `-s DATABASE_URL=...`, then the
    DATABASE_URL environment variable, then the default.

    The option is a URL or the path of a SQLite file (``ncjrs-demo.sqlite``). Scrapy's
    settings object is passed in from the crawler; Alembic passes nothing.
    """
    if option:
        return option if "://" in option else sqlite_url(option)
    if settings is not None:
        configured = settings.get("DATABASE_URL")
        if configured:
            return str(configured)
    return os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL


def sqlite_url(path: str | Path) -> str:
    """The URL of a SQLite file, relative paths staying relative (to the current directory)."""
    return f"sqlite:///{path}"


def redis_url(settings: Mapping[str, Any] | None = None, option: str | None = None) -> str | None:
    """The Redis (or Valkey) server a distributed run shares (harvester/distributed.py), or
    None for a run on one machine: the command's option, then `-s HARVESTER_REDIS_URL=...`,
    then the HARVESTER_REDIS_URL environment variable."""
    if option:
        return option
    if settings is not None:
        configured = settings.get("HARVESTER_REDIS_URL")
        if configured:
            return str(configured)
    return os.environ.get("HARVESTER_REDIS_URL") or None


def shown_redis_url(url: str) -> str:
    """A Redis URL as it may be shown (log lines, errors): its password masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=f"{user}{host}{port}"))
