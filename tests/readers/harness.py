"""Independent readers of the exports, and what each of them understood of an entry.

Every reader turns an export file into ``Reading``s, one per entry, holding the fields the
round-trip test compares (tests/test_exports_readers.py). The readers are other people's
code: citation-js (npm, driven by tests/readers/read.mjs), pandoc, bibutils (ris2xml,
bib2xml, via MODS XML) and pybtex. Each ``read_*`` function only translates the reader's own
output shape (CSL-JSON, MODS, pybtex's Person) into ``Reading``; it never repairs a value.
What the comparison normalises, and why, is in ``comparable`` (and docs/crosswalk.md).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

READERS_DIR = Path(__file__).resolve().parent
NODE_MODULES = READERS_DIR / "node_modules" / "@citation-js"
MODS = "{http://www.loc.gov/mods/v3}"

# ("person", family, given, suffix) or ("literal", name): a name a reader kept whole.
Author = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Reading:
    """What one reader understood of one entry."""

    ncj_number: int
    title: str | None
    authors: tuple[Author, ...]
    year: int | None
    container: str | None
    volume: str | None
    issue: str | None
    pages: str | None
    publisher: str | None
    # Fields a bibliography style required but did not find (pybtex's plain style only).
    missing: tuple[str, ...] = ()


class ReaderMissing(Exception):
    """The reader is not installed here (the message says how to install it)."""


@dataclass(frozen=True, slots=True)
class Reader:
    name: str  # e.g. "pandoc --from=bibtex"
    export_format: str  # harvester export format it reads
    read: Callable[[Path], list[Reading]]
    version: Callable[[], str]
    # bibutils writes an initial without its period ("Kevin P." -> given "Kevin", "P") and
    # turns "--" into an en dash even where TeX's ligature is broken ("-{}-").
    bibutils_quirks: bool = False


def _run(command: Sequence[str], **options: Any) -> str:
    result = subprocess.run(
        command, capture_output=True, text=True, encoding="utf-8", check=False, **options
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}: {result.stderr}")
    return result.stdout


def _require(program: str, install: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise ReaderMissing(f"{program} is not installed ({install})")
    return path


def _number_in(identifier: str) -> int:
    """The NCJ number in an entry's id: ``NCJ-123`` (RIS, CSL-JSON) or ``ncj123`` (BibTeX)."""
    match = re.fullmatch(r"(?i)ncj-?(\d+)", identifier.strip())
    if match is None:
        raise ValueError(f"entry id {identifier!r} names no NCJ number")
    return int(match.group(1))


# --- CSL-JSON, the output of citation-js and pandoc -----------------------------------------


def _csl_name(name: dict[str, Any]) -> Author:
    if "literal" in name:
        return ("literal", name["literal"])
    family = " ".join(
        part for part in (name.get("non-dropping-particle"), name.get("family")) if part
    )
    given = " ".join(part for part in (name.get("given"), name.get("dropping-particle")) if part)
    return ("person", family, given, name.get("suffix") or "")


def _csl_year(item: dict[str, Any]) -> int | None:
    issued = item.get("issued")
    if not issued:
        return None
    parts = issued.get("date-parts") if isinstance(issued, dict) else None
    if not parts or not parts[0] or parts[0][0] in (None, ""):
        # A date the reader could not take apart (CSL "literal" / "raw"): not a year.
        return -1
    return int(parts[0][0])


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def from_csl(items: list[dict[str, Any]]) -> list[Reading]:
    return [
        Reading(
            ncj_number=_number_in(str(item.get("id") or item.get("citation-key"))),
            title=_text(item.get("title")),
            authors=tuple(_csl_name(n) for n in item.get("author", [])),
            year=_csl_year(item),
            container=_text(item.get("container-title")),
            volume=_text(item.get("volume")),
            issue=_text(item.get("issue")),
            pages=_text(item.get("page")),
            publisher=_text(item.get("publisher")),
        )
        for item in items
    ]


# --- citation-js (npm) ----------------------------------------------------------------------


def _citation_js(export_format: str) -> Callable[[Path], list[Reading]]:
    def read(path: Path) -> list[Reading]:
        node = _require("node", "install Node.js")
        if not NODE_MODULES.is_dir():
            raise ReaderMissing(f"citation-js is not installed (run `npm ci` in {READERS_DIR})")
        output = _run([node, str(READERS_DIR / "read.mjs"), export_format, str(path)])
        return from_csl(json.loads(output))

    return read


def _citation_js_version() -> str:
    versions = []
    for package in ("core", "plugin-ris", "plugin-bibtex", "plugin-csl"):
        manifest = json.loads((NODE_MODULES / package / "package.json").read_text())
        versions.append(f"@citation-js/{package} {manifest['version']}")
    return ", ".join(versions)


# --- pandoc ---------------------------------------------------------------------------------


def _pandoc(source_format: str) -> Callable[[Path], list[Reading]]:
    def read(path: Path) -> list[Reading]:
        pandoc = _require("pandoc", "apt-get install pandoc")
        output = _run([pandoc, f"--from={source_format}", "--to=csljson", str(path)])
        return from_csl(json.loads(output))

    return read


def _pandoc_version() -> str:
    pandoc = _require("pandoc", "apt-get install pandoc")
    return _run([pandoc, "--version"]).splitlines()[0]


# --- bibutils (MODS XML) --------------------------------------------------------------------


def _mods_name(name: ET.Element) -> Author:
    parts = name.findall(f"{MODS}namePart")
    if name.get("type") != "personal":
        return ("literal", " ".join(part.text or "" for part in parts))

    def joined(kind: str) -> str:
        # MODS holds each given name (or initial) in its own namePart.
        return " ".join(p.text or "" for p in parts if p.get("type") == kind)

    return ("person", joined("family"), joined("given"), joined("suffix"))


def _mods_pages(part: ET.Element | None) -> str | None:
    if part is None:
        return None
    page = part.findtext(f"{MODS}detail[@type='page']/{MODS}number")
    if page is not None:
        return page
    extent = part.find(f"{MODS}extent[@unit='page']")
    if extent is None:
        extent = part.find(f"{MODS}extent")
    if extent is None:
        return None
    start, end = extent.findtext(f"{MODS}start"), extent.findtext(f"{MODS}end")
    if start is not None:
        return f"{start}-{end}" if end else start
    return extent.findtext(f"{MODS}list") or extent.findtext(f"{MODS}total")


def _mods_year(mods: ET.Element, host: ET.Element | None) -> int | None:
    candidates = [mods.findtext(f"{MODS}originInfo/{MODS}dateIssued")]
    if host is not None:
        candidates += [
            host.findtext(f"{MODS}originInfo/{MODS}dateIssued"),
            host.findtext(f"{MODS}part/{MODS}date"),
        ]
    candidates.append(mods.findtext(f"{MODS}part/{MODS}date"))
    for value in candidates:
        if value:
            match = re.match(r"\d{4}", value)
            return int(match.group()) if match else -1
    return None


def _mods_container(host: ET.Element | None) -> str | None:
    """The host's title. bibutils files a RIS chapter's book title (``T2``, as the RIS
    specification and Zotero write it) one level up, as an abbreviated title of the host's
    host, and leaves the host's own title empty: that one is taken then."""
    if host is None:
        return None
    title = host.findtext(f"{MODS}titleInfo/{MODS}title")
    if title:
        return title
    titles = host.findall(f"{MODS}relatedItem[@type='host']/{MODS}titleInfo/{MODS}title")
    return next((t.text for t in titles if t.text), None)


def from_mods(xml_text: str) -> list[Reading]:
    root = ET.fromstring(xml_text.lstrip("\ufeff"))
    readings = []
    for mods in root.findall(f"{MODS}mods"):
        host = mods.find(f"{MODS}relatedItem[@type='host']")
        part = mods.find(f"{MODS}part")
        if part is None and host is not None:
            part = host.find(f"{MODS}part")

        def detail(kind: str, part: ET.Element | None = part) -> str | None:
            if part is None:
                return None
            return part.findtext(f"{MODS}detail[@type='{kind}']/{MODS}number")

        publisher = mods.findtext(f"{MODS}originInfo/{MODS}publisher")
        if publisher is None and host is not None:
            publisher = host.findtext(f"{MODS}originInfo/{MODS}publisher")
        readings.append(
            Reading(
                ncj_number=_number_in(mods.get("ID", "")),
                title=mods.findtext(f"{MODS}titleInfo/{MODS}title"),
                authors=tuple(
                    _mods_name(name)
                    for name in mods.findall(f"{MODS}name")
                    if name.findtext(f"{MODS}role/{MODS}roleTerm") in (None, "author")
                ),
                year=_mods_year(mods, host),
                container=_mods_container(host),
                volume=detail("volume"),
                issue=detail("issue") or detail("number"),
                pages=_mods_pages(part),
                publisher=publisher,
            )
        )
    return readings


def _bibutils(
    program: str, *, as_is: Callable[[], Sequence[str]] | None = None
) -> Callable[[Path], list[Reading]]:
    def read(path: Path) -> list[Reading]:
        executable = _require(program, "apt-get install bibutils")
        # -nt: keep a title whole (bibutils splits "Title: Subtitle" into two MODS elements).
        command = [executable, "-nt", "-u"]
        if as_is is not None:
            # RIS has no way to mark an organisation: Zotero and citation-js take a name without
            # a comma as one, bibutils takes every name as a person's unless it is listed in
            # the file its manual provides for that ("names that shouldn't be mangled").
            names_file = path.with_suffix(".asis.txt")
            # bibutils also splits a name at " and ", BibTeX's list separator, even in RIS: the
            # parts are listed too (the test expects them split).
            names = {part for name in as_is() for part in (name, *name.split(" and "))}
            names_file.write_text("".join(f"{name}\n" for name in sorted(names)), "utf-8")
            command += ["-as", str(names_file)]
        return from_mods(_run([*command, str(path)]))

    return read


def _bibutils_version() -> str:
    executable = _require("ris2xml", "apt-get install bibutils")
    result = subprocess.run([executable, "-v"], capture_output=True, text=True, check=False)
    return (result.stdout + result.stderr).strip().splitlines()[0]


# --- pybtex ---------------------------------------------------------------------------------


def _pybtex_name(person: Any) -> Author:
    from pybtex.richtext import Text

    last = person.last_names
    if len(last) == 1 and not person.first_names and not person.middle_names:
        word = last[0]
        if word.startswith("{") and word.endswith("}"):
            # A braced name is one unit to BibTeX: how it writes an organisation.
            return ("literal", str(Text.from_latex(word)))

    def plain(words: list[str]) -> str:
        return " ".join(str(Text.from_latex(word)) for word in words)

    return (
        "person",
        plain(person.prelast_names + last),
        plain(person.first_names + person.middle_names),
        plain(person.lineage_names),
    )


def read_pybtex(path: Path) -> list[Reading]:
    """Parse with pybtex, then format every entry with its ``plain`` style: a style that
    cannot format an entry (a required field missing) raises, which fails the test."""
    try:
        from pybtex.database import parse_file
        from pybtex.plugin import find_plugin
        from pybtex.richtext import Text
    except ImportError as exc:
        raise ReaderMissing("pybtex is not installed (pip install -e '.[test]')") from exc

    from pybtex.database import Person
    from pybtex.style.template import FieldIsMissing

    data = parse_file(str(path), bib_format="bibtex")
    style = find_plugin("pybtex.style.formatting", "plain")()
    missing: dict[str, list[str]] = {}
    for key, original in data.entries.items():
        # The style stops at the first required field it misses; the test decides whether
        # the record really lacks it (an undated record has no year). So a stand-in takes
        # its place on a copy, and the entry is formatted again: every required field is
        # checked, not only the first one missing.
        entry = original.lower()
        while True:
            try:
                style.format_entry(key, entry)
                break
            except FieldIsMissing as error:
                field_name = error.field_name
                assert field_name not in missing.get(key, []), (key, field_name)
                missing.setdefault(key, []).append(field_name)
                if field_name in ("author", "editor"):
                    entry.persons[field_name] = [Person("Stand-in")]
                else:
                    entry.fields[field_name] = "stand-in"

    def field(entry: Any, *names: str) -> str | None:
        for name in names:
            if name in entry.fields:
                return str(Text.from_latex(entry.fields[name]))
        return None

    readings = []
    for key, entry in data.entries.items():
        year = field(entry, "year")
        readings.append(
            Reading(
                ncj_number=_number_in(key),
                title=field(entry, "title"),
                authors=tuple(_pybtex_name(p) for p in entry.persons.get("author", [])),
                year=int(year) if year and year.isdigit() else (None if year is None else -1),
                container=field(entry, "journal", "booktitle"),
                volume=field(entry, "volume"),
                issue=field(entry, "number"),
                pages=field(entry, "pages"),
                publisher=field(entry, "publisher", "institution"),
                missing=tuple(missing.get(key, ())),
            )
        )
    return readings


def _pybtex_version() -> str:
    from importlib.metadata import version

    return f"pybtex {version('pybtex')} (plain style)"


def readers(organisations: Callable[[], Sequence[str]]) -> list[Reader]:
    """Every reader, per export format; ``organisations`` lists the RIS organisation names
    for bibutils (see ``_bibutils``)."""
    return [
        Reader("citation-js @ris/file", "ris", _citation_js("ris"), _citation_js_version),
        Reader(
            "bibutils ris2xml",
            "ris",
            _bibutils("ris2xml", as_is=organisations),
            _bibutils_version,
            bibutils_quirks=True,
        ),
        Reader("pandoc --from=bibtex", "bibtex", _pandoc("bibtex"), _pandoc_version),
        Reader("pandoc --from=biblatex", "bibtex", _pandoc("biblatex"), _pandoc_version),
        Reader("citation-js @bibtex/text", "bibtex", _citation_js("bibtex"), _citation_js_version),
        Reader(
            "bibutils bib2xml",
            "bibtex",
            _bibutils("bib2xml"),
            _bibutils_version,
            bibutils_quirks=True,
        ),
        Reader("pybtex", "bibtex", read_pybtex, _pybtex_version),
        Reader("pandoc --from=csljson", "csl-json", _pandoc("csljson"), _pandoc_version),
        Reader(
            "citation-js @csl/list+object",
            "csl-json",
            _citation_js("csl-json"),
            _citation_js_version,
        ),
    ]
