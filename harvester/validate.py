"""Deciding whether a normalized record can be trusted.

A record that fails goes to quarantine with its raw values, never into ``records``. The checks
are about identity (a numeric NCJ number, a title) and about values that sit under the wrong
label, which is what a page looks like when its labels and values fall out of step.
"""

from __future__ import annotations

import re

from harvester.items import RawRecord, Record, Rejection
from harvester.normalize import parse_date, parse_length

_CITATION_MARKERS = re.compile(r"\b(?:Volume|Issue|Dated|Pages):")
# Short fields: a value much longer than this is a paragraph that slid under the wrong label.
_SHORT_FIELD_LIMIT = 120


def _quote(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def validate(record: Record) -> Rejection | None:
    raw = record.raw
    if raw is not None and raw.encoding_problem:
        # Wrong text under a right NCJ number would be stored as if it were right.
        return Rejection("encoding", raw.encoding_problem)
    ncj_text = raw.joined("ncj_number", " ") if raw else None
    if record.ncj_number is None:
        if not ncj_text:
            return Rejection("missing_ncj_number", "the page has no NCJ Number value")
        return Rejection("invalid_ncj_number", f"NCJ Number is {_quote(ncj_text)}")
    if not record.title:
        return Rejection("missing_title", f"NCJ {record.ncj_number} has no title")
    if raw is not None and (shifted := _shifted_value(record, raw)):
        return Rejection("shifted_values", shifted)
    return None


def _shifted_value(record: Record, raw: RawRecord) -> str | None:
    """A value that fits another label better than its own: the page is out of step.

    Only values that normalization could not read are looked at twice.
    """

    def describe(name: str, value: str) -> str:
        return f"{raw.labels.get(name, name)} is {_quote(value)}"

    date_text = raw.joined("date_published", " ")
    published = record.published
    if (
        date_text
        and (published is None or published.year is None)
        and (parse_length(date_text) is not None or _looks_misplaced(date_text))
    ):
        return describe("date_published", date_text)
    for name in ("length", "page_count"):
        length_text = raw.first(name)
        if length_text and record.page_count is None:
            date = parse_date(length_text)
            if (date is not None and date.year is not None) or _looks_misplaced(length_text):
                return describe(name, length_text)
    for name in ("authors", "editors", "language", "country", "publication_type"):
        for value in raw.fields.get(name, ()):
            pieces = value.split(";") if name in ("authors", "editors") else [value]
            if any(_looks_misplaced(piece) for piece in pieces):
                return describe(name, value)
    return None


def _looks_misplaced(text: str) -> bool:
    return len(text) > _SHORT_FIELD_LIMIT or bool(_CITATION_MARKERS.search(text))
