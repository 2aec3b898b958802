"""Golden tests: every frozen page fixture parses, normalizes and validates as its .json says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harvester.items import NonRecordPage, RawRecord
from harvester.normalize import normalize_record, record_content
from harvester.parsing import label_key, parse_page
from harvester.validate import validate
from tests.support import golden, page_names, response_from_file

# Texts of real NCJRS record pages as rendered (copied from the team's shared samples), so
# the suite needs nothing beside the checkout.
SAMPLES = Path(__file__).resolve().parent / "fixtures" / "samples"


@pytest.mark.parametrize("name", page_names())
def test_fixture_matches_golden(name: str) -> None:
    meta = golden(name)
    page = parse_page(response_from_file(name))
    if meta["kind"] in ("soft_404", "no_record_fields", "several_records"):
        assert page == NonRecordPage(url=meta["url"], reason=meta["kind"])
        return
    assert isinstance(page, RawRecord)
    assert page.layout == meta["layout"]
    record = normalize_record(page)
    rejection = validate(record)
    if meta["kind"] == "rejected":
        assert rejection is not None
        assert rejection.reason == meta["rejection"]
        return
    assert rejection is None
    assert record_content(record) == meta["expected"]


def test_every_markup_has_a_fixture() -> None:
    markups = {golden(name)["markup"] for name in page_names()}
    assert {"a", "b", "c", "d", "e", "f"} <= markups


def test_every_real_sample_with_a_numeric_ncj_number_is_covered() -> None:
    numeric = {
        sample.name
        for sample in SAMPLES.glob("*.txt")
        if re.search(r"NCJ Number:?\s*(?:NCJ\s*)?\d+", sample.read_text(encoding="utf-8"))
    }
    covered = {golden(name)["sample"] for name in page_names()}
    assert len(numeric) == 16
    assert numeric <= covered


CHROME_WORDS = ("Similar Publications", "An official website", "Skip to main content")


@pytest.mark.parametrize("name", page_names())
def test_page_chrome_never_leaks_into_values(name: str) -> None:
    page = parse_page(response_from_file(name))
    if not isinstance(page, RawRecord):
        return
    values = [v for vs in page.fields.values() for v in vs]
    values += [v for vs in page.unknown_fields.values() for v in vs]
    for value in values:
        for word in CHROME_WORDS:
            assert word not in value


def test_parse_page_is_pure() -> None:
    response = response_from_file("current_191386")
    first = parse_page(response)
    second = parse_page(response)
    assert isinstance(first, RawRecord)
    assert isinstance(second, RawRecord)
    assert first.fields == second.fields
    assert first.unknown_fields == second.unknown_fields


def test_declared_windows_1252_charset_is_honoured() -> None:
    page = parse_page(response_from_file("legacy_cp1252_90001"))
    assert isinstance(page, RawRecord)
    record = normalize_record(page)
    assert record.title is not None
    assert "é" in record.title
    assert "\ufffd" not in record.title


def test_unknown_labels_are_kept() -> None:
    page = parse_page(response_from_file("dl_78126"))
    assert isinstance(page, RawRecord)
    assert page.unknown_fields == {"Call Number": ["HV 7936 .T4"]}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("NCJ Number", "ncj number"),
        ("  Author(s):", "author(s)"),
        ("DATE\u00a0PUBLISHED :", "date published"),
    ],
)
def test_label_key(text: str, key: str) -> None:
    assert label_key(text) == key


def test_generated_pages_of_every_layout_match_their_truth() -> None:
    from scrapy.http import HtmlResponse, Request

    from harvester.localsite.generator import Site

    site = Site(records=300, seed=11)
    base = "http://127.0.0.1:8000"
    checked = {"current": 0, "legacy": 0, "publication": 0, "rejected": 0}
    for index in range(site.records):
        truth = site.truth_entry(index, base)
        pages = [(truth["url"], truth["layout"], truth)]
        if truth["publication"]:
            pages.append((truth["publication"]["url"], "publication", truth["publication"]))
        for url, layout, expected in pages:
            render = {
                "current": site.render_current,
                "legacy": site.render_legacy,
                "publication": site.render_publication,
            }[layout]
            body = render(index, base).encode()
            response = HtmlResponse(url=url, body=body, encoding="utf-8", request=Request(url))
            page = parse_page(response)
            assert isinstance(page, RawRecord)
            record = normalize_record(page)
            rejection = validate(record)
            if expected["kind"] == "rejected":
                assert rejection is not None
                assert rejection.reason == expected["rejection"]
                checked["rejected"] += 1
                continue
            assert rejection is None, (url, rejection)
            assert page.layout == layout
            assert record_content(record) == expected["expected"], url
            checked[layout] += 1
    assert all(checked.values()), checked


def parse_html(body: str, url: str = "https://www.ojp.gov/ncjrs/virtual-library/abstracts/x"):
    from harvester.parsing import page_tree, parse_tree

    return parse_tree(page_tree(body.encode()), url=url)


def test_a_label_word_inside_a_value_stays_in_the_value() -> None:
    page = parse_html(
        "<main><h1>T</h1>"
        '<div class="field"><div class="field__label">NCJ Number</div>'
        '<div class="field__item">1</div></div>'
        '<div class="field"><div class="field__label">Abstract</div><div class="field__item">'
        "<p>First.</p><p><strong>Note:</strong> the data were revised.</p>"
        "<ul><li>Language</li><li>Country</li></ul></div></div>"
        '<div class="field"><div class="field__label">Language</div>'
        '<div class="field__item">English</div></div></main>'
    )
    assert isinstance(page, RawRecord)
    assert page.fields["abstract"] == [
        "First.\n\nNote: the data were revised.\n\nLanguage\nCountry"
    ]
    assert page.fields["language"] == ["English"]
    assert "note" not in page.fields


def test_plain_table_cells_with_colon_labels() -> None:
    page = parse_html(
        "<body><table><tr><td>NCJ Number:</td><td>7</td></tr>"
        "<tr><td>Title:</td><td>Journal</td></tr>"
        "<tr><td>Format:</td><td>Document</td></tr>"
        "<tr><td>Type:</td><td>Abstract</td></tr></table></body>"
    )
    assert isinstance(page, RawRecord)
    assert page.fields == {
        "ncj_number": ["7"],
        "title": ["Journal"],
        "publication_format": ["Document"],
        "publication_type": ["Abstract"],
    }


def test_page_furniture_links_end_a_value() -> None:
    page = parse_html(
        "<body><td><b>NCJ Number:</b> 5<br><b>Title:</b> T<br>"
        "<b>Country:</b> United States<br><br>"
        '<a href="/back">Back to Search Results</a> | <a href="/p">Printer Friendly</a>'
        "</td></body>"
    )
    assert isinstance(page, RawRecord)
    assert page.fields["country"] == ["United States"]


def test_a_colon_outside_the_bold_label_is_not_part_of_the_value() -> None:
    page = parse_html("<body><p><b>NCJ Number</b>: 9<br><b>Author(s)</b>: Smith, J</p></body>")
    assert isinstance(page, RawRecord)
    assert page.fields["authors"] == ["Smith, J"]
    assert page.fields["ncj_number"] == ["9"]


def test_a_listing_of_several_records_is_not_a_record() -> None:
    teaser = (
        '<div class="teaser"><div class="field__label">NCJ Number</div>'
        '<div class="field__item">{n}</div><div class="field__label">Annotation</div>'
        '<div class="field__item">About {n}.</div></div>'
    )
    page = parse_html(
        "<main><h1>Publications</h1>"
        + teaser.format(n=111111)
        + teaser.format(n=222222)
        + "</main>"
    )
    assert page == NonRecordPage(
        url="https://www.ojp.gov/ncjrs/virtual-library/abstracts/x", reason="several_records"
    )


def test_fields_in_an_article_header_are_read_but_page_headers_are_furniture() -> None:
    page = parse_html(
        "<body><header><div>Title</div><div>Site banner</div></header><main><article>"
        "<header><h1>Record</h1><div>NCJ Number</div><div>42</div></header>"
        "<section><div>Annotation</div><div>Short.</div></section>"
        "</article><aside><div>Abstract</div><div>Sidebar teaser</div></aside></main></body>"
    )
    assert isinstance(page, RawRecord)
    assert page.fields == {"ncj_number": ["42"], "annotation": ["Short."]}
    assert page.heading == "Record"


@pytest.mark.parametrize(
    ("name", "encoding", "repairs", "problem"),
    [
        ("undeclared_cp1252_90101", "cp1252", [], None),
        (
            "header_latin1_body_utf8_90102",
            "utf-8",
            ["declared cp1252 (header), but the body is valid UTF-8"],
            None,
        ),
        (
            "header_utf8_body_latin1_90103",
            "cp1252",
            ["declared utf-8 (header), but no byte of the body is UTF-8: read as windows-1252"],
            None,
        ),
        (
            "mixed_bytes_90104",
            "utf-8",
            [],
            "Author(s): 'S\ufffdren M\ufffdller' has a U+FFFD replacement character (bytes lost in"
            " decoding)",
        ),
        (
            "mojibake_source_90105",
            "utf-8",
            [
                "heading: 'Victim Services in SÃ£o Paulo' -> 'Victim Services in São Paulo'",
                "Author(s): 'JoÃ£o GonÃ§alves; MarÃ\\xada NÃºÃ±ez' -> "
                "'João Gonçalves; María Núñez'",
                "Abstract: 'A study of victim services in SÃ£o Paulo, Brazil.' -> "
                "'A study of victim services in São Paulo, Brazil.'",
            ],
            None,
        ),
        ("current_191386", "utf-8", [], None),
        ("legacy_cp1252_90001", "cp1252", [], None),
    ],
)
def test_how_the_text_was_read_is_recorded(
    name: str, encoding: str, repairs: list[str], problem: str | None
) -> None:
    page = parse_page(response_from_file(name))
    assert isinstance(page, RawRecord)
    assert (page.encoding, page.text_repairs, page.encoding_problem) == (encoding, repairs, problem)


def test_reparsing_a_stored_page_reads_it_as_the_crawl_did() -> None:
    from harvester.rawpages import fetched_page, response_for

    response = response_from_file("header_latin1_body_utf8_90102")
    first = parse_page(response)
    assert isinstance(first, RawRecord)
    stored = fetched_page(response, first)
    assert stored.encoding == "utf-8"
    again = parse_page(response_for(stored))
    assert isinstance(again, RawRecord)
    assert again.fields == first.fields
    assert again.text_repairs == first.text_repairs


def _nested_record(depth: int) -> bytes:
    return (
        b"<html><body>"
        + b"<div>" * depth
        + b"<dl><dt>NCJ Number</dt><dd>90106</dd><dt>Title</dt><dd>Deep</dd>"
        + b"<dt>Author(s)</dt><dd>Ann Smith</dd></dl>"
        + b"</div>" * depth
        + b"</body></html>"
    )


@pytest.mark.parametrize("depth", [300, 1000, 2040])
def test_deeply_nested_record_parses(depth: int) -> None:
    from scrapy.http import HtmlResponse

    response = HtmlResponse(
        url="https://www.ojp.gov/x", body=_nested_record(depth), headers={}, encoding="utf-8"
    )
    page = parse_page(response)
    assert isinstance(page, RawRecord)
    assert page.fields == {"ncj_number": ["90106"], "title": ["Deep"], "authors": ["Ann Smith"]}


def test_nesting_beyond_libxml2s_bound_is_not_a_record() -> None:
    """The bound that keeps a hostile page cheap: libxml2 stops at 2,048 levels (huge_tree)."""
    from scrapy.http import HtmlResponse

    response = HtmlResponse(
        url="https://www.ojp.gov/x", body=_nested_record(100_000), headers={}, encoding="utf-8"
    )
    assert parse_page(response) == NonRecordPage(
        url="https://www.ojp.gov/x", reason="no_record_fields"
    )


def test_a_note_inside_an_abstract_is_still_part_of_it() -> None:
    """Only atomic values stop at a label inside them; an abstract keeps its own 'Note:'."""
    from scrapy.http import HtmlResponse

    html = (
        "<html><body><table>"
        "<tr><td><b>NCJ Number:</b></td><td>1</td></tr>"
        "<tr><td><b>Title:</b></td><td>T</td></tr>"
        "<tr><td><b>Abstract:</b></td><td>Body.<p><strong>Note:</strong> see also.</p></td></tr>"
        "</table></body></html>"
    )
    page = parse_page(HtmlResponse(url="https://x/1", body=html.encode(), encoding="utf-8"))
    assert isinstance(page, RawRecord)
    assert page.fields["abstract"] == ["Body.\n\nNote: see also."]
    assert "note" not in page.fields


def test_a_swallowing_value_element_gives_its_leading_ncj_number_and_date() -> None:
    page = parse_page(response_from_file("swallowed_90107"))
    assert isinstance(page, RawRecord)
    assert page.fields["ncj_number"] == ["90107"]
    assert page.fields["date_published"] == ["June 2006"]
    assert page.fields["authors"] == ["Lena K. Ortiz"]
    assert page.fields["length"] == ["8 pages"]
