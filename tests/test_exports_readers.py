"""Exports read back by tools nobody here wrote: the demo database (`harvester demo`, a real
crawl of the local site) exported in RIS, BibTeX and CSL-JSON, each file read by at least two
independent readers (tests/readers/harness.py), every entry compared with the database.

Compared: title with its letter case, authors in order with organisations whole, year,
container (journal or book), volume, issue, pages and publisher. The only normalisations are
those of ``comparable`` and ``expected``, each one a property of a format, not of a record;
docs/crosswalk.md lists them.

A reader that is not installed skips its test here, and fails it under CI (CI=true), where
.ci/run installs them all (pandoc, bibutils, `npm ci` in tests/readers, pybtex from [test]).
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from harvester.exports import export
from tests.conftest import in_ci
from tests.readers.harness import Author, Reader, ReaderMissing, Reading, readers


@dataclass(frozen=True, slots=True)
class Stored:
    """A record's compared fields, straight from the database's tables."""

    ncj_number: int
    title: str
    persons: tuple[tuple[str, str, str], ...]  # family, given, suffix
    organisations: tuple[str, ...]  # persons without a family name, then corporate authors
    corporate: tuple[str, ...]  # corporate authors
    year: int | None
    journal: str | None
    book: str | None
    volume: str | None
    issue: str | None
    pages: str | None
    page_count: int | None
    publisher: str | None
    sponsors: tuple[str, ...]
    kind: str  # the export's kind of record: journal-article, chapter, book or report


def stored_records(path: Path) -> dict[int, Stored]:
    with sqlite3.connect(path) as connection:
        people: dict[int, dict[str, list[tuple[str | None, ...]]]] = {}
        for number, role, shown, family, given, suffix, kind in connection.execute(
            "SELECT rc.ncj_number, rc.role, rc.name_as_shown, c.family, c.given, c.suffix,"
            " c.kind FROM record_contributors rc JOIN contributors c ON c.id = rc.contributor_id"
            " ORDER BY rc.ncj_number, rc.role, rc.position"
        ):
            people.setdefault(number, {}).setdefault(role, []).append(
                (shown, family, given, suffix, kind)
            )
        sponsors: dict[int, list[str]] = {}
        for number, name in connection.execute(
            "SELECT ncj_number, name_as_shown FROM record_agencies WHERE role = 'sponsor'"
            " ORDER BY ncj_number, position"
        ):
            sponsors.setdefault(number, []).append(name)
        records = {}
        for row in connection.execute(
            "SELECT ncj_number, title, published_year, journal_name, book_title, part_of,"
            " journal_volume, journal_issue, journal_pages, part_pages, page_count, publisher,"
            " publication_format FROM records"
        ):
            (number, title, year, journal, book, part_of, volume, issue, journal_pages,
             part_pages, page_count, publisher, publication_format) = row  # fmt: skip
            authors = people.get(number, {})
            named = [a for a in authors.get("author", []) if a[1] and a[4] == "person"]
            unnamed = [a for a in authors.get("author", []) if a not in named]
            if journal:
                kind = "journal-article"
            elif part_of is not None or book:
                kind = "chapter"
            elif (publication_format or "").lower().startswith("book"):
                kind = "book"
            else:
                kind = "report"
            records[number] = Stored(
                ncj_number=number,
                title=title,
                persons=tuple((a[1], a[2] or "", a[3] or "") for a in named),  # type: ignore[misc]
                organisations=tuple(
                    str(a[0]) for a in [*unnamed, *authors.get("corporate_author", [])]
                ),
                corporate=tuple(str(a[0]) for a in authors.get("corporate_author", [])),
                year=year,
                journal=journal,
                book=book,
                volume=volume,
                issue=issue,
                pages=journal_pages or part_pages,
                page_count=page_count,
                publisher=publisher,
                sponsors=tuple(sponsors.get(number, [])),
                kind=kind,
            )
    return records


# --- what a reader should find, and what may legitimately differ -------------------------------

_MARKUP = re.compile(r"</?(?:span|i|b|sup|sub|sc)\b[^>]*>")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})
_PAGE_DASH = re.compile(r"(?<=\w)\s*(?:-+|\u2013|\u2014)\s*(?=\w)")


def comparable(value: str | None, *, pages: bool = False) -> str | None:
    """The normalisations every comparison applies (docs/crosswalk.md, "Checked with"):

    - whitespace runs are one space: RIS has one line per value, and BibTeX, LaTeX and CSL
      processors treat a run of whitespace as one space;
    - CSL's rich-text markup is dropped: pandoc writes the words BibTeX braces protect as
      ``<span class="nocase">`` in CSL-JSON, which is how CSL protects letter case;
    - typographic quotes are straight quotes: in LaTeX ``'`` is a closing single quote, and
      pandoc writes it as one (U+2019);
    - in page ranges any dash is ``-``: BibTeX writes a range ``5--40`` and CSL readers
      ``5–40`` (en dash), both meaning 5-40.
    """
    if value is None:
        return None
    value = _MARKUP.sub("", value).translate(_QUOTES)
    value = " ".join(value.split())
    if pages:
        value = _PAGE_DASH.sub("-", value)
    return value or None


def ris_organisation(name: str) -> str:
    """RIS splits every name at its commas and has no escape, so the RIS export writes an
    organisation's comma as a space (harvester.exports.ris_name)."""
    return " ".join(name.replace(",", " ").split())


def bibtex_institution(record: Stored) -> str | None:
    """The organisation a BibTeX report names as its ``institution`` (harvester.exports):
    the publisher, else the first corporate author, else the first sponsoring agency."""
    names = [record.publisher] if record.publisher else []
    names += [*record.corporate, *record.sponsors]
    return names[0] if names else None


def expected(record: Stored, export_format: str, *, bibutils_quirks: bool = False) -> Reading:
    organisations = record.organisations
    if export_format == "ris":
        organisations = tuple(ris_organisation(name) for name in organisations)
        if bibutils_quirks:
            # bibutils splits a name at " and " (BibTeX's separator), in RIS too.
            organisations = tuple(p for name in organisations for p in name.split(" and "))
    authors: tuple[Author, ...] = (
        *(("person", *person) for person in record.persons),
        *(("literal", name) for name in organisations),
    )
    pages = record.pages
    publisher = record.publisher
    counted = record.kind in ("book", "report") and record.page_count is not None
    if export_format == "ris" and counted:
        # RIS's SP is a book's or report's number of pages (RIS spec: "Number of Pages",
        # "Pages"; Zotero: numPages, a report's pages); readers give it back as its pages.
        pages = str(record.page_count)
    if export_format == "bibtex" and record.kind == "report":
        # A BibTeX report's publisher is its institution (Zotero: report publisher ->
        # institution); CSL readers read institution back as publisher.
        publisher = bibtex_institution(record)
    return Reading(
        ncj_number=record.ncj_number,
        title=record.title,
        authors=authors,
        year=record.year,
        container=record.journal or record.book,
        volume=record.volume,
        issue=record.issue,
        pages=pages,
        publisher=publisher,
    )


_SPACED_INITIALS = re.compile(r"(?<=\b\w\.) (?=\w\.)")
_PERIOD = re.compile(r"\.")


def normalised(reading: Reading, *, bibutils_quirks: bool = False) -> Reading:
    """``comparable`` on every field, plus what a reader's own representation cannot hold:

    - a name of one part (a family name alone) is a name kept whole: BibTeX has no mark for
      an organisation but braces, which make a name one unsplittable part, and citation-js
      reads ``{RAND Corporation}`` as the family name ``RAND Corporation``;
    - initials are compared unspaced: pandoc writes the suffix ``M.D.`` as ``M. D.``;
    - for bibutils (see harness.Reader): periods in given names and suffixes (it writes an
      initial as its letter); given names and suffix compared as one set of words (it
      mixes them up in three-part names: BibTeX's ``Family, Suffix, Given`` becomes given
      ``Suffix, Given``, RIS's ``Family, Given, Suffix`` given ``Suffix``); an en dash for
      ``--``; and pages without a digit ("complete issue", "Insert"), which it cannot
      hold in a MODS page extent.
    """

    def text(value: str | None) -> str | None:
        value = comparable(value)
        if bibutils_quirks and value is not None:
            value = value.replace("--", "\u2013")
        return value

    def name(author: Author) -> Author:
        parts = tuple(_SPACED_INITIALS.sub("", text(part) or "") for part in author)
        if parts[0] == "person" and not any(parts[2:]):
            return ("literal", parts[1])
        if parts[0] == "person" and bibutils_quirks:
            kind, family, given, suffix = parts
            words = sorted(_PERIOD.sub("", f"{given} {suffix}").replace(",", " ").split())
            return (kind, family, " ".join(words), "")
        return parts

    return Reading(
        ncj_number=reading.ncj_number,
        title=text(reading.title),
        authors=tuple(name(a) for a in reading.authors),
        year=reading.year,
        container=text(reading.container),
        volume=text(reading.volume),
        issue=text(reading.issue),
        pages=(
            None
            if bibutils_quirks and not re.search(r"\d", reading.pages or "")
            else comparable(reading.pages, pages=True)
        ),
        publisher=text(reading.publisher),
    )


def lacks(record: Stored, field: str) -> bool:
    """Whether the record has nothing for a field a bibliography style requires."""
    if field == "author":
        return not (record.persons or record.organisations)
    if field == "year":
        return record.year is None
    if field == "publisher":
        return record.publisher is None
    return False  # title, journal, booktitle, institution: the export always has them


def mismatches(
    records: dict[int, Stored],
    readings: list[Reading],
    export_format: str,
    *,
    bibutils_quirks: bool = False,
) -> list[str]:
    """One line per entry field the reader got wrong, and per entry it lost or invented."""
    found = [r.ncj_number for r in readings]
    problems = [f"NCJ {n}: read {found.count(n)} times" for n in sorted(set(found))
                if found.count(n) > 1]  # fmt: skip
    problems += [f"NCJ {n}: not read back" for n in sorted(set(records) - set(found))]
    problems += [f"NCJ {n}: not in the database" for n in sorted(set(found) - set(records))]
    for reading in readings:
        if reading.ncj_number not in records:
            continue
        record = records[reading.ncj_number]
        want = normalised(
            expected(record, export_format, bibutils_quirks=bibutils_quirks),
            bibutils_quirks=bibutils_quirks,
        )
        got = normalised(reading, bibutils_quirks=bibutils_quirks)
        problems += [
            f"NCJ {reading.ncj_number}: the style cannot format it without {field!r}"
            for field in reading.missing
            if not lacks(record, field)
        ]
        for field in fields(Reading):
            if field.name == "missing":
                continue
            if getattr(got, field.name) != getattr(want, field.name):
                problems.append(
                    f"NCJ {reading.ncj_number} {field.name}: read {getattr(got, field.name)!r},"
                    f" stored {getattr(want, field.name)!r}"
                )
    return problems


# --- the demo database and its exports ---------------------------------------------------------


@pytest.fixture(scope="module")
def demo_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`harvester demo`: serve the local site (300 generated records) and crawl it, as a user
    does after installing (about 6 s)."""
    path = tmp_path_factory.mktemp("demo") / "ncjrs-demo.sqlite"
    command = [sys.executable, "-c", "from harvester.cli import main; main()", "demo",
               "--database", str(path)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return path


@pytest.fixture(scope="module")
def exported(demo_database: Path) -> dict[str, Path]:
    engine = create_engine(f"sqlite:///{demo_database}")
    files = {}
    try:
        with engine.connect() as connection:
            for export_format in ("ris", "bibtex", "csl-json"):
                path = demo_database.with_suffix(f".{export_format}")
                with path.open("w", encoding="utf-8", newline="") as out:
                    export(connection, export_format, out)
                files[export_format] = path
    finally:
        engine.dispose()
    return files


@pytest.fixture(scope="module")
def records(demo_database: Path) -> dict[int, Stored]:
    return stored_records(demo_database)


def _organisations(records: dict[int, Stored]) -> Iterator[str]:
    for record in records.values():
        yield from (ris_organisation(name) for name in record.organisations)


_RECORDS_FOR_READERS: dict[int, Stored] = {}
READERS = readers(lambda: sorted(set(_organisations(_RECORDS_FOR_READERS))))


def test_every_format_has_two_independent_readers_or_more() -> None:
    for export_format in ("ris", "bibtex", "csl-json"):
        programs = {r.name.split()[0] for r in READERS if r.export_format == export_format}
        assert len(programs) >= 2, (export_format, programs)


@pytest.mark.parametrize("reader", READERS, ids=[r.name for r in READERS])
def test_a_reader_reads_every_entry_as_stored(
    reader: Reader, exported: dict[str, Path], records: dict[int, Stored]
) -> None:
    _RECORDS_FOR_READERS.clear()
    _RECORDS_FOR_READERS.update(records)
    try:
        readings = reader.read(exported[reader.export_format])
    except ReaderMissing as missing:
        if in_ci():
            pytest.fail(f"{reader.name}: {missing}; .ci/run installs it", pytrace=False)
        pytest.skip(f"{reader.name}: {missing}")
    problems = mismatches(
        records, readings, reader.export_format, bibutils_quirks=reader.bibutils_quirks
    )
    assert len(readings) == len(records) >= 250
    assert not problems, (
        f"{reader.name} ({reader.version()}) on {reader.export_format}: {len(problems)}"
        " mismatches:\n" + "\n".join(problems[:40])
    )
