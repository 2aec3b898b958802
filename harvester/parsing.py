"""Reading a record page into a RawRecord: label -> values exactly as the page shows them.

The site's markup has changed before (ncjrs.gov ASP.NET tables, ojp.gov Drupal fields, bureau
publication pages) and will again, so nothing here depends on CSS classes. A label is an element
whose whole visible text is a known label ("NCJ Number", "Author(s):" ...), compared case- and
whitespace-insensitively with or without a trailing colon. Its value is what follows it among its
siblings, up to the next label:

- ``<div>NCJ Number</div><div>191386</div>`` (Drupal fields, headings followed by blocks),
- ``<dt>Author(s)</dt><dd>A</dd><dd>B</dd>`` (one value per ``dd``),
- ``<th>Title</th><td>...</td>`` and ``<td><b>Title:</b></td><td>...</td>`` (table rows),
- ``<b>Title:</b> text<br><b>Author(s):</b> ...`` (legacy inline labels, values over ``<br>``).

The outermost element whose text is just the label is taken as the label, so wrappers around a
label (``<td><strong>Label:</strong></td>``) do not matter.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

from lxml import etree
from scrapy.http import TextResponse

from harvester.items import Layout, NonRecordPage, RawRecord
from harvester.text import BLOCK_TAGS, SKIPPED_TAGS, collapse, element_text, node_text

# Label text (lower case, no trailing colon, single spaces) -> canonical field name.
LABELS: dict[str, str] = {
    "ncj number": "ncj_number",
    "ncj no.": "ncj_number",
    "ncj #": "ncj_number",
    "title": "title",
    "journal": "journal",
    "journal citation": "journal",
    "author(s)": "authors",
    "author": "authors",
    "authors": "authors",
    "editor(s)": "editors",
    "editor": "editors",
    "editors": "editors",
    "corporate author": "corporate_authors",
    "corporate author(s)": "corporate_authors",
    "corporate authors": "corporate_authors",
    "date published": "date_published",
    "publication date": "date_published",
    "length": "length",
    "page count": "page_count",
    "annotation": "annotation",
    "abstract": "abstract",
    "sponsoring agency": "sponsoring_agencies",
    "sponsoring agencies": "sponsoring_agencies",
    "sponsoring agency(ies)": "sponsoring_agencies",
    "grant number": "grant_numbers",
    "grant numbers": "grant_numbers",
    "grant number(s)": "grant_numbers",
    "sale source": "sale_source",
    "sale sources": "sale_source",
    "publisher": "publisher",
    "document": "document",
    "document url": "document",
    "document urls": "document",
    "type": "publication_type",
    "publication type": "publication_type",
    "format": "publication_format",
    "language": "language",
    "languages": "language",
    "country": "country",
    "agencies": "agencies",
    "agency": "agencies",
    "publication series": "publication_series",
    "series": "publication_series",
    "date created": "date_created",
    "note": "note",
    "notes": "note",
    "subject": "subjects",
    "subjects": "subjects",
    "subject(s)": "subjects",
    "subject terms": "subjects",
    "keyword": "subjects",
    "keywords": "subjects",
    "keyword(s)": "subjects",
    "topic": "subjects",
    "topics": "subjects",
    "topic(s)": "subjects",
}

# Page furniture that sits among the fields: it ends the value before it and is never a value.
CHROME_LABELS = frozenset(
    {
        "downloads",
        "download",
        "similar publications",
        "related publications",
        "related content",
        "related resources",
        "availability",
        "share",
        "share this page",
        "how to obtain documents",
        "back to search results",
    }
)

# Labels that only bureau publication pages show.
PUBLICATION_FIELDS = frozenset({"agencies", "publication_series", "date_created"})
# Fields that make a page a record page; "title" alone or "note" alone do not.
RECORD_FIELDS = frozenset(
    {"ncj_number", "abstract", "annotation", "journal", "authors", "date_published", "length"}
)

# Headings that belong to the site, not to a record.
_GENERIC_HEADINGS = frozenset(
    {
        "ncjrs abstract",
        "ncjrs virtual library",
        "abstract database",
        "ncjrs abstracts database",
        "office of justice programs",
    }
)
_SOFT_404 = re.compile(r"\b(page not found|not found|404)\b", re.IGNORECASE)
_MAX_LABEL_CHARS = 40

_label_candidates = etree.XPath(
    ".//*[string-length(normalize-space(.)) <= $limit and normalize-space(.) != '']"
)
_main_content = etree.XPath(
    "(//main | //*[@role='main'] | //*[@id='main-content'] | //*[@id='content'])"
    "[normalize-space()][1]"
)
_h1 = etree.XPath(".//h1")
_title_tag = etree.XPath("//title")
_hrefs = etree.XPath("descendant-or-self::a[@href]/@href")
_links = etree.XPath("descendant::a[@href]")

_CHROME_TAGS = SKIPPED_TAGS | {"header", "footer", "aside"}


def label_key(text: str) -> str:
    """'  Author(s):' -> 'author(s)'."""
    return collapse(text).rstrip(":").rstrip().lower()


def parse_page(response: TextResponse) -> RawRecord | NonRecordPage:
    """Parse one fetched page. Pure: reads the response, changes nothing."""
    root = response.selector.root
    content = _content_root(root)
    labels, chrome = _find_labels(content)
    if not any(name for _, name, _ in labels) and content is not root:
        # The "main" region was not where the record is: look at the whole page.
        content = root
        labels, chrome = _find_labels(content)
    heading = _page_heading(content, root)
    fields: dict[str, list[str]] = {}
    shown: dict[str, str] = {}
    links: dict[str, list[str]] = {}
    unknown: dict[str, list[str]] = {}
    boundaries = _boundaries([element for element, _, _ in labels] + chrome)

    for element, name, text in labels:
        value_nodes = list(_value_nodes(element, boundaries))
        values = _values(value_nodes)
        label_shown = collapse(text).rstrip(":").rstrip()
        if name is None:
            unknown.setdefault(label_shown, []).extend(values)
            continue
        if name in fields:  # the same label twice: keep both, in page order
            fields[name].extend(values)
        else:
            fields[name] = values
            shown[name] = label_shown
        if name == "document":
            hrefs = [
                response.urljoin(href.strip())
                for node in value_nodes
                if not isinstance(node, str)
                for href in _hrefs(node)
            ]
            if hrefs:
                links.setdefault(name, []).extend(hrefs)

    if response.status in (404, 410) or (
        not (fields.keys() & RECORD_FIELDS) and heading and _SOFT_404.search(heading)
    ):
        return NonRecordPage(url=response.url, reason="soft_404")
    if not fields.keys() & RECORD_FIELDS:
        return NonRecordPage(url=response.url, reason="no_record_fields")

    redirect_urls = list(response.request.meta.get("redirect_urls", ())) if response.request else []
    return RawRecord(
        url=redirect_urls[0] if redirect_urls else response.url,
        final_url=response.url,
        status=response.status,
        fetched_at=datetime.now(UTC),
        layout=_layout(fields, [text for _, name, text in labels if name]),
        heading=heading,
        fields=fields,
        labels=shown,
        links=links,
        unknown_fields=unknown,
        redirect_urls=redirect_urls,
    )


def _content_root(root: etree._Element) -> etree._Element:
    found = _main_content(root)
    if found:
        return found[0]
    body = root.find("body")
    return body if body is not None else root


def _page_heading(content: etree._Element, root: etree._Element) -> str | None:
    for scope in (content, root):
        for h1 in _h1(scope):
            text = element_text(h1).replace("\n", " ")
            if text and text.lower() not in _GENERIC_HEADINGS:
                return text
    titles = _title_tag(root)
    if titles:
        # "<record title> | Office of Justice Programs"
        text = collapse(titles[0].text_content()).split("|")[0].strip()
        if text and text.lower() not in _GENERIC_HEADINGS:
            return text
    return None


def _in_chrome(element: etree._Element, stop: etree._Element) -> bool:
    node = element
    while node is not None and node is not stop:
        tag = node.tag
        if isinstance(tag, str) and tag in _CHROME_TAGS:
            return True
        if node.get("role") in ("navigation", "banner", "contentinfo", "search"):
            return True
        node = node.getparent()
    return False


def _find_labels(
    content: etree._Element,
) -> tuple[list[tuple[etree._Element, str | None, str]], list[etree._Element]]:
    """Label elements in page order as (element, field name or None if unknown, text)."""
    known: list[tuple[etree._Element, str | None, str]] = []
    chrome: list[etree._Element] = []
    taken: set[etree._Element] = set()
    shapes: set[tuple[str, str | None]] = set()
    candidates = _label_candidates(content, limit=_MAX_LABEL_CHARS)
    texts: dict[etree._Element, str] = {}
    for element in candidates:
        tag = element.tag
        if not isinstance(tag, str) or tag in SKIPPED_TAGS:
            continue
        parent = element.getparent()
        if parent is not None and parent in taken:
            continue  # the outermost element with the label text is the label
        text = element_text(element)
        texts[element] = text
        key = label_key(text)
        name = LABELS.get(key)
        if name is None and key not in CHROME_LABELS:
            continue
        if tag == "a" or _links(element) or _in_chrome(element, content):
            continue  # a label is never a link: "Topics" in a menu is navigation
        taken.add(element)
        if name is None:
            chrome.append(element)
        else:
            known.append((element, name, text))
            if element.get("class"):  # a bare <td> or <div> says nothing about labels
                shapes.add((tag, element.get("class")))

    # Unknown labels: elements shaped like the known ones (same tag and class), definition
    # terms, header cells and inline "Something:" labels, standing where the known labels stand
    # (same parent, or parents that are siblings). They are kept, never dropped.
    parents = {el.getparent() for el, _, _ in known}
    grandparents = {_grandparent(el) for el, _, _ in known}
    outermost: dict[etree._Element, etree._Element] = {}
    unknown: list[tuple[etree._Element, str | None, str]] = []
    for element in candidates:
        text = texts.get(element)
        if text is None:
            continue
        parent = element.getparent()
        outer = outermost.get(parent, element) if texts.get(parent) == text else element
        outermost[element] = outer
        if outer in taken or "\n" in text:
            continue
        looks_like_label = (
            (element.tag, element.get("class")) in shapes
            or (outer.tag, outer.get("class")) in shapes
            or outer.tag in ("dt", "th")
            or (element.tag in ("b", "strong", "label") and text.endswith(":"))
        )
        if not looks_like_label:
            continue
        if outer.getparent() not in parents and _grandparent(outer) not in grandparents:
            continue
        if _has_taken_relative(outer, taken) or _links(outer) or _in_chrome(outer, content):
            continue
        taken.add(outer)
        unknown.append((outer, None, text))

    if unknown:
        order = {el: i for i, el in enumerate(content.iter())}
        known = sorted(known + unknown, key=lambda item: order[item[0]])
    return known, chrome


def _grandparent(element: etree._Element) -> etree._Element | None:
    parent = element.getparent()
    return parent.getparent() if parent is not None else None


def _has_taken_relative(element: etree._Element, taken: set[etree._Element]) -> bool:
    node = element.getparent()
    while node is not None:
        if node in taken:
            return True
        node = node.getparent()
    return any(child in taken for child in element.iterdescendants())


def _boundaries(elements: list[etree._Element]) -> set[etree._Element]:
    """Every label and every ancestor of one: a value never runs into any of them.

    Sets hold the element proxies themselves, not id()s: lxml proxies that nobody references
    are freed and their ids reused.
    """
    found: set[etree._Element] = set()
    for element in elements:
        node = element
        while node is not None and node not in found:
            found.add(node)
            node = node.getparent()
    return found


def _value_nodes(
    label: etree._Element, boundaries: set[etree._Element]
) -> Iterator[etree._Element | str]:
    """The label's following siblings (and loose text) up to the next label."""
    heading_level = _heading_level(label)
    if label.tail and label.tail.strip():
        yield label.tail
    for sibling in label.itersiblings():
        tag = sibling.tag
        if sibling in boundaries:
            return
        if isinstance(tag, str):
            level = _heading_level(sibling)
            if level and (not heading_level or level <= heading_level):
                return
            if tag not in SKIPPED_TAGS:
                yield sibling
        if sibling.tail and sibling.tail.strip():
            yield sibling.tail


def _heading_level(element: etree._Element) -> int:
    tag = element.tag
    if isinstance(tag, str) and len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
        return int(tag[1])
    return 0


def _values(nodes: list[etree._Element | str]) -> list[str]:
    """One value per block element (a ``dd``, a ``p``, a field item); inline runs join up."""
    values: list[str] = []
    inline: list[etree._Element | str] = []
    for node in nodes:
        if not isinstance(node, str) and node.tag in BLOCK_TAGS:
            if inline:
                values.append(node_text(inline))
                inline = []
            values.append(element_text(node))
        else:
            inline.append(node)
    if inline:
        values.append(node_text(inline))
    return [value for value in values if value]


def _layout(fields: dict[str, list[str]], label_texts: list[str]) -> Layout:
    if fields.keys() & PUBLICATION_FIELDS:
        return "publication"
    with_colon = sum(1 for text in label_texts if text.rstrip().endswith(":"))
    return "legacy" if with_colon * 2 > len(label_texts) else "current"
