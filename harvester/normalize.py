"""Small pure functions that turn the values a page shows into typed values.

None of them raises on odd input: what cannot be read is returned as None (or left out of a
list), and validation decides whether that makes the record untrustworthy.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import fields, is_dataclass
from functools import cache, lru_cache
from typing import Any

from nameparser import HumanName

from harvester.items import (
    ChapterOf,
    DatePrecision,
    JournalCitation,
    PartialDate,
    Person,
    RawRecord,
    Record,
)
from harvester.text import clean, collapse

# Both databases store these as 32-bit integers; anything larger is not a real value.
_MAX_INTEGER = 2**31 - 1


def _storable(number: int) -> int | None:
    return number if number <= _MAX_INTEGER else None


# --- NCJ number ------------------------------------------------------------------------------

_NCJ = re.compile(r"^(?:NCJ[\s#:.-]*)?(\d{1,3}(?:,\d{3})+|\d+)$", re.IGNORECASE)
_FIND_IN_A_LIBRARY = re.compile(r"\s*find in a library\s*$", re.IGNORECASE)


def parse_ncj_number(text: str | None) -> int | None:
    """'191386', 'NCJ 229379', '206598 Find in a Library', '123,456' -> int."""
    if not text:
        return None
    if text.isdigit() and text.isascii():  # the common case, as plain as it gets
        return _storable(int(text)) or None
    value = _FIND_IN_A_LIBRARY.sub("", collapse(text))
    match = _NCJ.match(value)
    if not match:
        # A value that swallowed the rest of a broken page: its first line, if that is all
        # an NCJ number and no other line is one.
        lines = [collapse(line) for line in text.split("\n")]
        if len(lines) < 2 or any(_NCJ.match(line) for line in lines[1:]):
            return None
        match = _NCJ.match(_FIND_IN_A_LIBRARY.sub("", lines[0]))
        if not match:
            return None
    number = int(match.group(1).replace(",", ""))
    return _storable(number) or None


# --- Title -----------------------------------------------------------------------------------

_CHAPTER = re.compile(r"\(From (?P<inner>.+) -- See NCJ[- ]?(?P<parent>\d+)\s*\)$", re.IGNORECASE)
_CHAPTER_BOOK = re.compile(r"^(?P<book>.+?), P (?P<pages>[^,]+)(?:,|$)")
_CHAPTER_BOOK_NO_PAGES = re.compile(r"^(?P<book>.+?), (?:\d{4}|n\.d\.)(?:,|$)")


def normalize_title(text: str | None) -> str | None:
    return collapse(text) or None if text else None


def parse_chapter(title: str | None) -> ChapterOf | None:
    """'Title (From Book, P 5-40, 2004, Ed, ed. -- See NCJ-206597)' -> parent, book, pages."""
    if not title:
        return None
    match = _CHAPTER.search(title)
    if not match:
        return None
    inner = match.group("inner")
    book: str | None = None
    pages: str | None = None
    if found := _CHAPTER_BOOK.match(inner):
        book, pages = found.group("book"), found.group("pages").strip()
    elif found := _CHAPTER_BOOK_NO_PAGES.match(inner):
        book = found.group("book")
    else:
        book = inner
    return ChapterOf(parent_ncj_number=int(match.group("parent")), book_title=book, pages=pages)


# --- People ----------------------------------------------------------------------------------

_NO_AUTHOR = frozenset({"anon", "anon.", "anonymous", "none", "n/a", "unknown"})
_SUFFIXES = frozenset(
    {"jr", "sr", "ii", "iii", "iv", "v", "phd", "md", "jd", "edd", "esq", "mpa", "mph", "msw"}
)
_EDITOR_MARKS = frozenset({"ed", "eds", "editor", "editors", "ed.", "eds."})
_PARTICLES = frozenset(
    {"van", "von", "de", "der", "den", "da", "di", "del", "della", "du", "la", "le"}
)
_SIMPLE_TOKEN = re.compile(r"^[^\W\d_][\w'’-]*\.?$")


def split_people(values: Iterable[str], *, commas: bool) -> list[str]:
    """Names as displayed. Authors are split on ';', editors also on ','."""
    names: list[str] = []
    for value in values:
        for line in value.split("\n"):
            pieces = re.split(r"[;,]" if commas else r";", line)
            for piece in pieces:
                name = collapse(piece)
                if not name:
                    continue
                bare = name.lower().replace(".", "").replace(" ", "")
                if commas and names and bare in _SUFFIXES:
                    names[-1] = f"{names[-1]}, {name}"  # "Smith, Jr." was split at its comma
                    continue
                if name.lower() in _EDITOR_MARKS or name.lower() in _NO_AUTHOR:
                    continue
                names.append(name)
    return names


# Bounded small: a judging process lives as long as the crawl, and 65,536 names cached
# (about 30 MiB) made its memory grow with every record of a whole-site crawl; the names
# worth caching are the few that recur.
@lru_cache(maxsize=4096)
def parse_person(name: str) -> Person:
    """Display name kept as shown; family, given and suffix parsed.

    Plain "Given M Family [Suffix]" names (most of the collection) are split directly; anything
    else (commas, titles, particles, nicknames) goes to nameparser.
    """
    tokens = name.split()
    if "," not in name and all(_SIMPLE_TOKEN.match(t) for t in tokens):
        suffix_tokens: list[str] = []
        while len(tokens) > 2 and tokens[-1].lower().replace(".", "") in _SUFFIXES:
            suffix_tokens.insert(0, tokens.pop())
        if len(tokens) >= 2 and tokens[-2].lower() not in _PARTICLES:
            return Person(
                name=name,
                family=tokens[-1],
                given=" ".join(tokens[:-1]),
                suffix=" ".join(suffix_tokens) or None,
            )
        if len(tokens) == 1 and not suffix_tokens:
            return Person(name=name, family=tokens[0])
    parsed = HumanName(name)
    given = " ".join(part for part in (parsed.first, parsed.middle) if part) or None
    family = parsed.last or None
    if family is None and given is not None:  # a single word: treat it as the family name
        family, given = given, None
    return Person(name=name, family=family, given=given, suffix=parsed.suffix or None)


def parse_people(values: Iterable[str], *, commas: bool) -> list[Person]:
    return [parse_person(name) for name in split_people(values, commas=commas)]


# --- Journal citation ------------------------------------------------------------------------

_JOURNAL_MARKER = re.compile(r"(?:^|\s)(Volume|Issue|Dated|Pages):\s*")
_MARKER_ORDER = {"Volume": 0, "Issue": 1, "Dated": 2, "Pages": 3}


def parse_journal(text: str | None) -> JournalCitation | None:
    """'<name> Volume: v Issue: i Dated: d Pages: p', read from the right (names hold ':')."""
    raw = collapse(text) if text else ""
    if not raw:
        return None
    parts: dict[str, str | None] = {}
    end = len(raw)
    below = len(_MARKER_ORDER)
    for match in reversed(list(_JOURNAL_MARKER.finditer(raw))):
        order = _MARKER_ORDER[match.group(1)]
        if order >= below or match.end() > end:
            break
        parts[match.group(1)] = raw[match.end() : end].strip() or None
        end = match.start()
        below = order
    dated = parts.get("Dated")
    if dated and dated.startswith("(") and dated.endswith(")"):
        dated = dated[1:-1].strip() or None
    return JournalCitation(
        raw=raw,
        name=raw[:end].strip(),
        volume=parts.get("Volume"),
        issue=parts.get("Issue"),
        dated=dated,
        pages=parts.get("Pages"),
    )


# --- Dates -----------------------------------------------------------------------------------

_MONTHS: dict[str, int] = {}
for _number in range(1, 13):
    _MONTHS[calendar.month_name[_number].lower()] = _number
    _MONTHS[calendar.month_abbr[_number].lower()] = _number
_MONTHS["sept"] = 9
_SEASONS = ("spring", "summer", "fall", "autumn", "winter")
_UNKNOWN_DATES = frozenset({"unknown", "n.d.", "nd", "undated", "no date"})
_M = "(?P<m>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_M2 = _M.replace("?P<m>", "?P<m2>")
_S = "(?P<s>" + "|".join(_SEASONS) + ")"
_Y = r"(?P<y>\d{4})"
# Most common first: a year alone, then "Month YYYY".
_DATE_FORMATS: list[tuple[re.Pattern[str], DatePrecision]] = [
    (re.compile(rf"^{_Y}$"), "year"),
    (re.compile(rf"^{_M},? {_Y}$"), "month"),
    (re.compile(rf"^{_M} (?P<d>\d{{1,2}}),? {_Y}$"), "day"),
    (re.compile(rf"^(?P<mn>\d{{1,2}})/{_Y}$"), "month"),
    (re.compile(rf"^(?P<d>\d{{1,2}}) {_M},? {_Y}$"), "day"),
    (re.compile(rf"^(?P<mn>\d{{1,2}})/(?P<d>\d{{1,2}})/{_Y}$"), "day"),
    (re.compile(rf"^{_Y}-(?P<mn>\d{{2}})-(?P<d>\d{{2}})$"), "day"),
    (re.compile(rf"^{_Y}-(?P<mn>\d{{2}})$"), "month"),
    (re.compile(rf"^{_M}\s*[-/–]\s*{_M2},? {_Y}$"), "month_range"),
    (re.compile(rf"^{_S}(?:\s*[-/–]\s*(?:{'|'.join(_SEASONS)}))?,? {_Y}$"), "season"),
]


def parse_date(text: str | None) -> PartialDate | None:
    """A date as precise as shown: 'August 2001' has no day, '1977' no month. None if empty.

    A value that swallowed the rest of a broken page gives the date of its first line.
    """
    date = _parse_date(text)
    if text and "\n" in text.strip() and date is not None and date.year is None:
        leading = _parse_date(text.strip().split("\n", 1)[0])
        if leading is not None and leading.year is not None:
            return leading
    return date


def _parse_date(text: str | None) -> PartialDate | None:
    shown = collapse(text) if text else ""
    if not shown:
        return None
    value = shown.lower()
    if value.startswith("(") and value.endswith(")"):
        value = value[1:-1].strip()
    if value in _UNKNOWN_DATES:
        return PartialDate(text=shown)
    for pattern, precision in _DATE_FORMATS:
        match = pattern.match(value)
        if not match:
            continue
        groups = match.groupdict()
        year = int(groups["y"])
        month = _MONTHS[groups["m"]] if groups.get("m") else None
        if groups.get("mn"):
            month = int(groups["mn"])
        day = int(groups["d"]) if groups.get("d") else None
        if not _plausible(year, month, day):
            return PartialDate(text=shown)
        return PartialDate(text=shown, year=year, month=month, day=day, precision=precision)
    return PartialDate(text=shown)


def _plausible(year: int, month: int | None, day: int | None) -> bool:
    if not 1000 <= year <= 2999:
        return False
    if month is not None and not 1 <= month <= 12:
        return False
    return day is None or (month is not None and 1 <= day <= calendar.monthrange(year, month)[1])


# --- Length ----------------------------------------------------------------------------------

_LENGTH = re.compile(r"^(?:page count:?\s*|length:?\s*)?(\d[\d,]*)\s*(?:pages?|pp?\.?)?$", re.I)


def parse_length(text: str | None) -> int | None:
    """'3 pages', '36', '0 pages' -> int."""
    if not text:
        return None
    match = _LENGTH.match(collapse(text))
    return _storable(int(match.group(1).replace(",", ""))) if match else None


# --- Organisations and their addresses -------------------------------------------------------

_COUNTRIES = frozenset(
    """united states of america|united states|usa|u.s.a.|england|united kingdom|great britain|
    scotland|wales|northern ireland|ireland|canada|australia|new zealand|france|germany|
    west germany|federal republic of germany|netherlands|belgium|switzerland|austria|italy|spain|
    portugal|sweden|norway|denmark|finland|japan|china|india|israel|south africa|mexico|brazil|
    argentina|russia|poland|hungary|greece|international""".replace("\n", "")
    .replace("    ", "")
    .split("|")
)
_ADDRESS_LINE = re.compile(
    r"""\b[A-Z]{2}\s+\d{5}(?:-\d{4})?\b          # US state and ZIP
    | ^\d+[A-Za-z]?\s                            # a street number
    | ^(?:P\.?\s*O\.?\s*Box|Box\s+\d|Suite\b|Room\b|Rm\.?\s|Bldg\b|Building\s+\d)
    | ^(?:Floor\b|Mail\s+Stop)
    | \b[A-Z]\d[A-Z]\s?\d[A-Z]\d\b               # a Canadian postcode
    | \b[A-Z]{1,2}\d[A-Z\d]?\s+\d[A-Z\d]{2}\b    # a UK postcode
    | ^[A-Z][\w .'-]+,\s*[A-Z]{2}$               # City, ST
    | ^[A-Z][\w .'-]+,\s*[A-Z]{2}\s+\d{3,4}$      # City, ST and a partial ZIP
    | ^[A-Z]{1,2}-\d{4,5}\s+[A-Z]                 # a European postcode first: D-6200 Wiesbaden
    | ^[A-Z][\w .'-]+,\s*[A-Z][\w .'-]+\s+[A-Z]\d[A-Z]$  # City, Province K1A (partial)
    """,
    re.VERBOSE,
)
# A city and a UK postal district: "London W1", "Manchester, M13". Organisation words rule it
# out: "Department K9" is a name.
_CITY_AND_DISTRICT = re.compile(
    r"^(?P<city>[A-Z][a-z]+(?:\s[A-Z][a-z]+)?),?\s+[A-Z]{1,2}\d{1,2}[A-Z]?$"
)
_ORGANIZATION_WORDS = frozenset(
    [
        "department",
        "dept",
        "unit",
        "division",
        "section",
        "office",
        "bureau",
        "branch",
        "team",
        "group",
        "region",
        "committee",
        "center",
        "centre",
        "institute",
        "agency",
        "council",
        "board",
        "service",
        "services",
        "police",
        "court",
    ]
)
# "London, England W1", "Paris, France 75007": a country with a (partial) postal code after it.
_COUNTRY_AND_CODE = re.compile(r"^(?P<country>[A-Za-z .]+?)\s+[A-Z0-9]{1,4}(?:\s?[A-Z0-9]{1,3})?$")


def is_address_line(line: str) -> bool:
    """'Washington, DC 20531', '198 Madison Avenue', 'London, NW3 1Q4, England' ..."""
    bare = line.strip().rstrip(".").strip()
    lowered = bare.lower()
    if lowered in _COUNTRIES:
        return True
    if "," in bare:
        last = bare.rsplit(",", 1)[1].strip()
        if last.lower() in _COUNTRIES:
            return True
        coded = _COUNTRY_AND_CODE.match(last)
        if (
            coded
            and coded.group("country").lower() in _COUNTRIES
            and any(c.isdigit() for c in last)
        ):
            return True
    district = _CITY_AND_DISTRICT.match(bare)
    if district and not _ORGANIZATION_WORDS & set(district.group("city").lower().split()):
        return True
    return bool(_ADDRESS_LINE.search(bare))


def organization_names(values: Iterable[str]) -> list[str]:
    """Name lines of multi-line organisation blocks, address and country lines dropped."""
    names: list[str] = []
    for value in values:
        for line in re.split(r"[\n;]", value):
            name = collapse(line)
            if name and not is_address_line(name) and name not in names:
                names.append(name)
    return names


def split_list(values: Iterable[str], separators: str = r"[\n;]") -> list[str]:
    items: list[str] = []
    for value in values:
        for piece in re.split(separators, value):
            item = collapse(piece)
            if item and item not in items:
                items.append(item)
    return items


# --- Text fields -----------------------------------------------------------------------------


def block_text(values: Iterable[str]) -> str | None:
    """Paragraph values (already line-structured by the parser) joined by blank lines."""
    text = "\n\n".join(value.strip() for value in values if value and value.strip())
    return clean(text) or None


def line_text(values: Iterable[str]) -> str | None:
    text = "\n".join(value.strip() for value in values if value and value.strip())
    return clean(text) or None


def single_line(values: Iterable[str]) -> str | None:
    return collapse(" ".join(values)) or None


# --- The record ------------------------------------------------------------------------------


def normalize_record(raw: RawRecord) -> Record:
    """RawRecord -> Record. Missing NCJ number or title stay None for validation to judge."""
    fields = raw.fields
    title = normalize_title(raw.joined("title", " ") or raw.heading)
    length_text = raw.first("length") or raw.first("page_count")
    return Record(
        ncj_number=parse_ncj_number(raw.first("ncj_number")),
        title=title,
        source_url=raw.final_url,
        fetched_at=raw.fetched_at,
        chapter_of=parse_chapter(title),
        journal=parse_journal(raw.joined("journal", " ")),
        authors=parse_people(fields.get("authors", ()), commas=False),
        editors=parse_people(fields.get("editors", ()), commas=True),
        corporate_authors=organization_names(fields.get("corporate_authors", ())),
        published=parse_date(raw.joined("date_published", " ")),
        date_created=parse_date(raw.joined("date_created", " ")),
        page_count=parse_length(length_text),
        annotation=block_text(fields.get("annotation", ())),
        abstract=block_text(fields.get("abstract", ())),
        sponsoring_agencies=organization_names(fields.get("sponsoring_agencies", ())),
        agencies=split_list(fields.get("agencies", ()), r"[\n;,]"),
        grant_numbers=split_list(fields.get("grant_numbers", ()), r"[\n;,]"),
        sale_source=line_text(fields.get("sale_source", ())),
        publisher=line_text(fields.get("publisher", ())),
        document_urls=list(dict.fromkeys(raw.links.get("document", ()))),
        publication_type=single_line(fields.get("publication_type", ())),
        publication_format=single_line(fields.get("publication_format", ())),
        language=single_line(fields.get("language", ())),
        country=single_line(fields.get("country", ())),
        publication_series=single_line(fields.get("publication_series", ())),
        note=block_text(fields.get("note", ())),
        subjects=split_list(fields.get("subjects", ())),
        extra_fields={label: list(values) for label, values in raw.unknown_fields.items()},
        layout=raw.layout,
        requested_url=raw.url,
        status=raw.status,
        redirect_urls=list(raw.redirect_urls),
        etag=raw.etag,
        last_modified=raw.last_modified,
        sitemap_lastmod=raw.sitemap_lastmod,
        sitemap_url=raw.sitemap_url,
        text_repairs=list(raw.text_repairs),
        raw=raw,
    )


# Fields that describe the fetch, not the record: they do not change its content hash.
_NOT_CONTENT = (
    "source_url",
    "fetched_at",
    "requested_url",
    "status",
    "redirect_urls",
    "layout",
    "etag",
    "last_modified",
    "sitemap_lastmod",
    "sitemap_url",
    "text_repairs",
    "content_hash",  # the hash itself
)


def record_content(record: Record) -> dict[str, Any]:
    """The record's content as plain JSON-able data (the golden-file format)."""
    return {
        name: _plain(getattr(record, name))
        for name in _field_names(Record)
        if name not in _NOT_CONTENT and name != "raw"
    }


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


_SCALARS = (str, int, float, bool, type(None))


def _plain(value: Any) -> Any:
    """dataclasses.asdict without its deep copies: values here are immutable or rebuilt."""
    if type(value) in _SCALARS:
        return value
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if is_dataclass(value) and not isinstance(value, type):
        return {name: _plain(getattr(value, name)) for name in _field_names(type(value))}
    return value


def known_content_hash(record: Record) -> str:
    """The record's content hash: the one its judgement computed, else computed now."""
    return record.content_hash or content_hash(record)


def content_hash(record: Record) -> str:
    # Field order is fixed by the dataclass, so no key sorting is needed for a stable hash;
    # unknown labels (a dict filled in page order) are the one mapping sorted.
    content = record_content(record)
    content["extra_fields"] = sorted(content["extra_fields"].items())
    payload = json.dumps(content, ensure_ascii=False, check_circular=False)
    return hashlib.sha256(payload.encode()).hexdigest()
