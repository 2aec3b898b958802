"""Visible text of markup: paragraphs, lines, whitespace, entities, Unicode."""

from __future__ import annotations

import lxml.html
import pytest

from harvester.text import clean, collapse, element_text


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
