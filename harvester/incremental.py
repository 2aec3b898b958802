"""Which record pages a crawl fetches again, and how: the incremental-crawl policy.

Pure decisions over the stored URL state (``harvester.urlstate.KnownPage``) and what the
sitemap says; the spider applies them.

- A URL never stored is fetched.
- A sitemap entry whose ``lastmod`` is not newer than the one stored with the page is not
  requested at all.
- Everything else that was fetched before goes out as a conditional request
  (``If-None-Match`` / ``If-Modified-Since``): an unchanged page answers 304, with no body.
- ``full`` re-checks every URL (still conditionally); ``since`` re-checks the entries whose
  ``lastmod`` is on or after that date, whatever is stored.
- A record's URL that answered 404/410 or a soft 404 is asked again on every run, whatever its
  ``lastmod``: each answer counts towards (or cancels) the record's withdrawal.
- A URL with a gap (its record is not stored: an error, a timeout, a page with no record, a
  quarantined or refused record) is asked again once its retry time has come, whatever its
  ``lastmod``, and without validators: what the failed fetch left must not be confirmed by a
  304.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time

from harvester.urlstate import GONE_KINDS, KnownPage


def parse_lastmod(text: str | None) -> datetime | None:
    """A sitemap ``<lastmod>`` (W3C datetime: a date, or a date and time) as aware UTC."""
    if not text:
        return None
    text = text.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), UTC)
        value = datetime.fromisoformat(text)
    except ValueError:
        return None  # an unreadable lastmod is no lastmod: the page is revalidated
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_since(text: str) -> datetime:
    """``-a since=YYYY-MM-DD`` as the start of that day, UTC."""
    try:
        return datetime.combine(date.fromisoformat(text.strip()), time(), UTC)
    except ValueError:
        raise ValueError(f"since={text!r} is not a date; use YYYY-MM-DD") from None


def truthy(value: str | bool | None) -> bool:
    if isinstance(value, bool):
        return value
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True, slots=True)
class RevisitPolicy:
    full: bool = False
    since: datetime | None = None
    conditional: bool = True  # send the stored validators (off: always fetch bodies)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))  # gaps due by then

    def wants(self, known: KnownPage | None, lastmod: datetime | None) -> bool:
        """Whether to request a sitemap entry with this ``lastmod``."""
        if known is None or self.full or lastmod is None or known.gap_due(self.started):
            return True
        if known.kind in GONE_KINDS and known.ncj_number is not None:
            return True  # a record's page that was gone: is it still? (withdrawals)
        if self.since is not None:
            return lastmod >= self.since
        return known.sitemap_lastmod is None or lastmod > known.sitemap_lastmod

    def wants_listed(self, known: KnownPage | None) -> bool:
        """Whether to request a record linked from a listing (listings carry no lastmod).

        A listing finds new records; pages already stored are re-checked by ``full``.
        """
        return known is None or self.full or known.gap_due(self.started)

    def headers(self, known: KnownPage | None) -> dict[str, str]:
        if known is None or not self.conditional or known.gap_reason is not None:
            return {}
        headers = {}
        if known.etag:
            headers["If-None-Match"] = known.etag
        if known.last_modified:
            headers["If-Modified-Since"] = known.last_modified
        return headers
