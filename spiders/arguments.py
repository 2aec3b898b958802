"""The spider's arguments (``-a NAME=VALUE``): the one list of them, and how they are checked.

Apart from the spider so that ``harvester crawl`` derives its options from the same list
without importing Scrapy (every ``harvester`` command would pay for it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from harvester.errors import BadArgument
from harvester.incremental import parse_since, truthy

T = TypeVar("T")


# How `harvester crawl` spells an argument: an option with a value, a repeatable option whose
# values are joined with commas, or a flag given as "1".
OptionKind = Literal["value", "repeatable", "flag"]


def _help(text: str, kind: OptionKind = "value") -> Any:
    return field(default=None, metadata={"help": text, "kind": kind})


@dataclass(frozen=True, slots=True)
class SpiderArguments:
    """The spider's arguments (``-a NAME=VALUE``), as given: the one list of them.

    ``harvester crawl`` and the README derive their options from it; ``crawl_runs.arguments``
    records those given.
    """

    sitemap: str | None = _help("Sitemap, sitemap index or robots.txt URLs, comma-separated.")
    listing: str | None = _help(
        "Listing or search-result page URLs, comma-separated; then next pages."
    )
    url: str | None = _help("Record page URLs, comma-separated.", "repeatable")
    urls_file: str | None = _help("A file of record page URLs, one a line.")
    ncj: str | None = _help("NCJ numbers, comma-separated (via NCJ_URL_TEMPLATE).", "repeatable")
    ncj_file: str | None = _help("A file of NCJ numbers, one a line.")
    full: str | None = _help("Re-check every page, not only new and changed ones (full=1).", "flag")
    since: str | None = _help("YYYY-MM-DD: re-check the sitemap entries modified since.")
    max_requests: str | None = _help("Stop after this many requests (0: no limit).")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata["help"] for f in fields(cls)}

    @classmethod
    def take(cls, kwargs: dict[str, Any]) -> SpiderArguments:
        """The spider's arguments out of ``kwargs``; BadArgument for a name the spider does not
        know (a typo would otherwise crawl the whole live site). Names starting with ``_`` are
        left to their owner (scrapyd's ``_job``)."""
        for name, value in kwargs.items():
            if name not in cls.names() and not name.startswith("_"):
                raise BadArgument(name, str(value), f"no such argument (known: {cls._known()})")
        return cls(**{name: kwargs.pop(name) for name in cls.names() if name in kwargs})

    @classmethod
    def option_kinds(cls) -> dict[str, OptionKind]:
        return {f.name: f.metadata["kind"] for f in fields(cls)}

    @classmethod
    def _known(cls) -> str:
        return ", ".join(cls.names())

    def given(self) -> dict[str, str]:
        return {name: value for name in self.names() if (value := getattr(self, name)) is not None}

    def check(self) -> CheckedArguments:
        """The arguments as the spider uses them; BadArgument for the first that cannot be
        used, so that a crawl never starts on a value it would misread or fail on later."""
        return CheckedArguments(
            sitemap_urls=[_http_url("sitemap", url) for url in _split(self.sitemap)],
            listing_urls=[_http_url("listing", url) for url in _split(self.listing)],
            record_urls=[_http_url("url", url) for url in _split(self.url)]
            + _from_file("urls_file", self.urls_file, _http_url),
            ncj_numbers=[_ncj_number("ncj", part) for part in _split(self.ncj)]
            + _from_file("ncj_file", self.ncj_file, _ncj_number),
            full=_flag("full", self.full),
            since=_date("since", self.since),
            max_requests=_count("max_requests", self.max_requests),
        )


@dataclass(frozen=True, slots=True)
class CheckedArguments:
    """``SpiderArguments`` read and checked: what the spider navigates by."""

    sitemap_urls: list[str]
    listing_urls: list[str]
    record_urls: list[str]
    ncj_numbers: list[int]
    full: bool
    since: datetime | None
    max_requests: int | None  # None: the HARVESTER_MAX_REQUESTS setting decides


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _from_file(name: str, path: str | None, read: Callable[[str, str], T]) -> list[T]:
    """The values of an arguments file, one a line (blank lines and ``#`` comments aside)."""
    if not path:
        return []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadArgument(name, path, "no such file") from None
    except IsADirectoryError:
        raise BadArgument(name, path, "is a directory, not a file") from None
    except UnicodeDecodeError:
        raise BadArgument(name, path, "is not UTF-8 text") from None
    except OSError as error:
        raise BadArgument(name, path, f"cannot be read ({error.strerror})") from None
    values = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            values.append(read(name, line))
        except BadArgument as error:
            raise BadArgument(name, path, f"line {number}, {line!r}: {error.reason}") from None
    return values


def _ncj_number(name: str, text: str) -> int:
    number = text.upper().removeprefix("NCJ").strip()
    if not number.isascii() or not number.isdigit() or int(number) < 1:
        raise BadArgument(name, text, "not an NCJ number (a whole number above 0, e.g. 250714)")
    return int(number)


def _http_url(name: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise BadArgument(name, url, "not an http(s) URL")
    try:
        parts.port  # noqa: B018 (reading it checks it)
    except ValueError:
        raise BadArgument(name, url, "its port is not a number from 0 to 65535") from None
    return url


def _flag(name: str, text: str | None) -> bool:
    if truthy(text):
        return True
    if (text or "").strip().lower() in ("", "0", "false", "no", "off"):
        return False
    raise BadArgument(name, str(text), "not a yes/no value (1 or 0)")


def _date(name: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_since(text)
    except ValueError:
        raise BadArgument(name, text, "not a date (YYYY-MM-DD)") from None


def _count(name: str, text: str | None) -> int | None:
    if text is None:
        return None
    stripped = text.strip()
    if not stripped.isascii() or not stripped.isdigit():
        raise BadArgument(name, text, "not a whole number (0 or more; 0: no limit)")
    return int(stripped) or None
