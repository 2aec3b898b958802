"""Turning markup into the plain text a reader sees.

Values keep their structure as line breaks: a paragraph ends with a blank line, a list item or a
``<br>`` with a single line break. Inside a line, whitespace collapses to one space.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

from lxml import etree

# Subtrees that are never visible text (or are page chrome wherever they appear).
SKIPPED_TAGS = frozenset(
    {
        "script",
        "style",
        "noscript",
        "template",
        "svg",
        "iframe",
        "select",
        "button",
        "input",
        "textarea",
        "head",
        "nav",
    }
)
# A paragraph break (blank line) before and after.
PARAGRAPH_TAGS = frozenset(
    {
        "p",
        "blockquote",
        "pre",
        "ul",
        "ol",
        "dl",
        "table",
        "section",
        "article",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
    }
)
# A line break before and after.
LINE_TAGS = frozenset(
    {
        "div",
        "li",
        "dd",
        "dt",
        "tr",
        "td",
        "th",
        "address",
        "header",
        "footer",
        "main",
        "aside",
        "form",
        "fieldset",
        "figure",
        "figcaption",
        "caption",
        "center",
        "body",
        "html",
    }
)
BLOCK_TAGS = PARAGRAPH_TAGS | LINE_TAGS

_LINE = 1
_PARAGRAPH = 2
_BR = 3  # a line break, or with a second one right after it, a paragraph break

# Characters that are invisible on the page but break matching and exact comparisons.
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\u2060\ufeff\ud800-\udfff]")


def clean(text: str) -> str:
    """NFC, invisible characters and lone surrogates removed; no other change."""
    text = _INVISIBLE.sub("", text)
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    return text


def collapse(text: str) -> str:
    """One line of text: runs of whitespace (NBSP included) become one space."""
    line = " ".join(text.split())
    if line.isascii() and line.isprintable():
        return line  # nothing to remove or normalize
    return " ".join(clean(line).split())


# Nesting below which _walk recurses; a deeper subtree (a hostile or broken page: libxml2 keeps
# up to 2048 levels with huge_tree) is walked with an explicit stack instead.
_RECURSION_DEPTH = 100


def _walk(
    node: etree._Element, out: list[str | int], with_tail: bool = True, depth: int = 0
) -> None:
    tag = node.tag
    if isinstance(tag, str):
        if tag in SKIPPED_TAGS:
            pass
        elif tag == "br":
            out.append(_BR)
        elif depth >= _RECURSION_DEPTH:
            _walk_deep(node, out)
        else:
            brk = _PARAGRAPH if tag in PARAGRAPH_TAGS else _LINE if tag in LINE_TAGS else 0
            if brk:
                out.append(brk)
            if node.text:
                out.append(node.text)
            for child in node:
                _walk(child, out, True, depth + 1)
            if brk:
                out.append(brk)
    if with_tail and node.tail:
        out.append(node.tail)


def _walk_deep(top: etree._Element, out: list[str | int]) -> None:
    """_walk of ``top`` (without its tail), iteratively."""
    # Entries: an element to open, or a token (text or break) to emit when reached.
    stack: list[etree._Element | str | int] = [top]
    while stack:
        item = stack.pop()
        if not isinstance(item, etree._Element):
            out.append(item)
            continue
        tag = item.tag
        closing: list[str | int] = [item.tail] if item.tail and item is not top else []
        if isinstance(tag, str) and tag not in SKIPPED_TAGS:
            if tag == "br":
                out.append(_BR)
            else:
                brk = _PARAGRAPH if tag in PARAGRAPH_TAGS else _LINE if tag in LINE_TAGS else 0
                if brk:
                    out.append(brk)
                    closing.insert(0, brk)
                if item.text:
                    out.append(item.text)
                stack.extend(reversed(closing))
                stack.extend(reversed(list(item)))
                continue
        stack.extend(reversed(closing))


def _render(tokens: Iterable[str | int]) -> str:
    parts: list[str] = []
    buffer: list[str] = []
    break_before = 0  # the strongest break between the last emitted line and the buffer

    def flush() -> None:
        line = collapse("".join(buffer))
        buffer.clear()
        if line:
            if parts:
                parts.append("\n\n" if break_before == _PARAGRAPH else "\n")
            parts.append(line)

    brs = 0  # <br>s since the last text
    for token in tokens:
        if isinstance(token, int):
            if token == _BR:
                brs += 1
                token = _PARAGRAPH if brs >= 2 else _LINE
            if any(not piece.isspace() for piece in buffer):
                flush()
                break_before = token
            else:
                break_before = max(break_before, token)
        else:
            if not token.isspace():
                brs = 0
            buffer.append(token)
    flush()
    return "".join(parts)


def node_text(nodes: Sequence[etree._Element | str]) -> str:
    """Visible text of a run of sibling nodes (elements and loose text) in document order.

    Tails of the elements are *not* included: the caller passes loose text explicitly, so a
    value can stop exactly where the next label starts.
    """
    if len(nodes) == 1:
        node = nodes[0]
        if isinstance(node, str):
            return collapse(node)
        if node.tag not in SKIPPED_TAGS and _is_one_line(node):  # no structure to keep
            return collapse("".join(node.itertext()))
        blocks = _one_line_blocks(node)
        if blocks is not None:
            return blocks
    tokens: list[str | int] = []
    for node in nodes:
        if isinstance(node, str):
            tokens.append(node)
        else:
            _walk(node, tokens, with_tail=False)
    return _render(tokens)


def _is_one_line(element: etree._Element) -> bool:
    """Only inline markup inside: its text is one line, no block rendering needed."""
    for descendant in element.iterdescendants():
        tag = descendant.tag
        if tag in BLOCK_TAGS or tag in SKIPPED_TAGS or tag == "br":
            return False
    return True


def _one_line_blocks(element: etree._Element) -> str | None:
    """The text of an element made of one-line blocks only (paragraphs, say), else None.

    The common shape of an abstract, rendered without the general walk.
    """
    if (element.text or "").strip():
        return None
    parts: list[str] = []
    previous = 0
    for child in element:
        if (child.tail or "").strip():
            return None
        tag = child.tag
        if not isinstance(tag, str) or tag in SKIPPED_TAGS:
            continue
        if tag not in BLOCK_TAGS or not _is_one_line(child):
            return None
        text = collapse("".join(child.itertext()))
        if not text:
            continue
        kind = _PARAGRAPH if tag in PARAGRAPH_TAGS else _LINE
        if parts:
            parts.append("\n\n" if max(previous, kind) == _PARAGRAPH else "\n")
        parts.append(text)
        previous = kind
    return "".join(parts)


def short_text(element: etree._Element) -> str:
    """Visible text of a short element (a label) on one line, without the block rendering."""
    return collapse("".join(element.itertext()))


def element_text(element: etree._Element) -> str:
    """Visible text of one element (without its tail)."""
    return node_text([element])
