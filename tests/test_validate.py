"""Which normalized records are trusted, and the exact reasons for those that are not."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from harvester.items import RawRecord, Rejection
from harvester.normalize import normalize_record
from harvester.validate import validate


def raw(**fields: str) -> RawRecord:
    return RawRecord(
        url="https://www.ojp.gov/ncjrs/virtual-library/abstracts/x",
        final_url="https://www.ojp.gov/ncjrs/virtual-library/abstracts/x",
        status=200,
        fetched_at=datetime(2026, 1, 1, tzinfo=UTC),
        layout="current",
        heading=fields.pop("heading", "A Title"),
        fields={name: [value] for name, value in fields.items()},
        labels={name: name.replace("_", " ").title() for name in fields},
    )


def check(record: RawRecord) -> Rejection | None:
    return validate(normalize_record(record))


def test_a_complete_record_passes() -> None:
    assert check(raw(ncj_number="191386", date_published="August 2001", length="3 pages")) is None


def test_missing_ncj_number() -> None:
    assert check(raw(abstract="Text.")) == Rejection(
        "missing_ncj_number", "the page has no NCJ Number value"
    )


def test_non_numeric_ncj_number() -> None:
    rejection = check(raw(ncj_number="Corrections Compendium Volume: 27 Issue: 5"))
    assert rejection is not None
    assert rejection.reason == "invalid_ncj_number"
    assert "Corrections Compendium" in rejection.detail


def test_missing_title() -> None:
    assert check(raw(ncj_number="1", heading="")) == Rejection(
        "missing_title", "NCJ 1 has no title"
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"date_published": "14 pages"},  # a length under the date label
        {"length": "May 2002"},  # a date under the length label
        {"date_published": "Corrections Compendium Volume: 27 Issue: 5 Dated: May 2002"},
        {"authors": "Corrections Compendium Volume: 27 Issue: 5 Dated: May 2002 Pages: 6-19"},
        {
            "language": "This document includes the statistical results and summary analysis of "
            "the Corrections Compendium facility violence survey for 2000 to 2001, and more."
        },
    ],
)
def test_values_under_the_wrong_labels_are_not_stored(fields: dict[str, str]) -> None:
    rejection = check(raw(ncj_number="195577", **fields))
    assert rejection is not None
    assert rejection.reason == "shifted_values"


@pytest.mark.parametrize(
    "fields",
    [
        {"date_published": "Unknown", "length": "0 pages"},
        {"date_published": "(Summer 1977)"},
        {"date_published": "Winter 1998-1999"},  # unread, but not another field's value
        {"length": "1 volume"},
    ],
)
def test_odd_but_plausible_values_pass(fields: dict[str, str]) -> None:
    assert check(raw(ncj_number="1", **fields)) is None


def test_text_that_could_not_be_repaired_is_quarantined_as_encoding() -> None:
    record = raw(ncj_number="90104", authors="S\ufffdren M\ufffdller")
    record.encoding_problem = "Author(s): 'S\ufffdren M\ufffdller' has a U+FFFD"
    assert check(record) == Rejection(
        "encoding", "Author(s): 'S\ufffdren M\ufffdller' has a U+FFFD"
    )


def test_a_repaired_record_passes_and_carries_its_repairs() -> None:
    record = raw(ncj_number="90105", authors="María Núñez")
    record.text_repairs = ["Author(s): 'MarÃ\xada NÃºÃ±ez' -> 'María Núñez'"]
    normalized = normalize_record(record)
    assert validate(normalized) is None
    assert normalized.text_repairs == ["Author(s): 'MarÃ\xada NÃºÃ±ez' -> 'María Núñez'"]
