"""Visible text of markup: paragraphs, lines, whitespace, entities, Unicode."""

from __future__ import annotations

import lxml.html
import pytest

from harvester.parsing import page_tree
from harvester.text import clean, collapse, element_text
from tests.support import PAGES, page_names


def text_of(html: str) -> str:
    return element_text(lxml.html.fragment_fromstring(html, create_parent="div"))


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>Hello   <b>big</b>\n world</p>", "Hello big world"),
        ("<p>One.</p><p>Two.</p>", "One.\n\nTwo."),
        ("<p>Intro.</p><ul><li>a</li><li>b</li></ul>", "Intro.\n\na\nb"),
        ("line one<br>line two", "line one\nline two"),
        ("para one<br><br>para two", "para one\n\npara two"),
        ("para one<br />\n<br />para two", "para one\n\npara two"),
        ("<div>a</div><div>b</div>", "a\nb"),
        ("x<script>var a = 1;</script><style>p{}</style>y", "xy"),
        ("a &amp;lt; b &amp; c", "a &lt; b & c"),
        ("non\u00a0breaking\u00a0space", "non breaking space"),
        ("zero\u200bwidth", "zerowidth"),
        ("cafe\u0301", "café"),
        ("NCJ <b>123</b> rest <a>link</a> end", "NCJ 123 rest link end"),
        ("<p>a <i>b</i> c</p><p>d <em>e</em> f</p>", "a b c\n\nd e f"),
        ("<div>a <b>b</b> c</div><div>d</div>", "a b c\nd"),
        ("<p>x</p>loose<p>y</p>", "x\n\nloose\n\ny"),
    ],
)
def test_element_text(html: str, expected: str) -> None:
    assert text_of(html) == expected


def test_clean_removes_nul_and_lone_surrogates() -> None:
    assert clean("a\x00b\ud800c") == "abc"


def test_collapse() -> None:
    assert collapse("  a \n\t b\u00a0 ") == "a b"


def _tokens_both_ways(element) -> tuple[list, list]:  # type: ignore[no-untyped-def]
    from harvester.text import _walk, _walk_deep

    recursive: list[str | int] = []
    _walk(element, recursive, with_tail=False)
    iterative: list[str | int] = []
    _walk_deep(element, iterative)
    return recursive, iterative


@pytest.mark.parametrize("name", page_names())
def test_deep_walk_renders_exactly_as_the_recursive_walk(name: str) -> None:
    root = page_tree((PAGES / f"{name}.html").read_bytes())
    for element in root.iter():
        if isinstance(element.tag, str):
            recursive, iterative = _tokens_both_ways(element)
            assert iterative == recursive


def test_text_nested_deeper_than_python_recursion() -> None:
    depth = 1000  # 2,000 elements: deeper than Python's recursion limit, within libxml2's 2,048
    html = "<div>" + "<div><span>" * depth + "deep" + "</span></div>" * depth + "</div>"
    root = page_tree(html.encode())
    assert element_text(root.find(".//body/div")) == "deep"
