"""Text as the page meant it: which charset a page is in, and mojibake found after decoding.

Decoding follows the WHATWG encoding standard's precedence: a byte order mark, then the
Content-Type header's charset, then a ``<meta>`` charset, then the fallback. Two departures,
both recorded as a repair on the record:

- a page declared in a legacy charset (``iso-8859-1``, ``windows-1252`` ...) whose non-ASCII
  bytes are all valid UTF-8 is UTF-8: real legacy text almost never forms valid multi-byte
  UTF-8 sequences, and decoding it as declared gives "MÃ¼ller";
- a page declared UTF-8 whose non-ASCII bytes are none of them valid UTF-8 is a legacy page
  with a wrong label: decoding it as declared gives "M\ufffdller" for every accented letter,
  so it is decoded with the fallback instead. A body that mixes both cannot be told apart: it
  is decoded as declared, the U+FFFD stay, and the page is quarantined (reason ``encoding``).

An undeclared page that is not UTF-8 falls back to windows-1252, as browsers do for English
pages (Scrapy guesses instead, and its guess for "Núñez" is windows-1250: "Núńez").

Text can also carry mojibake from the source itself (a database that double-encoded it).
``repair_text`` looks for it only in values that are not plain ASCII and that ftfy's badness
heuristic flags; most values are ASCII, so the parse path pays one ``str.isascii`` per value.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from ftfy import TextFixerConfig, fix_text
from ftfy.badness import is_bad
from w3lib.encoding import (
    html_body_declared_encoding,
    http_content_type_encoding,
    read_bom,
    resolve_encoding,
)

FALLBACK = "cp1252"  # WHATWG's windows-1252


# WHATWG's windows-1252 maps the five bytes Python's cp1252 leaves undefined (0x81, 0x8D,
# 0x8F, 0x90, 0x9D) to the C1 controls of the same value, as latin-1 does.
def _c1_controls(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):  # registered for decoding only
        raise error
    return error.object[error.start : error.end].decode("latin-1"), error.end


codecs.register_error("harvester-c1", _c1_controls)

# A decoded character from a valid multi-byte UTF-8 sequence, next to surrogateescape's
# stand-ins (U+DC80-U+DCFF) for the bytes that were not valid UTF-8.
_VALID_NON_ASCII = re.compile("[\u0080-\udc7f\udd00-\U0010ffff]")

# Only the encoding fixes: quotes, ligatures, widths, entities and line breaks are the page's
# own and are kept as shown.
_FIX_CONFIG = TextFixerConfig(
    unescape_html=False,
    remove_terminal_escapes=False,
    fix_latin_ligatures=False,
    fix_character_width=False,
    uncurl_quotes=False,
    fix_line_breaks=False,
    remove_control_chars=False,
    normalization=None,
    explain=False,
)


@dataclass(slots=True, frozen=True)
class DecodedPage:
    """A page body as UTF-8 bytes for libxml2, with the charset it was read in."""

    utf8: bytes
    encoding: str  # Python codec name: "utf-8", "cp1252" ...
    repair: str | None = None  # how the declared charset was overruled, if it was


def _is_utf8(encoding: str | None) -> bool:
    return encoding is not None and encoding.replace("-", "").replace("_", "").lower() == "utf8"


def _decode(body: bytes, encoding: str) -> str:
    if encoding == FALLBACK:
        return body.decode(encoding, "harvester-c1")
    try:
        return body.decode(encoding, "replace")
    except LookupError:  # resolve_encoding only returns codecs Python has; never here
        return body.decode(FALLBACK, "harvester-c1")


def _valid_utf8(body: bytes) -> bool:
    if body.isascii():
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _utf8_bytes(text: str) -> bytes:
    return text.replace("\x00", "").encode("utf-8", "surrogatepass")


def declared_encoding(body: bytes, content_type: str | None) -> tuple[str | None, str | None]:
    """The charset the page declares and where: ("cp1252", "header"), (None, None) ..."""
    if content_type:
        found = http_content_type_encoding(content_type)
        if found:
            return found, "header"
    found = html_body_declared_encoding(body)
    if found:
        resolved = resolve_encoding(found)
        if resolved:
            # WHATWG: a <meta> cannot declare UTF-16 (the bytes read so far were ASCII).
            return ("utf-8" if resolved.startswith("utf-16") else resolved), "meta"
    return None, None


def decode_page(body: bytes, content_type: str | None) -> DecodedPage:
    """The page's text, decoded by the WHATWG precedence with the two repairs above."""
    bom_encoding, bom = read_bom(body)
    if bom_encoding and bom:
        text = _decode(body[len(bom) :], bom_encoding)
        return DecodedPage(_utf8_bytes(text), resolve_encoding(bom_encoding) or bom_encoding)
    declared, where = declared_encoding(body, content_type)
    if not (declared or "").startswith(("utf-16", "utf-32")) and _valid_utf8(body):
        # libxml2 reads UTF-8 bytes as they are: no decoded copy of the page is made.
        utf8 = body if b"\x00" not in body else body.replace(b"\x00", b"")
        if declared is None or _is_utf8(declared) or body.isascii():
            # ASCII reads the same in every charset a page may declare but UTF-16/32.
            return DecodedPage(utf8, "utf-8")
        return DecodedPage(
            utf8, "utf-8", f"declared {declared} ({where}), but the body is valid UTF-8"
        )
    if declared is None:
        return DecodedPage(_utf8_bytes(_decode(body, FALLBACK)), FALLBACK)
    if _is_utf8(declared):
        escaped = body.decode("utf-8", "surrogateescape")
        if _VALID_NON_ASCII.search(escaped) is None:
            return DecodedPage(
                _utf8_bytes(_decode(body, FALLBACK)),
                FALLBACK,
                f"declared utf-8 ({where}), but no byte of the body is UTF-8: read as windows-1252",
            )
    return DecodedPage(_utf8_bytes(_decode(body, declared)), declared)


def suspicious(text: str) -> bool:
    """Cheap: whether ``text`` may hold mojibake or a replacement character."""
    return not text.isascii() and ("\ufffd" in text or is_bad(text))


@dataclass(slots=True, frozen=True)
class TextRepair:
    text: str  # the repaired text, or the text as it was when it cannot be repaired
    repaired: bool
    problem: str | None = None  # what is still wrong: the text cannot be trusted


def repair_text(text: str) -> TextRepair:
    """Fix mojibake with ftfy when the fix leaves nothing suspicious; else say what is wrong.

    Call it on ``suspicious`` text only. U+FFFD is a byte already lost: never repairable.
    """
    if "\ufffd" in text:
        return TextRepair(text, False, "a U+FFFD replacement character (bytes lost in decoding)")
    fixed = fix_text(text, _FIX_CONFIG)
    if fixed == text or "\ufffd" in fixed or is_bad(fixed):
        return TextRepair(text, False, "mojibake that cannot be repaired unambiguously")
    return TextRepair(fixed, True)
