"""Exports (harvester/exports.py): fixture pages -> parse -> normalize -> store -> export ->
read back with an independent reader (rispy, bibtexparser, json, csv), on both databases.

The crosswalk fields of docs/crosswalk.md must come back as the normalized record had them:
NCJ number, title, journal fields, people, agencies, year, pages, abstract, URL.
"""

from __future__ import annotations

import csv
import io
import json
import re
import string
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bibtexparser
import pytest
import rispy
from bibtexparser.middlewares import LatexDecodingMiddleware
from hypothesis import given, settings
from hypothesis import strategies as st
from pylatexenc.latex2text import LatexNodes2Text
from sqlalchemy import Engine

from harvester.db import ensure_schema
from harvester.exports import _LATEX, FORMATS, case_protected, export, latex, neutralize_cell
from harvester.items import JournalCitation, Person, Record
from tests.support import fixture_records, store_records

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 3, 1, tzinfo=UTC)


def one_line(value: str | None) -> str | None:
    return " ".join(value.split()) if value is not None else None


def tricky_record() -> Record:
    """Values that break naive writers: formula starts, LaTeX and RIS specials, line breaks."""
    return Record(
        ncj_number=999001,
        title='=HYPERLINK("http://evil") & 50% {of} $ # _ costs',
        source_url="https://www.ojp.gov/ncjrs/virtual-library/abstracts/x;y",
        fetched_at=T0,
        journal=JournalCitation(
            raw="Crime & Delinquency Volume: 3 Issue: 2 Dated: (1999) Pages: 5-9",
            name="Crime & Delinquency",
            volume="3",
            issue="2",
            dated="1999",
            pages="5-9",
        ),
        authors=[
            Person("Françoise Müller Jr.", "Müller", "Françoise", "Jr."),
            Person("Sean O'Brien", "O'Brien", "Sean"),
        ],
        corporate_authors=["Abt Associates, Inc", "Council on Crime and Delinquency"],
        editors=[Person("+Ann Editor", "+Editor", "Ann")],
        annotation="-starts with a minus",
        abstract="@first paragraph\n\nER  - second paragraph\n\tTY  - tabbed",
        sponsoring_agencies=["National Institute of Justice (NIJ)", "@Agency"],
        grant_numbers=["2009-IJ-CX-0001"],
        subjects=["Gangs", "Police"],
        page_count=0,
        layout="legacy",
    )


@pytest.fixture
def stored(engine: Engine) -> tuple[Engine, dict[int, Record]]:
    ensure_schema(engine, auto_migrate=True)
    records = [*fixture_records(), tricky_record()]
    store_records(engine, records, T0)
    return engine, {r.ncj_number: r for r in records if r.ncj_number is not None}


def run_export(engine: Engine, export_format: str, **options: Any) -> str:
    out = io.StringIO(newline="")
    with engine.connect() as connection:
        count = export(connection, export_format, out, **options)
    text = out.getvalue()
    assert count >= 0
    return text


def family_given(person: Person) -> tuple[str | None, str | None]:
    return person.family, person.given


# --- RIS, read back with rispy --------------------------------------------------------------------


def test_ris_round_trips_the_crosswalk_fields(stored: tuple[Engine, dict[int, Record]]) -> None:
    engine, records = stored
    entries = rispy.loads(run_export(engine, "ris"))
    assert [int(e["accession_number"]) for e in entries] == sorted(records)
    for entry in entries:
        record = records[int(entry["accession_number"])]
        assert entry["id"] == f"NCJ-{record.ncj_number}"
        assert entry["title"] == one_line(record.title)
        people = [
            ", ".join(p for p in (a.family, a.given, a.suffix) if p) for a in record.authors
        ] + [" ".join(name.replace(",", " ").split()) for name in record.corporate_authors]
        assert entry.get("authors", []) == people
        assert entry.get("secondary_authors", []) == [
            ", ".join(p for p in (e.family, e.given, e.suffix) if p) for e in record.editors
        ]
        journal = record.journal
        assert entry.get("journal_name") == (journal.name if journal else None)
        assert entry.get("volume") == (journal.volume if journal else None)
        assert entry.get("number") == (journal.issue if journal else None)
        chapter_pages = record.chapter_of.pages if record.chapter_of else None
        pages = (journal.pages if journal else None) or chapter_pages
        if entry["type_of_reference"] in ("BOOK", "RPRT") and record.page_count is not None:
            pages = str(record.page_count)  # SP: a book's or report's number of pages
        assert entry.get("start_page") == pages
        year = record.published.year if record.published else None
        assert entry.get("year") == (str(year) if year is not None else None)
        assert entry.get("abstract") == one_line(record.abstract)
        assert entry["urls"][0] == record.source_url.replace(";", "%3B")
        assert entry.get("custom1") == ("; ".join(record.sponsoring_agencies) or None)
        assert "custom4" not in entry  # C4 is a book's or chapter's reviewer in RIS
    tricky = next(e for e in entries if e["accession_number"] == "999001")
    assert tricky["type_of_reference"] == "JOUR"
    assert "unknown_tag" not in tricky  # the abstract's "ER  - " and "TY  - " stayed inside it


# --- BibTeX, read back with bibtexparser --------------------------------------------------------


def split_bibtex_names(value: str) -> list[str]:
    """Names of an author/editor field: split at top-level ' and ', braces kept."""
    names, depth, current = [], 0, ""
    tokens = re.split(r"(\{|\}| and )", value)
    for token in tokens:
        if token == " and " and depth == 0:
            names.append(current)
            current = ""
            continue
        depth += token == "{"
        depth -= token == "}"
        current += token
    return [*names, current] if current else names


def test_bibtex_round_trips_the_crosswalk_fields(
    stored: tuple[Engine, dict[int, Record]],
) -> None:
    engine, records = stored
    raw = run_export(engine, "bibtex")
    library = bibtexparser.parse_string(raw)
    assert not library.failed_blocks
    decoded = bibtexparser.parse_string(raw, append_middleware=[LatexDecodingMiddleware()])
    entries = {int(e["ncj"]): e for e in decoded.entries}
    assert sorted(entries) == sorted(records)
    raw_entries = {int(e["ncj"]): e for e in library.entries}
    for number, entry in entries.items():
        record = records[number]
        assert entry.key == f"ncj{number}"
        assert entry["title"] == record.title
        expected_people = [
            ", ".join(p for p in (a.family, a.suffix, a.given) if p) for a in record.authors
        ] + record.corporate_authors
        authors = raw_entries[number].fields_dict.get("author")
        names = split_bibtex_names(authors.value) if authors else []
        assert [LatexNodes2Text().latex_to_text(name) for name in names] == expected_people
        # Organisations are one brace group in the raw file, so " and " inside them is safe.
        for name in record.corporate_authors:
            assert "{" + name.replace("&", r"\&") + "}" in raw_entries[number]["author"]
        journal = record.journal
        fields = entry.fields_dict
        assert (fields["journal"].value if "journal" in fields else None) == (
            journal.name if journal else None
        )
        assert (fields["volume"].value if "volume" in fields else None) == (
            journal.volume if journal else None
        )
        year = record.published.year if record.published else None
        assert (fields["year"].value if "year" in fields else None) == (
            str(year) if year is not None else None
        )
        assert (fields["abstract"].value if "abstract" in fields else None) == record.abstract
        assert fields["url"].value == record.source_url
        assert (fields["sponsors"].value if "sponsors" in fields else None) == (
            "; ".join(record.sponsoring_agencies) or None
        )
        assert (fields["pagetotal"].value if "pagetotal" in fields else None) == (
            str(record.page_count) if record.page_count is not None else None
        )
    assert raw_entries[999001].entry_type == "article"


# --- CSL-JSON, read back with json --------------------------------------------------------------


def csl_person(person: Person) -> dict[str, str]:
    parts = {"family": person.family, "given": person.given, "suffix": person.suffix}
    return {key: value for key, value in parts.items() if value}


def test_csl_json_round_trips_the_crosswalk_fields(
    stored: tuple[Engine, dict[int, Record]],
) -> None:
    engine, records = stored
    items = json.loads(run_export(engine, "csl-json"))
    assert [int(item["id"].removeprefix("NCJ-")) for item in items] == sorted(records)
    for item in items:
        record = records[int(item["id"].removeprefix("NCJ-"))]
        assert item["type"] in {"article-journal", "chapter", "book", "report"}
        assert item["title"] == record.title
        assert item.get("author", []) == [csl_person(p) for p in record.authors] + [
            {"literal": name} for name in record.corporate_authors
        ]
        assert item.get("editor", []) == [csl_person(p) for p in record.editors]
        journal = record.journal
        container = (
            journal.name if journal else (record.chapter_of and record.chapter_of.book_title)
        )
        assert item.get("container-title") == container
        assert item.get("issue") == (journal.issue if journal else None)
        published = record.published
        if published and published.year is not None:
            parts = [published.year, published.month, published.day]
            assert item["issued"]["date-parts"][0] == [p for p in parts if p is not None]
        assert item.get("number-of-pages") == record.page_count
        assert item.get("abstract") == record.abstract
        assert item["URL"] == record.source_url
        assert item["archive_location"] == f"NCJ {record.ncj_number}"
        assert item.get("authority") == ("; ".join(record.sponsoring_agencies) or None)


# --- JSON Lines and CSV ------------------------------------------------------------------------


def test_jsonl_round_trips_every_field(stored: tuple[Engine, dict[int, Record]]) -> None:
    engine, records = stored
    lines = run_export(engine, "jsonl").splitlines()
    assert len(lines) == len(records)
    for line in lines:
        data = json.loads(line)
        record = records[data["ncj_number"]]
        assert data["title"] == record.title
        assert [(a["family"], a["given"]) for a in data["authors"]] == [
            family_given(p) for p in record.authors
        ]
        assert [c["name"] for c in data["corporate_authors"]] == record.corporate_authors
        assert data["journal_name"] == (record.journal.name if record.journal else None)
        assert data["journal_pages"] == (record.journal.pages if record.journal else None)
        assert data["published_year"] == (record.published.year if record.published else None)
        assert data["page_count"] == record.page_count
        assert data["abstract"] == record.abstract
        assert data["source_url"] == record.source_url
        assert data["sponsoring_agencies"] == record.sponsoring_agencies
        assert data["grant_numbers"] == sorted(record.grant_numbers)


def unneutralize(cell: str) -> str:
    return cell[1:] if cell[:2] in {f"'{c}" for c in "=+-@\t\r"} else cell


def test_csv_round_trips_and_neutralizes_formulas(
    stored: tuple[Engine, dict[int, Record]],
) -> None:
    engine, records = stored
    rows = list(csv.DictReader(io.StringIO(run_export(engine, "csv"), newline="")))
    assert len(rows) == len(records)
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value
        record = records[int(row["ncj_number"])]
        assert unneutralize(row["title"]) == record.title
        assert unneutralize(row["authors"]) == "; ".join(p.name for p in record.authors)
        assert row["corporate_authors"] == "; ".join(record.corporate_authors)
        assert row["journal_name"] == (record.journal.name if record.journal else "")
        assert row["published_year"] == str(
            record.published.year if record.published and record.published.year else ""
        )
        assert row["page_count"] == ("" if record.page_count is None else str(record.page_count))
        assert unneutralize(row["abstract"]) == (record.abstract or "")
        assert row["url"] == record.source_url
        assert unneutralize(row["sponsoring_agencies"]) == "; ".join(record.sponsoring_agencies)
    tricky = next(row for row in rows if row["ncj_number"] == "999001")
    assert tricky["title"].startswith("'=HYPERLINK")
    assert tricky["annotation"] == "'-starts with a minus"
    assert tricky["editors"] == "'+Ann Editor"


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("a=1", "a=1"),
        ("", ""),
        ("'quoted", "'quoted"),
    ],
)
def test_neutralize_cell(cell: str, expected: str) -> None:
    assert neutralize_cell(cell) == expected


# --- selection --------------------------------------------------------------------------------


def test_since_and_query_select_records(stored: tuple[Engine, dict[int, Record]]) -> None:
    engine, records = stored
    later = Record(
        ncj_number=999002,
        title="Later gang study",
        source_url="https://www.ojp.gov/ncjrs/virtual-library/abstracts/later",
        fetched_at=T1,
        layout="current",
    )
    store_records(engine, [later], T1)

    def numbers(**options: Any) -> list[int]:
        return [json.loads(line)["ncj_number"] for line in run_export(engine, "jsonl", **options)
                .splitlines()]  # fmt: skip

    assert numbers(since=T1) == [999002]
    assert numbers(since=T0) == sorted([*records, 999002])
    assert 999002 in numbers(query="gang")
    assert numbers(query="later gang") == [999002]
    assert numbers(query="later gang", since=T0) == [999002]
    assert numbers(query="nowhere-to-be-found") == []
    assert json.loads(run_export(engine, "csl-json", query="nowhere")) == []


@pytest.mark.parametrize("export_format", FORMATS)
def test_the_cli_writes_each_format(
    export_format: str, stored: tuple[Engine, dict[int, Record]], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from click.testing import CliRunner

    from harvester.cli import main

    engine, records = stored
    monkeypatch.setenv("DATABASE_URL", engine.url.render_as_string(hide_password=False))
    output = tmp_path / f"out.{export_format}"
    result = CliRunner().invoke(
        main, ["export", "--format", export_format, "--output", str(output)]
    )
    assert result.exit_code == 0, result.output
    assert f"{len(records)} records exported" in result.output
    assert output.read_bytes().decode("utf-8") == run_export(engine, export_format)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.printable))
def test_ascii_latex_fast_path_matches_pylatexenc(value: str) -> None:
    assert latex(value) == _LATEX.unicode_to_latex(value)


# --- reference-manager conventions (Zotero's RIS and BibTeX translators) ------------------------


@pytest.mark.parametrize(
    ("title", "latex_title"),
    [
        ("Late Enforcement Profiles", "Late {Enforcement} {Profiles}"),
        ("FINDINGS FROM A SURVEY", "{FINDINGS} {FROM} {A} {SURVEY}"),
        ("DNA evidence in iPhone cases", "{DNA} evidence in {iPhone} cases"),
        ("Étude des ÉCOLES -- 50%", r"\'Etude des {{}\'ECOLES} -{}- 50\%"),
        ("lower case only", "lower case only"),
    ],
)
def test_bibtex_titles_brace_every_word_with_a_capital(title: str, latex_title: str) -> None:
    assert case_protected(title) == latex_title


def test_undated_records_have_no_date_and_reports_an_institution_or_misc(
    engine: Engine,
) -> None:
    ensure_schema(engine, auto_migrate=True)
    base = {"source_url": "https://www.ojp.gov/ncjrs/virtual-library/abstracts/u",
            "fetched_at": T0, "layout": "current"}  # fmt: skip
    store_records(
        engine,
        [
            Record(ncj_number=1, title="Undated", **base),
            Record(ncj_number=2, title="Sponsored", sponsoring_agencies=["NIJ"], **base),
            Record(
                ncj_number=3,
                title="Written",
                corporate_authors=["Abt Associates, Inc"],
                sponsoring_agencies=["NIJ"],
                page_count=12,
                **base,
            ),
        ],
        T0,
    )
    csl = {item["id"]: item for item in json.loads(run_export(engine, "csl-json"))}
    assert "issued" not in csl["NCJ-1"]
    entries = {e["accession_number"]: e for e in rispy.loads(run_export(engine, "ris"))}
    assert "year" not in entries["1"]
    assert "date" not in entries["1"]
    assert entries["3"]["authors"] == ["Abt Associates Inc"]
    assert entries["3"]["start_page"] == "12"
    library = bibtexparser.parse_string(run_export(engine, "bibtex"))
    by_key = {e.key: e for e in library.entries}
    assert by_key["ncj1"].entry_type == "misc"
    assert "year" not in by_key["ncj1"].fields_dict
    assert by_key["ncj2"].entry_type == "techreport"
    assert by_key["ncj2"]["institution"] == "{NIJ}"
    assert by_key["ncj3"]["institution"] == "{Abt Associates, Inc}"
    assert by_key["ncj3"]["author"] == "{Abt Associates, Inc}"
