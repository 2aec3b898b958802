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
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import cast
from urllib.parse import urljoin

from lxml import etree
from scrapy.http import Response, TextResponse

from harvester.decoding import DecodedPage, TextRepair, decode_page, repair_text, suspicious
from harvester.items import Layout, NonRecordPage, RawRecord
from harvester.text import BLOCK_TAGS, SKIPPED_TAGS, collapse, element_text, node_text, short_text

# Bump whenever the same page would now give another record (a parser, normalize or validate
# change): records carry the version that derived them, and `harvester reparse` re-derives them
# from their stored pages, writing a version only where the result changed.
PARSER_VERSION = 2  # 2: WHATWG decoding, mojibake repair, deep pages, swallowed values

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

# Fields whose value is one short item. Their value never holds another label, so a label after
# one is never inside its value: when an unclosed tag makes the value element swallow the rest of
# the page, the labels in it still count and the value is what leads it ("191386").
ATOMIC_FIELDS = frozenset({"ncj_number", "date_published", "date_created", "length", "page_count"})

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
# A label with the whitespace and wrappers around it in the source stays under this.
_MAX_LABEL_SOURCE_CHARS = 200
_MAX_LABEL_CHARS = max(len(key) for key in LABELS) + 8
_ALL_LABEL_KEYS = frozenset(LABELS) | CHROME_LABELS

_hrefs = etree.XPath("descendant-or-self::a[@href]/@href")
_ALWAYS_CHROME_TAGS = frozenset({"nav"}) | SKIPPED_TAGS
_PAGE_PART_TAGS = frozenset({"header", "footer", "aside"})
_CHROME_ROLES = frozenset({"navigation", "banner", "contentinfo", "search"})


def _links(element: etree._Element) -> bool:
    if element.tag == "a":
        return element.get("href") is not None
    return len(element) > 0 and any(a.get("href") is not None for a in element.iter("a"))


_parsers = threading.local()  # lxml parsers must not be shared between threads


def label_key(text: str) -> str:
    """'  Author(s):' -> 'author(s)'."""
    return collapse(text).rstrip(":").rstrip().lower()


def parse_page(response: TextResponse) -> RawRecord | NonRecordPage:
    """Parse one fetched page. Pure: reads the response, changes nothing."""
    request = response.request
    decoded = response_page(response)
    page = parse_tree(
        page_tree(decoded.utf8),
        url=response.url,
        status=response.status,
        redirect_urls=list(request.meta.get("redirect_urls", ())) if request else [],
    )
    if isinstance(page, RawRecord):
        page.encoding = decoded.encoding
        if decoded.repair:
            page.text_repairs.append(decoded.repair)
        repair_values(page)
        page.etag, page.last_modified = http_validators(response)
        if request is not None:
            page.sitemap_lastmod = request.meta.get("sitemap_lastmod")
            page.sitemap_url = request.meta.get("sitemap_url")
    return page


def http_validators(response: Response) -> tuple[str | None, str | None]:
    """The response's ``ETag`` and ``Last-Modified``, for a conditional request next time."""
    etag = response.headers.get(b"ETag")
    last_modified = response.headers.get(b"Last-Modified")
    return (
        etag.decode("latin-1") if etag else None,
        last_modified.decode("latin-1") if last_modified else None,
    )


def response_tree(response: TextResponse) -> etree._Element:
    """The page's lxml tree, decoded as ``decode_page`` says (not as Scrapy guesses)."""
    return page_tree(response_page(response).utf8)


def response_page(response: Response) -> DecodedPage:
    content_type = response.headers.get(b"Content-Type")
    return decode_page(response.body, content_type.decode("latin-1") if content_type else None)


def page_tree(utf8_html: bytes) -> etree._Element:
    """The lxml tree of a UTF-8 encoded page.

    A plain libxml2 parser, without lxml.html's per-element Python class lookup: the parser
    only reads the tree, and the lookup costs more than the parse itself.
    """
    parser: etree.HTMLParser | None = getattr(_parsers, "parser", None)
    if parser is None:
        # huge_tree lifts libxml2's nesting limit from 256 to 2048 elements (a record 255+
        # deep was dropped) and its 10 MB text-node limit; DOWNLOAD_MAXSIZE bounds the size.
        parser = _parsers.parser = etree.HTMLParser(
            encoding="utf-8", remove_comments=True, remove_pis=True, huge_tree=True
        )
    # The stubs say an element always comes back, but libxml2's HTML parser gives None for a
    # document without one (empty, blank, only a comment).
    root = cast("etree._Element | None", etree.fromstring(utf8_html, parser=parser))
    if root is None:
        root = etree.fromstring(b"<html><body></body></html>", parser=parser)
    return root


def repair_values(raw: RawRecord) -> None:
    """Repair mojibake in the record's values (``harvester.decoding``), noting each repair.

    A value that cannot be repaired is left as shown and named in ``raw.encoding_problem``:
    validation quarantines the page. ASCII values, nearly all of them, cost one check each.
    """
    if raw.heading and suspicious(raw.heading):
        fixed = repair_text(raw.heading)
        raw.heading = _note_repair(raw, "heading", raw.heading, fixed)
    for values, where in ((raw.fields, raw.labels), (raw.unknown_fields, None)):
        for name, texts in values.items():
            for index, text in enumerate(texts):
                if suspicious(text):
                    label = (where or {}).get(name, name)
                    texts[index] = _note_repair(raw, label, text, repair_text(text))


def _note_repair(raw: RawRecord, label: str, text: str, fixed: TextRepair) -> str:
    if fixed.repaired:
        raw.text_repairs.append(f"{label}: {short(text)} -> {short(fixed.text)}")
    elif raw.encoding_problem is None:
        raw.encoding_problem = f"{label}: {short(text)} has {fixed.problem}"
    return fixed.text


def short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def parse_tree(
    root: etree._Element,
    *,
    url: str,
    status: int = 200,
    redirect_urls: list[str] | None = None,
) -> RawRecord | NonRecordPage:
    """Parse a page already parsed by lxml (``parsel.Selector.root`` works too)."""
    redirect_urls = redirect_urls or []
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
    label_elements = {element for element, _, _ in labels} | set(chrome)
    boundaries = _boundaries(list(label_elements))

    for element, name, text in labels:
        value_nodes = list(
            _value_nodes(
                element, boundaries, swallowed=label_elements if name in ATOMIC_FIELDS else None
            )
        )
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
                urljoin(url, href.strip())
                for node in value_nodes
                if not isinstance(node, str)
                for href in _hrefs(node)
            ]
            if hrefs:
                links.setdefault(name, []).extend(hrefs)

    if status in (404, 410) or (
        not (fields.keys() & RECORD_FIELDS) and heading and _SOFT_404.search(heading)
    ):
        return NonRecordPage(url=url, reason="soft_404")
    if not fields.keys() & RECORD_FIELDS:
        return NonRecordPage(url=url, reason="no_record_fields")
    if len(set(fields.get("ncj_number", ()))) > 1:
        # A listing or search page: several records' teasers, not one record.
        return NonRecordPage(url=url, reason="several_records")

    return RawRecord(
        url=redirect_urls[0] if redirect_urls else url,
        final_url=url,
        status=status,
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
    """The page's <main> when it has one, else its body: where record fields are looked for."""
    for main in root.iter("main"):
        if len(main) or (main.text or "").strip():
            return main
    body = root.find("body")
    return body if body is not None else root


def _page_heading(content: etree._Element, root: etree._Element) -> str | None:
    for scope in (content, root):
        for h1 in scope.iter("h1"):
            text = element_text(h1).replace("\n", " ")
            if text and text.lower() not in _GENERIC_HEADINGS:
                return text
    return None


def _in_chrome(
    element: etree._Element,
    content: etree._Element,
    seen: dict[etree._Element, tuple[bool, bool]],
) -> bool:
    """Inside page furniture: navigation, or a header, footer or aside of the page itself.

    A header, footer or aside inside an ``article`` belongs to that article (a record's own
    header may hold its fields), so it is not furniture. ``seen`` keeps, for every ancestor
    walked, (inside furniture, inside an article), so the labels of a page share one walk.
    """
    path: list[etree._Element] = []
    node: etree._Element | None = element
    state = (False, False)
    while node is not None and node is not content:
        if node in seen:
            state = seen[node]
            break
        path.append(node)
        node = node.getparent()
    inside, in_article = state
    for walked in reversed(path):  # from the top down
        tag = walked.tag
        in_article = in_article or tag == "article"
        inside = inside or (
            tag in _ALWAYS_CHROME_TAGS
            or walked.get("role") in _CHROME_ROLES
            or (tag in _PAGE_PART_TAGS and not in_article)
        )
        seen[walked] = (inside, in_article)
    return inside


def _find_labels(
    content: etree._Element,
) -> tuple[list[tuple[etree._Element, str | None, str]], list[etree._Element]]:
    """Label elements in page order as (element, field name or None if unknown, text)."""
    known: list[tuple[etree._Element, str | None, str]] = []
    chrome: list[etree._Element] = []
    taken: set[etree._Element] = set()
    shapes: set[tuple[str, str | None]] = set()
    chrome_seen: dict[etree._Element, tuple[bool, bool]] = {}
    texts: dict[etree._Element, str] = {}  # field label element -> its text
    label_ancestors: set[etree._Element] = set()
    inside_seen: dict[etree._Element, bool] = {}
    atomic: set[etree._Element] = set()  # labels of ATOMIC_FIELDS
    for element, key in _label_elements(content):
        while element is not content:  # the outermost element showing just this label
            parent = element.getparent()
            if parent is None or not _shows_only(parent, element):
                break
            element = parent
        name = LABELS.get(key)
        if element in taken or (name is not None and _links(element)):
            continue  # a field label is never a link: "Topics" in a menu is navigation
        if _in_chrome(element, content, chrome_seen):
            continue
        # An element without children here is the label element itself, whose text is set.
        text = (element.text or "").strip() if not len(element) else short_text(element)
        if _is_value_of_label(element, text, taken, texts):
            continue  # "Format: Document": the value "Document" is not a label
        if _inside_value(element, content, taken, texts, label_ancestors, inside_seen, atomic):
            continue  # "<strong>Note:</strong>" inside an abstract is part of the abstract
        taken.add(element)
        if name is not None:
            texts[element] = text
            if name in ATOMIC_FIELDS:
                atomic.add(element)
        node: etree._Element | None = element
        while node is not None and node not in label_ancestors:
            label_ancestors.add(node)
            node = node.getparent()
        if name is None:
            chrome.append(element)
        else:
            known.append((element, name, text))
            if element.get("class"):  # a bare <td> or <div> says nothing about labels
                shapes.add(_shape(element))

    unknown = _unknown_labels(content, known, taken, shapes, chrome_seen, texts)
    if unknown:
        order = {el: i for i, el in enumerate(content.iter())}
        known = sorted(known + unknown, key=lambda item: order[item[0]])
    return known, chrome


def _unknown_labels(
    content: etree._Element,
    known: list[tuple[etree._Element, str | None, str]],
    taken: set[etree._Element],
    shapes: set[tuple[str, str | None]],
    chrome_seen: dict[etree._Element, tuple[bool, bool]],
    texts: dict[etree._Element, str],
) -> list[tuple[etree._Element, str | None, str]]:
    """Labels the parser does not know, kept so that nothing on the page is dropped silently.

    They stand where the known labels stand (same parent, or parents that are siblings) and
    look like them: same tag and class, a definition term or header cell, or an inline bold
    "Something:".
    """
    # Ordered sets (dicts), so that the same page always yields the same labels.
    parents = dict.fromkeys(parent for el, _, _ in known if (parent := el.getparent()) is not None)
    groups = dict(parents)
    for grandparent in dict.fromkeys(parent.getparent() for parent in parents):
        if grandparent is not None:
            groups.update(dict.fromkeys(c for c in grandparent if isinstance(c.tag, str)))
    peers = [child for group in groups for child in group if isinstance(child.tag, str)]
    unknown: list[tuple[etree._Element, str | None, str]] = []
    under_taken: set[etree._Element] = set()
    if peers:
        for label in taken:
            under_taken.update(label.iter())
    for element in dict.fromkeys(peers):
        if element in taken or element.tag in SKIPPED_TAGS:
            continue
        previous = element.getprevious()
        if previous in taken and _shape(previous) != _shape(element):
            continue  # the value of the label before it
        inner = element
        while len(inner) == 1 and not (inner.text or "").strip() and isinstance(inner[0].tag, str):
            inner = inner[0]
        shaped = _shape(element) in shapes or element.tag in ("dt", "th")
        if not shaped and inner.tag not in ("b", "strong", "label"):
            continue
        if not _short_key(element) or element.find(".//br") is not None:
            continue
        text = short_text(element)
        if not (shaped or text.endswith(":")):
            continue
        if _has_taken_relative(element, taken, under_taken) or _links(element):
            continue
        if _is_value_of_label(element, text, taken, texts):
            continue
        if _in_chrome(element, content, chrome_seen):
            continue
        taken.add(element)
        under_taken.update(element.iter())
        unknown.append((element, None, text))
    return unknown


def _label_elements(content: etree._Element) -> Iterator[tuple[etree._Element, str]]:
    """Elements whose own text is a label, with its key, in page order.

    A plain loop over .text is several times faster than any XPath that does the same test.
    """
    for element in content.iter():
        text = element.text
        if not text:
            continue
        text = text.strip()
        if not text or len(text) > _MAX_LABEL_CHARS:
            continue
        key = text.lower().rstrip(":").rstrip()
        if key not in _ALL_LABEL_KEYS:
            if text.isascii() and "  " not in key and "\n" not in key and "\t" not in key:
                continue  # nothing that label_key would change
            key = label_key(text)  # odd whitespace or invisible characters inside
            if key not in _ALL_LABEL_KEYS:
                continue
        if isinstance(element.tag, str) and element.tag not in SKIPPED_TAGS:
            yield element, key


def _shows_only(parent: etree._Element, child: etree._Element) -> bool:
    """Whether ``parent`` shows nothing but ``child`` (its label text)."""
    if (parent.text or "").strip() or (child.tail or "").strip():
        return False
    for other in parent:
        if other is child:
            continue
        if (other.tail or "").strip():
            return False
        if isinstance(other.tag, str) and ((other.text or "").strip() or len(other)):
            return False  # another element with content: a label's sibling value
    return True


def _short_key(element: etree._Element) -> str | None:
    """label_key of an element's text, or None when the text is too long to be a label."""
    pieces: list[str] = []
    size = 0
    for piece in element.itertext():
        size += len(piece)
        if size > _MAX_LABEL_SOURCE_CHARS:
            return None
        pieces.append(piece)
    return _quick_key("".join(pieces))


def _quick_key(text: str) -> str:
    """label_key for text without invisible characters (checked where it matters)."""
    return " ".join(text.split()).lower().rstrip(":").rstrip()


def _shape(element: etree._Element) -> tuple[str, str | None]:
    """Tag and first class: 'field field--name-x' and 'field field--name-y' are one shape."""
    classes = element.get("class")
    # Only elements come here, never a comment or processing instruction (the parser drops
    # them; their tag is a function), and an HTML tree names its elements with str.
    return (
        cast(str, element.tag),
        classes.split(maxsplit=1)[0] if classes and classes.strip() else None,
    )


def _previous_element(element: etree._Element) -> etree._Element | None:
    previous = element.getprevious()
    while previous is not None and not isinstance(previous.tag, str):
        previous = previous.getprevious()  # comments and processing instructions
    return previous


def _is_value_of(
    label: etree._Element, element: etree._Element, texts: dict[etree._Element, str]
) -> bool:
    """Whether ``element``, after ``label`` among its siblings, is (part of) its value.

    A value is shaped differently from its label (``dt``/``dd``, ``field__label``/
    ``field__item``); two same-shaped cells are label and value when the label ends with a
    colon (``<td>Format:</td><td>Document</td>``); otherwise they are two labels in a row.
    """
    return _shape(label) != _shape(element) or texts.get(label, "").endswith(":")


def _is_value_of_label(
    element: etree._Element, text: str, taken: set[etree._Element], texts: dict[etree._Element, str]
) -> bool:
    """True for an element right after a label that is that label's value."""
    previous = _previous_element(element)
    return (
        previous is not None
        and previous in taken
        and not text.endswith(":")
        and _is_value_of(previous, element, texts)
    )


def _inside_value(
    element: etree._Element,
    content: etree._Element,
    taken: set[etree._Element],
    texts: dict[etree._Element, str],
    label_ancestors: set[etree._Element],
    seen: dict[etree._Element, bool],
    atomic: set[etree._Element],
) -> bool:
    """Whether ``element`` sits inside the value of a label found before it.

    Walks up from the element; at each level, the nearest earlier sibling that is a label (not
    a wrapper holding one) makes this level part of that label's value. ``seen`` keeps the
    answer for each ancestor walked: labels come in page order, so an ancestor's earlier
    siblings hold no label that is not known yet, and the answer cannot change.
    """
    path: list[tuple[etree._Element, bool]] = []
    node = element.getparent()
    above = False
    while node is not None and node is not content:
        if node in seen:
            above = seen[node]
            break
        path.append((node, _level_in_value(node, taken, texts, label_ancestors, atomic)))
        node = node.getparent()
    for node, level in reversed(path):
        above = above or level
        seen[node] = above
    return above


def _level_in_value(
    node: etree._Element,
    taken: set[etree._Element],
    texts: dict[etree._Element, str],
    label_ancestors: set[etree._Element],
    atomic: set[etree._Element],
) -> bool:
    sibling = _previous_element(node)
    while sibling is not None:
        if sibling in taken:
            # Page furniture ("Downloads") has no value of its own to be inside.
            return sibling in texts and sibling not in atomic and _is_value_of(sibling, node, texts)
        if sibling in label_ancestors:
            return False  # a field wrapper before ours: we are not in its value
        sibling = _previous_element(sibling)
    return False


def _has_taken_relative(
    element: etree._Element, taken: set[etree._Element], under_taken: set[etree._Element]
) -> bool:
    """Whether a label is inside ``element`` or ``element`` inside one.

    ``under_taken`` holds every taken element's subtree, so the answer for the ancestors costs
    one lookup, not a walk up a page nested 2,000 deep for each candidate.
    """
    if element.getparent() in under_taken:
        return True
    return any(child in taken for child in element.iterdescendants())


def _boundaries(elements: list[etree._Element]) -> set[etree._Element]:
    """Every label and every ancestor of one: a value never runs into any of them.

    Sets hold the element proxies themselves, not id()s: lxml proxies that nobody references
    are freed and their ids reused.
    """
    found: set[etree._Element] = set()
    for element in elements:
        node: etree._Element | None = element
        while node is not None and node not in found:
            found.add(node)
            node = node.getparent()
    return found


def _value_nodes(
    label: etree._Element,
    boundaries: set[etree._Element],
    *,
    swallowed: set[etree._Element] | None = None,
) -> Iterator[etree._Element | str]:
    """The label's following siblings (and loose text) up to the next label or a rule.

    For an atomic field, ``swallowed`` holds the page's labels: a value element that holds
    later labels (an unclosed tag made it swallow them) gives what leads it, when nothing
    came before it.
    """
    heading_level = _heading_level(label)
    tail = (label.tail or "").strip()
    if tail.startswith(":"):  # "<b>Author(s)</b>: Smith": the colon belongs to the label
        tail = tail[1:].strip()
    found = bool(tail)
    if tail:
        yield tail
    for sibling in label.itersiblings():
        tag = sibling.tag
        if sibling in boundaries or tag == "hr":
            if swallowed is not None and not found and sibling not in swallowed:
                yield from _leading_nodes(sibling, boundaries, swallowed)
            return
        if isinstance(tag, str):
            level = _heading_level(sibling)
            if level and (not heading_level or level <= heading_level):
                return
            if tag not in SKIPPED_TAGS:
                found = True
                yield sibling
        if sibling.tail and sibling.tail.strip():
            found = True
            yield sibling.tail


def _leading_nodes(
    element: etree._Element, boundaries: set[etree._Element], labels: set[etree._Element]
) -> Iterator[etree._Element | str]:
    """What an element shows before its first child that holds a label.

    When nothing does, the same inside that child (``<span>2001<div>...``), never a label.
    """
    node: etree._Element | None = element
    while node is not None:
        found = False
        inner, node = node, None
        if inner.text and inner.text.strip():
            found = True
            yield inner.text
        for child in inner:
            if child in boundaries:
                if not found and child not in labels:
                    node = child
                break
            if isinstance(child.tag, str) and child.tag not in SKIPPED_TAGS:
                found = True
                yield child
            if child.tail and child.tail.strip():
                found = True
                yield child.tail


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
