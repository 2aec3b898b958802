"""Exports of the stored records: RIS, BibTeX, CSL-JSON, JSON Lines and CSV.

Records are read in NCJ number order through one streaming query (a server-side cursor on
PostgreSQL, SQLite's own row-at-a-time cursor), a partition of ``CHUNK`` records at a time;
each partition's people, agencies, grants and subjects are fetched with one query per list,
and every record is written out before the next partition is read. Memory therefore stays
flat whatever the size of the database.

Which stored field goes where in each format is documented in docs/crosswalk.md; the
functions ``ris_entry``, ``bibtex_entry``, ``csl_item``, ``json_record`` and ``csv_row`` are
that crosswalk, one per format.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TextIO, cast

import rispy
from bibtexparser.entrypoint import write_string
from bibtexparser.library import Library
from bibtexparser.model import Entry, Field
from pylatexenc.latexencode import (
    RULE_DICT,
    RULE_REGEX,
    UnicodeToLatexConversionRule,
    UnicodeToLatexEncoder,
)
from sqlalchemy import (
    BindParameter,
    Connection,
    Integer,
    Select,
    bindparam,
    column,
    select,
    text,
)

from harvester import models
from harvester.search import matching_sql, parse_query

CHUNK = 500
DATABASE_NAME = "NCJRS Virtual Library"
LIST_SEPARATOR = "; "

_R = models.Record


@dataclass(frozen=True, slots=True)
class Name:
    """A person or organisation as one record names them."""

    name: str  # as this record's page shows it
    family: str | None
    given: str | None
    suffix: str | None
    kind: str  # person | organization


@dataclass(slots=True)
class ExportRecord:
    """A stored record with its lists, as the exports see it."""

    ncj_number: int
    title: str
    annotation: str | None
    abstract: str | None
    published_text: str | None
    published_year: int | None
    published_month: int | None
    published_day: int | None
    published_precision: str | None
    page_count: int | None
    journal_citation: str | None
    journal_name: str | None
    journal_volume: str | None
    journal_issue: str | None
    journal_dated: str | None
    journal_pages: str | None
    language: str | None
    country: str | None
    publication_type: str | None
    publication_format: str | None
    publication_series: str | None
    publisher: str | None
    note: str | None
    part_of: int | None
    part_pages: str | None
    book_title: str | None
    document_urls: list[str]
    source_url: str
    last_changed_at: datetime
    authors: list[Name] = field(default_factory=list)
    editors: list[Name] = field(default_factory=list)
    corporate_authors: list[Name] = field(default_factory=list)
    sponsoring_agencies: list[str] = field(default_factory=list)
    agencies: list[str] = field(default_factory=list)
    grant_numbers: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """journal-article, chapter, book or report: decides the RIS, BibTeX and CSL types."""
        if self.journal_name:
            return "journal-article"
        if self.part_of is not None or self.book_title:
            return "chapter"
        if (self.publication_format or "").lower().startswith("book"):
            return "book"
        return "report"

    @property
    def pages(self) -> str | None:
        """Pages within the journal or book, as shown (``24,26,28``, ``5-40``)."""
        return self.journal_pages or self.part_pages

    @property
    def container_title(self) -> str | None:
        return self.journal_name or self.book_title


_LIST_FIELDS = frozenset(
    {"authors", "editors", "corporate_authors", "sponsoring_agencies", "agencies"}
    | {"grant_numbers", "subjects"}
)
# The records columns ExportRecord holds, in its order.
_RECORD_COLUMNS = [
    getattr(_R, name) for name in ExportRecord.__dataclass_fields__ if name not in _LIST_FIELDS
]


def records_query(
    connection: Connection,
    *,
    since: datetime | None = None,
    query: str | None = None,
    ncj_numbers: Sequence[int] | None = None,
) -> Select[Any]:
    """The records to export, in NCJ number order: changed at or after ``since`` (UTC),
    holding every word of ``query`` (search words, see harvester.search), among
    ``ncj_numbers``."""
    statement = select(*_RECORD_COLUMNS).order_by(_R.ncj_number)
    if ncj_numbers is not None:
        statement = statement.where(_R.ncj_number.in_(ncj_numbers))
    if since is not None:
        statement = statement.where(_R.last_changed_at >= since)
    if query is not None:
        sql, params = matching_sql(connection, parse_query(query))
        matching = text(sql).bindparams(**params).columns(column("ncj_number", Integer))
        statement = statement.where(_R.ncj_number.in_(matching))
    return statement


def iter_records(
    connection: Connection,
    *,
    since: datetime | None = None,
    query: str | None = None,
    ncj_numbers: Sequence[int] | None = None,
    chunk: int = CHUNK,
) -> Iterator[ExportRecord]:
    """Every record to export with its lists, streamed (see the module docstring)."""
    statement = records_query(connection, since=since, query=query, ncj_numbers=ncj_numbers)
    result = connection.execution_options(stream_results=True, yield_per=chunk).execute(statement)
    for partition in result.partitions():
        records = [ExportRecord(**row._asdict()) for row in partition]
        _attach_lists(connection, records)
        yield from records


def _attach_lists(connection: Connection, records: Sequence[ExportRecord]) -> None:
    by_number = {record.ncj_number: record for record in records}
    numbers: BindParameter[list[int]] = bindparam("numbers", value=list(by_number), expanding=True)
    people = connection.execute(
        text(
            "SELECT rc.ncj_number, rc.role, rc.name_as_shown, c.family, c.given, c.suffix,"
            " c.kind FROM record_contributors rc JOIN contributors c ON c.id = rc.contributor_id"
            " WHERE rc.ncj_number IN :numbers ORDER BY rc.ncj_number, rc.role, rc.position"
        ).bindparams(numbers)
    )
    roles = {"author": "authors", "editor": "editors", "corporate_author": "corporate_authors"}
    for number, role, name, family, given, suffix, kind in people:
        getattr(by_number[number], roles[role]).append(Name(name, family, given, suffix, kind))
    agencies = connection.execute(
        text(
            "SELECT ncj_number, role, name_as_shown FROM record_agencies"
            " WHERE ncj_number IN :numbers ORDER BY ncj_number, role, position"
        ).bindparams(numbers)
    )
    for number, role, name in agencies:
        record = by_number[number]
        (record.sponsoring_agencies if role == "sponsor" else record.agencies).append(name)
    for table, value_column, attribute in (
        ("record_grants", "grant_number", "grant_numbers"),
        ("record_subjects", "subject", "subjects"),
    ):
        rows = connection.execute(
            text(
                f"SELECT ncj_number, {value_column} FROM {table} WHERE ncj_number IN :numbers"
                f" ORDER BY ncj_number, {value_column}"
            ).bindparams(numbers)
        )
        for number, value in rows:
            getattr(by_number[number], attribute).append(value)


# --- the crosswalk, one function per format -------------------------------------------------


def ncj_id(record: ExportRecord) -> str:
    return f"NCJ-{record.ncj_number}"


def _urls(record: ExportRecord) -> list[str]:
    return [record.source_url, *(u for u in record.document_urls if u != record.source_url)]


_RIS_TYPES = {"journal-article": "JOUR", "chapter": "CHAP", "book": "BOOK", "report": "RPRT"}


def ris_name(name: Name) -> str:
    """``Family, Given, Suffix`` for persons; an organisation as one name without a comma.

    Readers take a name without a comma for an organisation (Zotero, citation-js) and split
    every other name at its commas into family, given and suffix; RIS has no escape. So a
    comma inside an organisation's name becomes a space: ``Abt Associates, Inc`` is written
    ``Abt Associates Inc`` rather than read back as a person named Inc Abt Associates."""
    if name.kind == "organization" or not name.family:
        return " ".join(name.name.replace(",", " ").split())
    return ", ".join(part for part in (name.family, name.given, name.suffix) if part)


def ris_date(record: ExportRecord) -> str | None:
    """``YYYY/MM/DD/other`` with the parts the page gives; a season goes in ``other``."""
    if record.published_year is None:
        return None
    month = f"{record.published_month:02d}" if record.published_month else ""
    day = f"{record.published_day:02d}" if record.published_day else ""
    other = record.published_text if record.published_precision == "season" else ""
    return f"{record.published_year:04d}/{month}/{day}/{other or ''}"


def ris_line(value: str) -> str:
    """RIS has one line per value and no escapes: a line break inside a value would start a
    new tag (even ``ER``) or be joined with a space by readers, so whitespace runs become one
    space."""
    return " ".join(value.split())


def ris_url(url: str) -> str:
    """rispy, like other readers, splits ``UR`` values at ``;``: percent-encode it."""
    return url.replace(";", "%3B")


def ris_start_page(record: ExportRecord) -> str | None:
    """``SP``: the pages of an article or chapter; a book's or report's number of pages, as
    the RIS specification ("Number of Pages", "Pages") and Zotero's RIS translator write
    them. An article's or chapter's own page count has no RIS tag: the custom tags mean
    something else per type (``C4`` is a book's or chapter's reviewer, read as its author)."""
    if record.pages:
        return record.pages
    if record.kind in ("book", "report") and record.page_count is not None:
        return str(record.page_count)
    return None


def ris_entry(record: ExportRecord) -> dict[str, Any]:
    """A rispy entry (keys are rispy's names for RIS tags), every value on one line."""
    entry: dict[str, Any] = {
        "type_of_reference": _RIS_TYPES[record.kind],
        "id": ncj_id(record),
        "accession_number": str(record.ncj_number),
        "title": record.title,
        "authors": [ris_name(n) for n in record.authors + record.corporate_authors],
        "secondary_authors": [ris_name(n) for n in record.editors],
        "journal_name": record.journal_name,
        "secondary_title": record.book_title,
        "volume": record.journal_volume,
        "number": record.journal_issue,
        "start_page": ris_start_page(record),
        "year": str(record.published_year) if record.published_year is not None else None,
        "date": ris_date(record),
        "abstract": record.abstract,
        "notes": [record.annotation] if record.annotation else [],
        "note": record.note,
        "publisher": record.publisher,
        "language": record.language,
        "type_of_work": record.publication_type,
        "keywords": list(record.subjects),
        "urls": [ris_url(url) for url in _urls(record)],
        "custom1": LIST_SEPARATOR.join(record.sponsoring_agencies) or None,
        "custom2": LIST_SEPARATOR.join(record.grant_numbers) or None,
        "custom3": LIST_SEPARATOR.join(record.agencies) or None,
        "name_of_database": DATABASE_NAME,
    }
    one_line = {
        key: [ris_line(v) for v in value] if isinstance(value, list) else ris_line(value)
        for key, value in entry.items()
        if value not in (None, [], "")
    }
    return {key: value for key, value in one_line.items() if value not in ("", [])}


_BIBTEX_TYPES = {
    "journal-article": "article",
    "chapter": "incollection",
    "book": "book",
    "report": "techreport",
}
# pylatexenc (bibtexparser's own dependency) turns & % $ # _ { } ~ \ and non-ASCII letters
# into LaTeX, so that classic BibTeX and LaTeX read the values as written. The extra rule
# breaks TeX's ligatures: NCJRS writes "--" for a dash, which LaTeX would set as an en dash
# (likewise `` '' ?` !`). A straight double quote stays one: pylatexenc would make it '',
# a closing curly quote.
_NO_LIGATURES = UnicodeToLatexConversionRule(
    rule_type=RULE_REGEX,
    rule=[(re.compile(r"([-`'!?])(?=[-`'])"), r"\1{}"), (re.compile('"'), '"')],
)
# pylatexenc writes an accented i on a dotless i (\'\i), the plain-TeX way; readers then give
# back a dotless i and a combining accent (ı́) for í. \'i is what LaTeX and readers take.
_ACCENTED_I = UnicodeToLatexConversionRule(
    rule_type=RULE_DICT,
    rule={ord("í"): r"\'i", ord("ì"): r"\`i", ord("î"): r"\^i", ord("ï"): r"\"i"},
)
_LATEX = UnicodeToLatexEncoder(
    non_ascii_only=False,
    unknown_char_policy="keep",
    conversion_rules=[_NO_LIGATURES, _ACCENTED_I, "defaults"],
)


# The same output as _LATEX for ASCII text, which is nearly all NCJRS text, at a hundredth of
# the cost (pylatexenc examines one character at a time in Python).
_ASCII_LATEX = str.maketrans(
    {
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"{\textasciitilde}",
        "^": r"{\textasciicircum}",
        "\\": r"{\textbackslash}",
        "<": r"\ensuremath{<}",
        ">": r"\ensuremath{>}",
    }
)
_LIGATURE = re.compile(r"([-`'!?])(?=[-`'])")


def latex(value: str) -> str:
    if value.isascii():
        return _LIGATURE.sub(r"\1{}", value.translate(_ASCII_LATEX))
    # pylatexenc ships no annotations (the override in pyproject.toml)
    return cast(str, _LATEX.unicode_to_latex(value))


def bibtex_name(name: Name) -> str:
    """``Family, Suffix, Given`` (BibTeX's order) for persons; organisations in braces, so
    that neither a comma nor an ``and`` inside them splits them."""
    if name.kind == "organization" or not name.family:
        return "{" + latex(name.name) + "}"
    parts = [name.family, name.suffix, name.given] if name.suffix else [name.family, name.given]
    return ", ".join(latex(part) for part in parts if part)


_WORD = re.compile(r"[^\W_]+")  # a run of letters and digits


def case_protected(value: str) -> str:
    """LaTeX for a title whose letter case must survive: every word holding a capital is
    braced, as Zotero's BibTeX export does, because BibTeX styles and pandoc lower-case
    unbraced words (``FINDINGS FROM {A} SURVEY``, ``{DNA} {Evidence}``). A title's first
    word is left bare when its only capital is its first letter: sentence case keeps it."""
    parts: list[str] = []
    position = 0
    for match in _WORD.finditer(value):
        parts.append(latex(value[position : match.start()]))
        word, encoded = match.group(), latex(match.group())
        initial_only = match.start() == 0 and not any(c.isupper() for c in word[1:])
        if any(c.isupper() for c in word) and not initial_only:
            # A group that starts with a backslash is one accented letter to BibTeX, whose
            # case it does change: an empty group first keeps it an ordinary, protected one.
            encoded = "{" + ("{}" if encoded.startswith("\\") else "") + encoded + "}"
        parts.append(encoded)
        position = match.end()
    parts.append(latex(value[position:]))
    return "".join(parts)


def bibtex_pages(pages: str) -> str:
    """A page range with BibTeX's ``--`` (Zotero writes it so): ``5-40`` -> ``5--40``."""
    return "--".join(latex(part) for part in re.split(r"\s*[-\u2010-\u2015]+\s*", pages))


def bibtex_institution(record: ExportRecord) -> str | None:
    """A report's ``institution`` (required by @techreport): its publisher (where Zotero puts
    a report's publisher), else the first organisation that wrote it, else the first agency
    that sponsored it (BibTeX's definition: "the sponsoring institution of a technical
    report"). One name: biblatex reads the field as a list split at ``and``."""
    names = [record.publisher] if record.publisher else []
    names += [n.name for n in record.corporate_authors] + record.sponsoring_agencies
    return names[0] if names else None


def bibtex_literal(value: str) -> str:
    """An organisation's name in braces: biblatex (and pandoc, citation-js) read publisher and
    institution as lists split at ``and`` ("Home Office Research and Planning Unit")."""
    return "{" + latex(value) + "}"


def bibtex_type(record: ExportRecord) -> str:
    """A report without any institution is a @misc: @techreport requires one, and an
    invented institution would be wrong."""
    if record.kind == "report" and bibtex_institution(record) is None:
        return "misc"
    return _BIBTEX_TYPES[record.kind]


def bibtex_entry(record: ExportRecord) -> Entry:
    """A bibtexparser entry, values LaTeX-encoded; key ``ncj<number>``."""
    # Zotero's convention: a report's publisher is its institution.
    report = record.kind == "report"
    institution = bibtex_institution(record) if report else None
    values: dict[str, str | None] = {
        "title": case_protected(record.title),
        "author": " and ".join(bibtex_name(n) for n in record.authors + record.corporate_authors),
        "editor": " and ".join(bibtex_name(n) for n in record.editors),
        "journal": record.journal_name and latex(record.journal_name),
        "booktitle": record.book_title and case_protected(record.book_title),
        "volume": record.journal_volume and latex(record.journal_volume),
        "number": record.journal_issue and latex(record.journal_issue),
        "pages": record.pages and bibtex_pages(record.pages),
        "year": str(record.published_year) if record.published_year is not None else None,
        "month": str(record.published_month) if record.published_month else None,
        "abstract": record.abstract and latex(record.abstract),
        "annote": record.annotation and latex(record.annotation),
        "note": record.note and latex(record.note),
        "publisher": None if report else record.publisher and bibtex_literal(record.publisher),
        "institution": institution and bibtex_literal(institution),
        "language": record.language and latex(record.language),
        "type": record.publication_type and latex(record.publication_type),
        "keywords": latex(", ".join(record.subjects)) if record.subjects else None,
        "url": record.source_url,
        "ncj": str(record.ncj_number),
        "sponsors": latex(LIST_SEPARATOR.join(record.sponsoring_agencies)) or None,
        "grants": latex(LIST_SEPARATOR.join(record.grant_numbers)) or None,
        "agencies": latex(LIST_SEPARATOR.join(record.agencies)) or None,
        "pagetotal": str(record.page_count) if record.page_count is not None else None,
    }
    fields = [Field(key, value) for key, value in values.items() if value]
    return Entry(bibtex_type(record), f"ncj{record.ncj_number}", fields)


_CSL_TYPES = {
    "journal-article": "article-journal",
    "chapter": "chapter",
    "book": "book",
    "report": "report",
}
_SEASONS = {"spring": 1, "summer": 2, "autumn": 3, "fall": 3, "winter": 4}


def csl_name(name: Name) -> dict[str, str]:
    if name.kind == "organization" or not name.family:
        return {"literal": name.name}
    parts = {"family": name.family, "given": name.given, "suffix": name.suffix}
    return {key: value for key, value in parts.items() if value}


def csl_issued(record: ExportRecord) -> dict[str, Any] | None:
    """CSL date: the parts the page gives; a season as ``season`` 1-4. An undated record has
    no ``issued``: a literal such as the page's "Unknown" would be printed as the date
    (citeproc prints "Unknown." where a style wants a year, and "n.d." when there is none)."""
    if record.published_year is None:
        return None
    parts = [record.published_year, record.published_month, record.published_day]
    while parts[-1] is None:
        parts.pop()
    issued: dict[str, Any] = {"date-parts": [parts]}
    if record.published_precision == "season" and record.published_text:
        season = next(
            (n for word, n in _SEASONS.items() if word in record.published_text.lower()), None
        )
        if season is not None:
            issued["season"] = season
    return issued


def csl_item(record: ExportRecord) -> dict[str, Any]:
    """A CSL-JSON item (https://citeproc-js.readthedocs.io/en/latest/csl-json/markup.html)."""
    item: dict[str, Any] = {
        "id": ncj_id(record),
        "type": _CSL_TYPES[record.kind],
        "title": record.title,
        "author": [csl_name(n) for n in record.authors + record.corporate_authors],
        "editor": [csl_name(n) for n in record.editors],
        "container-title": record.container_title,
        "volume": record.journal_volume,
        "issue": record.journal_issue,
        "page": record.pages,
        "number-of-pages": record.page_count,
        "issued": csl_issued(record),
        "abstract": record.abstract,
        "annote": record.annotation,
        "note": record.note,
        "publisher": record.publisher,
        "language": record.language,
        "genre": record.publication_type,
        "keyword": ", ".join(record.subjects) or None,
        "URL": record.source_url,
        "archive": DATABASE_NAME,
        "archive_location": f"NCJ {record.ncj_number}",
        "references": LIST_SEPARATOR.join(record.grant_numbers) or None,
        "authority": LIST_SEPARATOR.join(record.sponsoring_agencies) or None,
    }
    return {key: value for key, value in item.items() if value not in (None, [], "")}


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def json_record(record: ExportRecord) -> dict[str, Any]:
    """Every exported field under its database name; people with their name parts."""
    data: dict[str, Any] = {}
    for name in ExportRecord.__dataclass_fields__:
        value = getattr(record, name)
        if isinstance(value, list) and value and isinstance(value[0], Name):
            value = [
                {"name": n.name, "family": n.family, "given": n.given, "suffix": n.suffix}
                for n in value
            ]
        data[name] = _jsonable(value)
    return data


CSV_COLUMNS = (
    "ncj_number", "title", "authors", "editors", "corporate_authors", "journal_name",
    "journal_volume", "journal_issue", "journal_dated", "journal_pages", "journal_citation",
    "book_title", "part_of", "part_pages", "published_text", "published_year", "published_month",
    "published_day", "page_count", "annotation", "abstract", "sponsoring_agencies", "agencies",
    "grant_numbers", "subjects", "publication_type", "publication_format", "language", "country",
    "publisher", "note", "url", "document_urls", "last_changed_at",
)  # fmt: skip
# OWASP "CSV injection": a cell starting with one of these is a formula to a spreadsheet.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralize_cell(value: str) -> str:
    """Prefix a quote to a cell a spreadsheet would run as a formula (OWASP).

    Hand-written rather than defusedcsv, which leaves tab and carriage return alone and also
    rewrites ``|`` inside cells.
    """
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def csv_row(record: ExportRecord) -> list[str]:
    def names(people: Iterable[Name]) -> str:
        return LIST_SEPARATOR.join(n.name for n in people)

    values: dict[str, Any] = {
        **{name: getattr(record, name) for name in CSV_COLUMNS if hasattr(record, name)},
        "authors": names(record.authors),
        "editors": names(record.editors),
        "corporate_authors": names(record.corporate_authors),
        "sponsoring_agencies": LIST_SEPARATOR.join(record.sponsoring_agencies),
        "agencies": LIST_SEPARATOR.join(record.agencies),
        "grant_numbers": LIST_SEPARATOR.join(record.grant_numbers),
        "subjects": LIST_SEPARATOR.join(record.subjects),
        "url": record.source_url,
        "document_urls": " ".join(record.document_urls),
        "last_changed_at": record.last_changed_at.isoformat(),
    }
    return [
        neutralize_cell(str(value)) if value is not None else ""
        for value in map(values.get, CSV_COLUMNS)
    ]


# --- writers ------------------------------------------------------------------------------------


# rispy ships no annotations, so its writer is Any to mypy
class _RisWriter(rispy.RisWriter):  # type: ignore[misc]
    """rispy's writer without its ``1.``, ``2.`` counter line before each entry (optional in
    RIS), so that entries written one at a time do not all say ``1.``."""

    def set_header(self, count: int) -> str:
        return ""


def _write_ris(records: Iterable[ExportRecord], out: TextIO) -> None:
    writer = _RisWriter()
    for record in records:
        writer.format_lines(out, [ris_entry(record)])
        out.write("\n")


def _write_bibtex(records: Iterable[ExportRecord], out: TextIO) -> None:
    for record in records:
        out.write(write_string(Library([bibtex_entry(record)])))


def _write_csl_json(records: Iterable[ExportRecord], out: TextIO) -> None:
    # A JSON array written element by element: the whole array is never in memory.
    separator = "[\n"
    for record in records:
        out.write(separator)
        out.write(json.dumps(csl_item(record), ensure_ascii=False))
        separator = ",\n"
    out.write("[]\n" if separator == "[\n" else "\n]\n")


def _write_jsonl(records: Iterable[ExportRecord], out: TextIO) -> None:
    for record in records:
        out.write(json.dumps(json_record(record), ensure_ascii=False))
        out.write("\n")


def _write_csv(records: Iterable[ExportRecord], out: TextIO) -> None:
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for record in records:
        writer.writerow(csv_row(record))


WRITERS: dict[str, Callable[[Iterable[ExportRecord], TextIO], None]] = {
    "ris": _write_ris,
    "bibtex": _write_bibtex,
    "csl-json": _write_csl_json,
    "jsonl": _write_jsonl,
    "csv": _write_csv,
}
# The export formats, as `harvester export --format` offers them: a format is added above.
FORMATS: tuple[str, ...] = tuple(WRITERS)


def export(
    connection: Connection,
    export_format: str,
    out: TextIO,
    *,
    since: datetime | None = None,
    query: str | None = None,
) -> int:
    """Write the selected records to ``out`` in ``export_format``; returns how many.

    ``out`` should be opened with ``newline=""`` (the CSV writer ends rows with CRLF itself).
    """
    if export_format not in WRITERS:
        raise ValueError(f"unknown export format {export_format!r}; one of {', '.join(FORMATS)}")
    written = 0

    def counted() -> Iterator[ExportRecord]:
        nonlocal written
        for record in iter_records(connection, since=since, query=query):
            written += 1
            yield record

    WRITERS[export_format](counted(), out)
    return written
