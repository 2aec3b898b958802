"""Record history and provenance: what ``store.write_batch`` records besides the record itself.

For every record it writes, in the same transaction:

- ``record_versions``: a version whenever the normalized content changes. Version 1 is the
  first sighting and holds every field as ``{"new": value}``; later versions hold only the
  fields that changed, as ``{"old": value, "new": value}``, in the terms of
  ``harvester.normalize.record_content``. Folding ``new`` over versions 1..n gives the content
  of version n, so the stored content a change is compared with is read from the versions
  themselves (one query per chunk of changed records), not kept twice.
- A record written twice in one run (a richer page of it arrived in a later batch) keeps one
  version for that run, compared with the content before the run; if the run ends where it
  started, the run leaves no version. So a run's versions do not depend on arrival order.
- ``records.parser_version`` and ``records.raw_page_sha256``: which parser derived the stored
  content from which stored page (``raw_pages``, harvester.rawpages). A page whose record is
  unchanged is not stored again, unless the record has no page yet or was last derived by
  another parser version.

Records stored before versions existed (schema 0001) get version 1 at their first change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Column, Connection, Table, bindparam, delete, func, insert, select, update

from harvester import models
from harvester.db import chunks
from harvester.items import FetchedPage, Record
from harvester.normalize import record_content
from harvester.parsing import PARSER_VERSION
from harvester.rawpages import PageCodec

RECORDS: Table = models.Record.__table__
VERSIONS: Table = models.RecordVersion.__table__
# Read with each stored record's hash and layout, to decide what to note for unchanged ones.
STORED_COLUMNS: tuple[Column[Any], ...] = (RECORDS.c.parser_version, RECORDS.c.raw_page_sha256)


def first_sighting(content: Mapping[str, Any]) -> dict[str, Any]:
    return {name: {"new": value} for name, value in content.items()}


def changes_between(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The fields whose value differs, in ``after``'s field order."""
    return {
        name: {"old": before.get(name), "new": value}
        for name, value in after.items()
        if before.get(name) != value
    }


def content_of(changes_in_order: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The content after these versions' changes (version 1 first)."""
    content: dict[str, Any] = {}
    for changes in changes_in_order:
        for name, change in changes.items():
            content[name] = change["new"]
    return content


@dataclasses.dataclass(frozen=True, slots=True)
class _StoredVersion:
    version: int
    crawl_run_id: int | None
    changes: dict[str, Any]


@dataclasses.dataclass
class WrittenBatch:
    """The provenance columns of a batch's new and changed records, and their versions."""

    row_values: dict[int, dict[str, Any]]
    inserts: list[dict[str, Any]]
    updates: list[dict[str, Any]]
    deletes: list[tuple[int, int]]

    def values_for(self, record: Record) -> dict[str, Any]:
        assert record.ncj_number is not None
        return self.row_values[record.ncj_number]

    def write_versions(self, connection: Connection) -> None:
        """After the records: versions reference them."""
        for ncj_number, version in self.deletes:
            connection.execute(
                delete(VERSIONS).where(
                    VERSIONS.c.ncj_number == ncj_number, VERSIONS.c.version == version
                )
            )
        if self.updates:
            connection.execute(
                update(VERSIONS)
                .where(
                    VERSIONS.c.ncj_number == bindparam("key"),
                    VERSIONS.c.version == bindparam("number"),
                )
                .values({name: bindparam(f"new_{name}") for name in _UPDATED}),
                [
                    {
                        "key": row["ncj_number"],
                        "number": row["version"],
                        **{f"new_{name}": row[name] for name in _UPDATED},
                    }
                    for row in self.updates
                ],
            )
        if self.inserts:
            connection.execute(insert(VERSIONS), self.inserts)


_UPDATED = (
    "content_hash",
    "changes",
    "changed_fields",
    "parser_version",
    "source_url",
    "raw_page_sha256",
    "observed_at",
)


@dataclasses.dataclass
class RecordHistory:
    """How a writer records versions and provenance.

    ``sighting`` is False for re-derivations from stored pages (re-parse, quarantine replay):
    they change what is known about a record, not when it was last seen on the site.
    """

    parser_version: int = PARSER_VERSION
    sighting: bool = True
    codec: PageCodec = dataclasses.field(default_factory=PageCodec)

    def seen(self, now: datetime) -> dict[str, Any]:
        """The columns an unchanged record's sighting touches."""
        return {"last_seen_at": now} if self.sighting else {}

    def rewritten(self, columns: Iterable[str]) -> list[str]:
        """Of the columns an upsert of a new or changed record rewrites, the ones this writer
        rewrites: a re-derivation saw nothing on the site, so ``last_seen_at`` stays."""
        kept = () if self.sighting else ("last_seen_at",)
        return [name for name in columns if name not in kept]

    def quarantine_rows(
        self, connection: Connection, rows: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Store the pages the rows carry (key ``fetched_page``) and reference them instead."""
        pages = [row["fetched_page"] for row in rows if row.get("fetched_page") is not None]
        self.codec.store(connection, pages)
        result = []
        for row in rows:
            page = row.get("fetched_page")
            values = {key: value for key, value in row.items() if key != "fetched_page"}
            values["raw_page_sha256"] = page.sha256 if page is not None else None
            values.setdefault("parser_version", self.parser_version)
            result.append(values)
        return result

    def confirm(
        self,
        connection: Connection,
        records: Sequence[Record],
        stored: Mapping[int, Any],
        pages: Mapping[int, FetchedPage],
    ) -> None:
        """Records whose content is unchanged: note the parser that confirmed it, and a page.

        A record already confirmed by this parser version and holding a page is left alone:
        a new copy of an unchanged page would only cost space.
        """
        notes: list[dict[str, Any]] = []
        to_store: list[FetchedPage] = []
        for record in records:
            assert record.ncj_number is not None
            row = stored[record.ncj_number]
            page = pages.get(record.ncj_number)
            same_parser = row.parser_version == self.parser_version
            if same_parser and (row.raw_page_sha256 is not None or page is None):
                continue
            notes.append(
                {
                    "key": record.ncj_number,
                    "version_of_parser": self.parser_version,
                    # A page read by an older parser is no longer known to give this content.
                    "page_key": page.sha256 if page is not None else None,
                }
            )
            if page is not None:
                to_store.append(page)
        if not notes:
            return
        self.codec.store(connection, to_store)
        connection.execute(
            update(RECORDS)
            .where(RECORDS.c.ncj_number == bindparam("key"))
            .values(
                parser_version=bindparam("version_of_parser"),
                raw_page_sha256=bindparam("page_key"),
            ),
            notes,
        )

    def prepare(
        self,
        connection: Connection,
        writes: Sequence[tuple[Record, str]],
        stored: Mapping[int, Any],
        pages: Mapping[int, FetchedPage],
        *,
        now: datetime,
        run_id: int | None,
    ) -> WrittenBatch:
        """Store the pages of the records about to be written and work out their versions."""
        self.codec.store(
            connection,
            # the records written were validated: each has its number
            [pages[cast(int, r.ncj_number)] for r, _ in writes if r.ncj_number in pages],
        )
        changed = [record.ncj_number for record, _ in writes if record.ncj_number in stored]
        earlier = _stored_versions(connection, changed)
        batch = WrittenBatch(row_values={}, inserts=[], updates=[], deletes=[])
        for record, digest in writes:
            key = record.ncj_number
            assert key is not None
            page = pages.get(key)
            page_key = page.sha256 if page is not None else None
            batch.row_values[key] = {
                "parser_version": self.parser_version,
                "raw_page_sha256": page_key,
            }
            versions = earlier.get(key, [])
            # Written already in this run: that run's version is replaced, not followed.
            replacing = (
                versions[-1]
                if versions and run_id is not None and versions[-1].crawl_run_id == run_id
                else None
            )
            before = versions[:-1] if replacing else versions
            content = record_content(record)
            if before:
                changes = changes_between(content_of(v.changes for v in before), content)
            else:
                changes = first_sighting(content)
            if not changes:  # back where it was before this run (or only the hash moved)
                if replacing is not None:
                    batch.deletes.append((key, replacing.version))
                continue
            row = {
                "ncj_number": key,
                "version": before[-1].version + 1 if before else 1,
                "content_hash": digest,
                "changes": changes,
                "changed_fields": ",".join(changes),
                "crawl_run_id": run_id,
                "parser_version": self.parser_version,
                "source_url": record.source_url,
                "raw_page_sha256": page_key,
                "observed_at": now,
            }
            (batch.updates if replacing else batch.inserts).append(row)
        return batch


def _stored_versions(
    connection: Connection, keys: Sequence[int | None]
) -> dict[int, list[_StoredVersion]]:
    """Every version of these records, oldest first: one query per chunk of keys."""
    found: dict[int, list[_StoredVersion]] = {}
    for chunk in chunks(keys):
        query = (
            select(VERSIONS.c.ncj_number, VERSIONS.c.version, VERSIONS.c.crawl_run_id)
            .add_columns(VERSIONS.c.changes)
            .where(VERSIONS.c.ncj_number.in_(chunk))
            .order_by(VERSIONS.c.ncj_number, VERSIONS.c.version)
        )
        for key, version, run_id, changes in connection.execute(query):
            found.setdefault(key, []).append(_StoredVersion(version, run_id, changes))
    return found


def versions_of_run(connection: Connection, run_id: int) -> int:
    """How many versions a run left."""
    query = select(func.count()).select_from(VERSIONS).where(VERSIONS.c.crawl_run_id == run_id)
    return int(connection.scalar(query) or 0)


def record_history(connection: Connection, ncj_number: int) -> list[dict[str, Any]]:
    """The versions of one record, oldest first, each with the full content after it."""
    query = select(VERSIONS).where(VERSIONS.c.ncj_number == ncj_number).order_by(VERSIONS.c.version)
    history: list[dict[str, Any]] = []
    content: dict[str, Any] = {}
    for row in connection.execute(query).mappings():
        content = {**content, **{name: change["new"] for name, change in row["changes"].items()}}
        history.append({**row, "content": content})
    return history
