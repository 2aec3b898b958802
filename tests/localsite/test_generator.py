"""The local site's generator: determinism, uniqueness, truth shape, pages agreeing with truth."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from typing import Any

import pytest
from lxml import html as lxml_html

from harvester.localsite import GOLDEN_KEYS, Site
from harvester.localsite.generator import LEGACY_ALT_ID_BASE

BASE = "http://127.0.0.1:8123"
WS = re.compile(r"\s+")
ADDRESS = re.compile(r", [A-Z]{2} \d{5}$")


def collapse(text: str) -> str:
    return WS.sub(" ", text).strip()


@pytest.fixture(scope="module")
def site() -> Site:
    return Site(records=3000, seed=7)


def render_primary(site: Site, i: int) -> str:
    if site.layout(i) == "current":
        return site.render_current(i, BASE)
    return site.render_legacy(i, BASE)


# ---------------------------------------------------------------------------------------------
# Determinism and identity
# ---------------------------------------------------------------------------------------------


def test_same_seed_same_pages_and_truth() -> None:
    a, b = Site(records=400, seed=42), Site(records=400, seed=42)
    for i in (0, 1, 57, 399):
        assert render_primary(a, i).encode() == render_primary(b, i).encode()
        assert a.truth_entry(i, BASE) == b.truth_entry(i, BASE)
    assert a.render_listing(3, BASE) == b.render_listing(3, BASE)
    assert a.render_sitemap_index(BASE) == b.render_sitemap_index(BASE)
    assert a.render_sitemap(1, BASE) == b.render_sitemap(1, BASE)
    pub = next(i for i in range(400) if a.has_publication(i))
    assert a.render_publication(pub, BASE) == b.render_publication(pub, BASE)


def test_different_seed_differs() -> None:
    a, b = Site(records=400, seed=1), Site(records=400, seed=2)
    assert [a.ncj_number(i) for i in range(50)] != [b.ncj_number(i) for i in range(50)]
    assert render_primary(a, 5) != render_primary(b, 5)
    assert a.truth_entry(5, BASE) != b.truth_entry(5, BASE)


def test_record_does_not_depend_on_generation_order() -> None:
    big = Site(records=250_000, seed=3)
    last = big.record(249_999)  # O(1): nothing before it is generated
    assert big._record.cache_info().currsize == 1
    fresh = Site(records=250_000, seed=3)
    for i in range(0, 20):
        fresh.record(i)
    assert fresh.record(249_999) == last
    assert 10_000 <= last.ncj_number < 260_000


def test_ncj_numbers_unique_spread_and_invertible(site: Site) -> None:
    numbers = [site.ncj_number(i) for i in range(site.records)]
    assert len(set(numbers)) == len(numbers)
    assert all(10_000 <= n < 260_000 for n in numbers)
    assert min(numbers) < 30_000
    assert max(numbers) > 240_000
    ascending = sum(1 for x, y in itertools.pairwise(numbers) if y == x + 1)
    assert ascending < 10  # not sequential
    for i in (0, 1, 1234, site.records - 1):
        assert site.index_of_ncj(site.ncj_number(i)) == i
    unused = next(n for n in range(10_000, 260_000) if n not in set(numbers))
    assert site.index_of_ncj(unused) is None


def test_slugs_unique_and_decodable(site: Site) -> None:
    slugs = [site.slug(i) for i in range(site.records)]
    assert len(set(slugs)) == len(slugs)
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", s) and len(s) <= 70 for s in slugs)
    for i in range(0, site.records, 97):
        assert site.index_of_slug(slugs[i]) == i
    assert site.index_of_slug(slugs[5] + "-extra") is None
    assert site.index_of_slug("no-such-page") is None


def test_legacy_ids(site: Site) -> None:
    alt = [i for i in range(site.records) if site.legacy_id(i) >= LEGACY_ALT_ID_BASE]
    assert alt, "some legacy URLs carry an id that is not the NCJ number"
    for i in alt[:20] + list(range(30)):
        assert site.index_of_legacy_id(site.legacy_id(i)) == i
    assert all(site.layout(i) == "legacy" for i in alt)
    assert site.index_of_legacy_id(site.ncj_number(alt[0])) is None


# ---------------------------------------------------------------------------------------------
# Truth
# ---------------------------------------------------------------------------------------------


def test_truth_entries_have_every_golden_key(site: Site) -> None:
    kinds: Counter[str] = Counter()
    for entry in site.truth(BASE):
        kinds[entry["kind"]] += 1
        assert entry["url"] == entry["urls"]["primary"]
        assert entry["url"].startswith(BASE + "/")
        if entry["kind"] == "rejected":
            assert entry["rejection"] in ("invalid_ncj_number", "missing_title")
            assert entry["expected"] is None
            continue
        assert entry["rejection"] is None
        assert tuple(entry["expected"]) == GOLDEN_KEYS
        assert entry["expected"]["ncj_number"] == entry["ncj_number"]
        if entry["publication"] is not None:
            assert tuple(entry["publication"]["expected"]) == GOLDEN_KEYS
            assert entry["publication"]["expected"]["ncj_number"] == entry["ncj_number"]
    assert kinds["record"] > 0
    assert kinds["rejected"] > 0


def test_shares(site: Site) -> None:
    n = site.records
    legacy = sum(site.layout(i) == "legacy" for i in range(n)) / n
    bad = sum(site.rejection(i) is not None for i in range(n)) / n
    current = [i for i in range(n) if site.layout(i) == "current"]
    pub = sum(site.has_publication(i) for i in current) / len(current)
    assert 0.11 < legacy < 0.19
    assert 0.003 < bad < 0.025
    assert 0.025 < pub < 0.08
    none_bad = Site(records=500, seed=7, bad_share=0.0)
    assert all(none_bad.rejection(i) is None for i in range(500))


def test_realistic_mix(site: Site) -> None:
    seen: Counter[str] = Counter()
    for i in range(site.records):
        rec = site.record(i)
        exp = site.expected(i)
        if exp is None:
            continue
        seen["chapter"] += exp["chapter_of"] is not None
        seen["caps"] += rec.caps
        seen["anon"] += rec.anon
        seen["editors"] += bool(exp["editors"])
        seen["five authors"] += len(exp["authors"]) == 5
        seen["suffix"] += any(a["suffix"] for a in exp["authors"])
        seen["french"] += rec.language == "French"
        seen["zero pages"] += exp["page_count"] == 0
        seen["bullets"] += any(kind == "ul" for kind, _ in rec.abstract)
        seen["2010 variant"] += rec.legacy_variant == "2010"
        published = exp["published"] or {}
        seen["unknown date"] += published.get("text") == "Unknown"
        seen[f"precision {published.get('precision')}"] += 1
        journal = exp["journal"]
        if journal:
            seen["no volume"] += journal["volume"] is None
            seen["legacy spacing"] += "  " in rec.journal.display  # type: ignore[union-attr]
            seen["parenthesized dated"] += "(" in rec.journal.display  # type: ignore[union-attr]
            seen[f"pages {journal['pages']}"] += journal["pages"] in ("complete issue", "Insert")
            seen["page list"] += "," in (journal["pages"] or "")
            seen["name with & : ,"] += any(c in journal["name"] for c in "&:,")
        if rec.layout == "legacy":
            seen["sponsor"] += bool(exp["sponsoring_agencies"])
            seen["grant"] += bool(exp["grant_numbers"])
            seen["corporate"] += bool(exp["corporate_authors"])
            seen["document"] += bool(exp["document_urls"])
    for key in (
        "chapter", "caps", "anon", "editors", "five authors", "suffix", "french", "zero pages",
        "bullets", "2010 variant", "unknown date", "precision day", "precision month",
        "precision month_range", "precision season", "precision year", "no volume",
        "legacy spacing", "parenthesized dated", "pages complete issue", "pages Insert",
        "page list", "name with & : ,", "sponsor", "grant", "corporate", "document",
    ):  # fmt: skip
        assert seen[key] > 0, key


def test_chapter_title_matches_chapter_of(site: Site) -> None:
    chapters = [i for i in range(site.records) if (site.expected(i) or {}).get("chapter_of")]
    for i in chapters[:50]:
        exp = site.expected(i)
        assert exp is not None
        ch = exp["chapter_of"]
        m = re.search(
            r"\(From (.+), P (\d+-\d+), (\d{4}), (.+), ed\. -- See NCJ-(\d+)\)$", exp["title"]
        )
        assert m, exp["title"]
        assert (m.group(1), m.group(2), int(m.group(5))) == (
            ch["book_title"], ch["pages"], ch["parent_ncj_number"],
        )  # fmt: skip
        assert site.index_of_ncj(ch["parent_ncj_number"]) is not None  # the parent exists


def test_names_and_dates_follow_golden_rules(site: Site) -> None:
    for i in range(site.records):
        exp = site.expected(i)
        if exp is None:
            continue
        for person in exp["authors"] + exp["editors"]:
            parts = [person["given"], person["family"], person["suffix"]]
            assert person["name"] == " ".join(p for p in parts if p)
            assert " " not in person["family"]
        published = exp["published"]
        if published and published["precision"] == "month_range":
            assert re.fullmatch(r"[A-Z][a-z]+-[A-Z][a-z]+ \d{4}", published["text"])
        if exp["journal"]:
            assert "(" not in (exp["journal"]["dated"] or "")
            assert "  " not in exp["journal"]["raw"]
        assert 200 <= len(exp["abstract"]) <= 2500
        for text in (exp["annotation"], exp["abstract"]):
            assert text
            assert "  " not in text
            assert "\n\n\n" not in text


# ---------------------------------------------------------------------------------------------
# Pages agree with truth (a small independent extractor)
# ---------------------------------------------------------------------------------------------


def _paragraphs(element: Any) -> str:
    parts = []
    for child in element:
        if child.tag == "p":
            parts.append(collapse(child.text_content()))
        elif child.tag == "ul":
            parts.append("\n".join(collapse(li.text_content()) for li in child.iter("li")))
    return "\n\n".join(parts)


def _br_lines(element: Any) -> list[str]:
    for br in element.iter("br"):
        br.tail = "\ue000" + (br.tail or "")
    return [collapse(s) for s in element.text_content().split("\ue000")]


def _blank_line_paragraphs(lines: list[str]) -> str:
    paragraphs, current = [], []
    for line in [*lines, ""]:
        if line:
            current.append(line)
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    return "\n\n".join(paragraphs)


def extract_current(page: str) -> dict[str, Any]:
    start, end = page.index("<main"), page.index("</main>") + len("</main>")
    assert "field__label" not in page[:start] + page[end:]  # chrome carries no record fields
    doc = lxml_html.fromstring(page[start:end])
    out: dict[str, Any] = {"title": collapse(doc.xpath("string(//h1)"))}
    for field in doc.xpath("//div[div[@class='field__label']]"):
        label = collapse(field.xpath("string(div[@class='field__label'])"))
        items = field.xpath("div[@class='field__item'] | div[@class='field__items']/div")
        if label == "Abstract":
            out[label] = _paragraphs(items[0])
        else:
            out[label] = [collapse(item.text_content()) for item in items]
    for strong in doc.xpath("//strong[contains(., ':')]"):
        out[strong.text.rstrip(":")] = [collapse(strong.tail or "")]
    return out


def extract_legacy(page: str) -> dict[str, Any]:
    doc = lxml_html.fromstring(page)
    out: dict[str, Any] = {}
    for row in doc.xpath("//table[@id='abstractTable']/tr"):
        label = collapse(row.xpath("string(td[1])")).rstrip(":")
        out[label] = _br_lines(row.xpath("td[2]")[0])
    inline = doc.xpath("//div[@id='abstractText']")
    if inline:
        lines = _br_lines(inline[0])
        text = "\ue000".join(lines)
        annotation, _, abstract = text.partition("Abstract:")
        out["Annotation"] = [collapse(annotation.replace("Annotation:", "").replace("\ue000", " "))]
        out["Abstract"] = [collapse(s) for s in abstract.split("\ue000")]
    return out


def test_current_pages_show_the_truth(site: Site) -> None:
    checked = 0
    for i in range(site.records):
        if site.layout(i) != "current":
            continue
        exp = site.expected(i)
        got = extract_current(site.render_current(i, BASE))
        if exp is None:
            rejection = site.rejection(i)
            if rejection == "missing_title":
                assert got["title"] == ""
            else:
                assert not got["NCJ Number"][0].isdigit()
            continue
        assert got["title"] == exp["title"]
        assert got["NCJ Number"] == [str(exp["ncj_number"])]
        assert got["Annotation"] == [exp["annotation"]]
        assert got["Abstract"] == exp["abstract"]
        names = [a["name"] for a in exp["authors"]]
        if names:
            assert got["Author(s)"] == ["; ".join(names)]
        if exp["journal"]:
            assert got["Journal"] == [exp["journal"]["raw"]]
        if exp["published"]:
            assert got["Date Published"] == [exp["published"]["text"]]
        if exp["page_count"] is not None:
            assert got["Length"] == [f"{exp['page_count']} pages"]
        assert "Title" not in got
        assert "Sponsoring Agency" not in got
        checked += 1
    assert checked > 2000


def test_legacy_pages_show_the_truth(site: Site) -> None:
    checked = 0
    for i in range(site.records):
        if site.layout(i) != "legacy":
            continue
        exp = site.expected(i, base_url=BASE)
        got = extract_legacy(site.render_legacy(i, BASE))
        assert got["NCJ Number"][0].endswith("Find in a Library")
        if exp is None:
            continue
        ncj_text = got["NCJ Number"][0].removesuffix("Find in a Library")
        assert int(ncj_text.replace("NCJ", "").strip()) == exp["ncj_number"]
        assert got["Title"] == [exp["title"]]
        assert got["Annotation"] == [exp["annotation"]]
        assert _blank_line_paragraphs(got["Abstract"]) == exp["abstract"]
        lines = got.get("Sponsoring Agency", [])
        assert [x for x in lines if not ADDRESS.search(x)] == exp["sponsoring_agencies"]
        assert got.get("Corporate Author", [])[::2] == exp["corporate_authors"]
        assert got.get("Grant Number", []) == exp["grant_numbers"]
        assert "\n".join(got.get("Sale Source", [])) == (exp["sale_source"] or "")
        assert got["Language"] == [exp["language"]]
        assert got["Country"] == [exp["country"]]
        if exp["page_count"] is not None:
            assert got["Page Count"] == [str(exp["page_count"])]
        checked += 1
    assert checked > 300


def test_publication_pages_show_the_truth(site: Site) -> None:
    pubs = [i for i in range(site.records) if site.has_publication(i)]
    assert pubs
    for i in pubs:
        exp = site.expected(i, "publication")
        assert exp is not None
        got = extract_current(site.render_publication(i, BASE))
        assert got["NCJ Number"] == [str(exp["ncj_number"])]
        assert got["Agencies"] == exp["agencies"]
        assert got["Publication Series"] in ([], [""])
        assert got["Date Created"] == [exp["date_created"]["text"]]
        shown = got["Date Published"][0] if got["Date Published"] else ""
        assert shown == (exp["published"]["text"] if exp["published"] else "")
        assert got["Abstract"] == exp["abstract"]
        if exp["page_count"] is not None:
            assert got["Length"] == [f"{exp['page_count']} pages"]
        assert exp["authors"] == []
        assert exp["journal"] is None


def test_page_sizes(site: Site) -> None:
    current = [
        len(site.render_current(i, BASE).encode())
        for i in range(200)
        if site.layout(i) == "current"
    ]
    assert min(current) >= 25_000
    assert max(current) <= 45_000
    page = site.render_current(next(i for i in range(50) if site.layout(i) == "current"), BASE)
    assert page.count("<a ") > 150  # navigation chrome
    assert "drupal-settings-json" in page
    for word in ("Abstracts", "Publications", "Downloads"):
        assert word in page


def test_site_options_validated() -> None:
    with pytest.raises(ValueError, match="records"):
        Site(records=0)
    with pytest.raises(ValueError, match="records"):
        Site(records=250_001)
    with pytest.raises(ValueError, match="bad_share"):
        Site(records=10, bad_share=2.0)
    with pytest.raises(TypeError):
        Site(records=10, no_such_option=1)
