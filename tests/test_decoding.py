"""Which charset a page is read in, and the mojibake repair (harvester.decoding)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harvester.decoding import declared_encoding, decode_page, repair_text, suspicious

NAMES = "Núñez Müller Ångström Łódź São Paulo Œuvre “quoted” café 東京大学 Москва Αθήνα"


def page(text: str, *, meta: str | None = None) -> str:
    head = f'<meta charset="{meta}">' if meta else ""
    return f"<html><head>{head}</head><body><p>{text}</p></body></html>"


def decoded_text(body: bytes, content_type: str | None) -> tuple[str, str, str | None]:
    result = decode_page(body, content_type)
    return result.utf8.decode("utf-8"), result.encoding, result.repair


def test_undeclared_cp1252_falls_back_to_windows_1252_not_a_guess() -> None:
    body = page("Núñez").encode("cp1252")
    text, encoding, repair = decoded_text(body, "text/html")
    assert "Núñez" in text
    assert (encoding, repair) == ("cp1252", None)


def test_undeclared_utf8_is_utf8() -> None:
    text, encoding, repair = decoded_text(page(NAMES).encode("utf-8"), None)
    assert NAMES in text
    assert (encoding, repair) == ("utf-8", None)


def test_ascii_page_is_passed_through_untouched() -> None:
    body = page("Smith").encode("ascii")
    result = decode_page(body, "text/html; charset=iso-8859-1")
    assert result.utf8 is body
    assert (result.encoding, result.repair) == ("utf-8", None)


def test_header_wins_over_meta() -> None:
    body = page("Núñez", meta="utf-8").encode("cp1252")
    # The header says windows-1252 and the meta UTF-8: WHATWG reads the header.
    text, encoding, repair = decoded_text(body, "text/html; charset=windows-1252")
    assert "Núñez" in text
    assert (encoding, repair) == ("cp1252", None)


def test_meta_is_read_without_a_header_charset() -> None:
    body = page("Ελλάδα", meta="iso-8859-7").encode("iso-8859-7")
    text, encoding, repair = decoded_text(body, "text/html")
    assert "Ελλάδα" in text
    assert (encoding, repair) == ("iso8859-7", None)


def test_bom_wins_over_header_and_meta() -> None:
    body = b"\xef\xbb\xbf" + page("Müller", meta="iso-8859-1").encode("utf-8")
    text, encoding, repair = decoded_text(body, "text/html; charset=iso-8859-1")
    assert "Müller" in text
    assert not text.startswith("\ufeff")
    assert (encoding, repair) == ("utf-8", None)


def test_utf16_bom() -> None:
    body = b"\xff\xfe" + page("Müller").encode("utf-16-le")
    text, encoding, _ = decoded_text(body, "text/html; charset=iso-8859-1")
    assert "Müller" in text
    assert encoding == "utf-16-le"


def test_header_latin1_body_utf8_is_read_as_utf8_and_recorded() -> None:
    body = page("Müller").encode("utf-8")
    text, encoding, repair = decoded_text(body, "text/html; charset=iso-8859-1")
    assert "Müller" in text
    assert "MÃ¼ller" not in text
    assert encoding == "utf-8"
    assert repair == "declared cp1252 (header), but the body is valid UTF-8"


def test_header_utf8_body_latin1_is_read_as_windows_1252_and_recorded() -> None:
    body = page("Müller").encode("latin-1")
    text, encoding, repair = decoded_text(body, "text/html; charset=utf-8")
    assert "Müller" in text
    assert "\ufffd" not in text
    assert encoding == "cp1252"
    assert repair == (
        "declared utf-8 (header), but no byte of the body is UTF-8: read as windows-1252"
    )


def test_header_utf8_body_mixing_utf8_and_latin1_keeps_the_replacement_character() -> None:
    body = page("Müller").encode("utf-8") + page("Núñez").encode("latin-1")
    text, encoding, repair = decoded_text(body, "text/html; charset=utf-8")
    assert "Müller" in text
    assert "N\ufffd\ufffdez" in text
    assert (encoding, repair) == ("utf-8", None)


def test_windows_1252_undefined_bytes_map_to_c1_controls() -> None:
    text, encoding, _ = decoded_text(b"<p>a\x81b\x9dc \x80</p>", None)
    assert "a\x81b\x9dc €" in text
    assert encoding == "cp1252"


def test_nul_bytes_are_dropped() -> None:
    text, _, _ = decoded_text(b"<p>a\x00b</p>", "text/html; charset=utf-8")
    assert "<p>ab</p>" in text


def test_declared_encoding_sources() -> None:
    assert declared_encoding(b"", "text/html; charset=UTF-8") == ("utf-8", "header")
    assert declared_encoding(page("x", meta="windows-1252").encode(), "text/html") == (
        "cp1252",
        "meta",
    )
    assert declared_encoding(page("x", meta="utf-16").encode(), None) == ("utf-8", "meta")
    assert declared_encoding(b"<p>x</p>", None) == (None, None)


@pytest.mark.parametrize(
    ("bad", "good"),
    [
        ("MÃ¼ller", "Müller"),
        ("NÃºÃ±ez", "Núñez"),
        ("ÅngstrÃ¶m", "Ångström"),
        ("â€œquotedâ€\x9d", "“quoted”"),
        ("æ\x9d±äº¬å¤§å\xad¦", "東京大学"),
    ],
)
def test_repair_text(bad: str, good: str) -> None:
    assert suspicious(bad)
    repaired = repair_text(bad)
    assert (repaired.text, repaired.repaired, repaired.problem) == (good, True, None)


def test_replacement_character_is_never_repaired() -> None:
    assert suspicious("M\ufffdller")
    repaired = repair_text("M\ufffdller")
    assert repaired.text == "M\ufffdller"
    assert not repaired.repaired
    assert repaired.problem == "a U+FFFD replacement character (bytes lost in decoding)"


@pytest.mark.parametrize(
    "text",
    [
        *NAMES.split(),
        "Smith",
        "Ça va",
        "naïve façade",
        "Š Ž č",
        "MÜLLER",
        "NÚÑEZ",
        "ÉTUDES ET RÉALITÉS",
        "© 1999 Crown",
        "25° C ±5% ½ page €20",
        "São Tomé and Príncipe",
        "Øresund Þór Straße",
        "¿Qué? ¡Hola! «Études»",
        "Ph.D. – Director … • ™",
        "Âge",
    ],
)
def test_right_text_is_not_suspicious(text: str) -> None:
    assert not suspicious(text)


# Words as the languages of the collection spell them: syllables of one language's consonants
# and vowels (accented ones included), capitalised or not; or CJK, Cyrillic, Greek. Letter soup
# across languages ("Aœß", "œé") is not text anyone wrote, and ftfy rightly finds it odd.
_LANGUAGES = {
    "de": ("bdfghklmnprstwzß", "aeiouäöü"),
    "fr": (
        "bcdfglmnprstvç",
        ["a", "e", "i", "o", "u", "é", "è", "ê", "à", "â", "î", "ô", "û", "œu"],
    ),
    "es": ("bcdfglmnprstvñ", "aeiouáéíóú"),
    "pt": ("bcdfglmnprstvç", ["a", "e", "i", "o", "u", "ã", "ão", "õe", "á", "é", "ê", "ó", "ô"]),
    "nordic": ("bdfghjklmnprstv", "aeiouyåäöæø"),
    "pl": ("bcdfgklmnprstwzłńśźż", "aeiouyąęó"),
    "cs": ("bcdfhklmnprstvzčďňřšťž", "aeiouyáéěíóúůý"),
    "tr": ("bcdfgklmnprstvzçğş", "aeiouıöü"),
}


def _latin_word(language: tuple[str, Sequence[str]]) -> st.SearchStrategy[str]:
    consonants, vowels = language
    syllable = st.tuples(st.sampled_from(consonants), st.sampled_from(list(vowels))).map("".join)
    word = st.lists(syllable, min_size=1, max_size=4).map("".join)
    return st.tuples(word, st.booleans()).map(
        lambda pair: pair[0].capitalize() if pair[1] else pair[0]
    )


_WORD = st.one_of(
    st.sampled_from(sorted(_LANGUAGES.values())).flatmap(_latin_word),
    st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), min_size=1),
    st.text(alphabet=st.characters(min_codepoint=0x0430, max_codepoint=0x044F), min_size=1),
    st.text(alphabet=st.characters(min_codepoint=0x03B1, max_codepoint=0x03C9), min_size=1),
)


@given(st.lists(_WORD, min_size=1, max_size=6).map(" ".join))
def test_repair_never_touches_right_text(text: str) -> None:
    assert not suspicious(text)  # so the parser never hands it to the repair
    assert repair_text(text).text == text


@given(st.lists(_WORD, min_size=1, max_size=6).map(" ".join))
def test_mojibake_is_repaired_to_the_original_or_left_alone(text: str) -> None:
    """A repair is never a third text. (A lone "Ã…" is not flagged: it could be real.)"""
    mojibake = text.encode("utf-8").decode("cp1252", "harvester-c1")
    if not suspicious(mojibake):
        return
    repaired = repair_text(mojibake)
    assert repaired.text == (text if repaired.repaired else mojibake)
