"""Table-driven tests of every normalizer against the formats real NCJRS pages show."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harvester.items import ChapterOf, JournalCitation, PartialDate, Person
from harvester.normalize import (
    block_text,
    is_address_line,
    organization_names,
    parse_chapter,
    parse_date,
    parse_journal,
    parse_length,
    parse_ncj_number,
    parse_people,
    parse_person,
    split_list,
    split_people,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("191386", 191386),
        ("NCJ 229379", 229379),
        ("NCJ 229379     Find in a Library", 229379),
        ("206598 Find in a Library", 206598),
        ("123,456", 123456),
        ("\u00a0191386\u00a0", 191386),
        ("\u200b191386\ufeff", 191386),
        ("NCJ-121271", 121271),
        ("", None),
        (None, None),
        ("0", None),
        ("Corrections Compendium Volume: 27 Issue: 5", None),
        ("12,34", None),
        ("191386 abc", None),
    ],
)
def test_parse_ncj_number(text: str | None, expected: int | None) -> None:
    assert parse_ncj_number(text) == expected


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        (
            "Overview of Juvenile Justice and Juvenile Delinquency: Cases, Definitions, Trends, "
            "and Intervention Strategies (From Juvenile Justice Sourcebook: Past, Present, and "
            "Future, P 5-40, 2004, Albert R. Roberts, ed. -- See NCJ-206597)",
            ChapterOf(206597, "Juvenile Justice Sourcebook: Past, Present, and Future", "5-40"),
        ),
        (
            "Police on Patrol (From Police and Policing: Contemporary Issues, P 60-71, 1989, "
            "Dennis Jay Kenney, ed. -- See NCJ-121271)",
            ChapterOf(121271, "Police and Policing: Contemporary Issues", "60-71"),
        ),
        (
            "Chapter Two (From Collected Essays, 1999 -- See NCJ-5)",
            ChapterOf(5, "Collected Essays", None),
        ),
        ("Citizen Complaints About Police Use of Force", None),
        ("TV (Television) and Law Enforcement", None),
        (None, None),
    ],
)
def test_parse_chapter(title: str | None, expected: ChapterOf | None) -> None:
    assert parse_chapter(title) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Joseph R. Greene", Person("Joseph R. Greene", "Greene", "Joseph R.", None)),
        ("G W Cordner", Person("G W Cordner", "Cordner", "G W", None)),
        (
            "Matthew J Hickman Ph.D.",
            Person("Matthew J Hickman Ph.D.", "Hickman", "Matthew J", "Ph.D."),
        ),
        ("JOHN A SMITH JR", Person("JOHN A SMITH JR", "SMITH", "JOHN A", "JR")),
        ("Smith, John", Person("Smith, John", "Smith", "John", None)),
        ("Ludwig van Beethoven", Person("Ludwig van Beethoven", "van Beethoven", "Ludwig", None)),
        ("Melissa Sickmund", Person("Melissa Sickmund", "Sickmund", "Melissa", None)),
        ("Cordner", Person("Cordner", "Cordner", None, None)),
    ],
)
def test_parse_person(name: str, expected: Person) -> None:
    assert parse_person(name) == expected


@pytest.mark.parametrize(
    ("values", "commas", "expected"),
    [
        (
            ["J Walsh; R T Foote; N Day; L L Goldman"],
            False,
            ["J Walsh", "R T Foote", "N Day", "L L Goldman"],
        ),
        (
            ["M Henry; H Girault; V Peyre; J Selosse"],
            False,
            ["M Henry", "H Girault", "V Peyre", "J Selosse"],
        ),
        (["J Walsh", "N Day"], False, ["J Walsh", "N Day"]),
        (["ANON"], False, []),
        (["Anonymous"], False, []),
        (["J Pool"], True, ["J Pool"]),
        (["J Pool, A Smith, Jr., ed."], True, ["J Pool", "A Smith, Jr."]),
        (["Smith, John Jr."], False, ["Smith, John Jr."]),
        (["A One\nB Two"], False, ["A One", "B Two"]),
    ],
)
def test_split_people(values: list[str], commas: bool, expected: list[str]) -> None:
    assert split_people(values, commas=commas) == expected


def test_anon_means_no_author() -> None:
    assert parse_people(["ANON"], commas=False) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Global Issues Volume: 6 Issue: 2 Dated: August 2001 Pages: 12-14",
            ("Global Issues", "6", "2", "August 2001", "12-14"),
        ),
        (
            "Annales de Vaucresson  Issue:16  Dated:(1979)  Pages:199-222",
            ("Annales de Vaucresson", None, "16", "1979", "199-222"),
        ),
        (
            "Punishment & Society: The International Journal of Penology Volume: 8 Issue: 1 "
            "Dated: January 2006 Pages: 87-115",
            (
                "Punishment & Society: The International Journal of Penology",
                "8",
                "1",
                "January 2006",
                "87-115",
            ),
        ),
        (
            "Police Chief Volume: 48 Issue: 7 Dated: (July 1981) Pages: 24,26,28,30-33",
            ("Police Chief", "48", "7", "July 1981", "24,26,28,30-33"),
        ),
        (
            "Library Trends Volume: 26 Issue: 1 Dated: (Summer 1977) Pages: complete issue",
            ("Library Trends", "26", "1", "Summer 1977", "complete issue"),
        ),
        (
            "Kriminalistik Issue: 4 Dated: (April 1981) Pages: Insert",
            ("Kriminalistik", None, "4", "April 1981", "Insert"),
        ),
        (
            "Journal of Criminal Justice Volume: 29 Issue: 6 Dated: November-December 2001 "
            "Pages: 521-529",
            ("Journal of Criminal Justice", "29", "6", "November-December 2001", "521-529"),
        ),
        ("Crime, Law & Social Change", ("Crime, Law & Social Change", None, None, None, None)),
        ("Issues: A Review Volume: 2", ("Issues: A Review", "2", None, None, None)),
    ],
)
def test_parse_journal(text: str, expected: tuple[str | None, ...]) -> None:
    citation = parse_journal(text)
    assert citation is not None
    assert (
        citation.name,
        citation.volume,
        citation.issue,
        citation.dated,
        citation.pages,
    ) == expected
    assert citation.raw == " ".join(text.split())


def test_parse_journal_empty() -> None:
    assert parse_journal("") is None
    assert parse_journal(None) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("August 2001", PartialDate("August 2001", 2001, 8, None, "month")),
        ("1977", PartialDate("1977", 1977, None, None, "year")),
        ("02/2010", PartialDate("02/2010", 2010, 2, None, "month")),
        ("January 1, 1998", PartialDate("January 1, 1998", 1998, 1, 1, "day")),
        ("November 12, 2020", PartialDate("November 12, 2020", 2020, 11, 12, "day")),
        ("(Summer 1977)", PartialDate("(Summer 1977)", 1977, None, None, "season")),
        ("Winter 1998-1999", PartialDate("Winter 1998-1999")),
        (
            "November-December 2001",
            PartialDate("November-December 2001", 2001, 11, None, "month_range"),
        ),
        ("Sept. 1985", PartialDate("Sept. 1985", 1985, 9, None, "month")),
        ("Unknown", PartialDate("Unknown")),
        ("February 30, 2001", PartialDate("February 30, 2001")),
        ("13/2001", PartialDate("13/2001")),
        ("", None),
        (None, None),
    ],
)
def test_parse_date(text: str | None, expected: PartialDate | None) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3 pages", 3),
        ("49 pages", 49),
        ("0 pages", 0),
        ("36", 36),
        ("Page Count: 36", 36),
        ("1 page", 1),
        ("1,024 pages", 1024),
        ("Unknown", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_length(text: str | None, expected: int | None) -> None:
    assert parse_length(text) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Washington, DC 20531", True),
        ("New York, NY 10016", True),
        ("Gaithersburg, MD 20879", True),
        ("198 Madison Avenue", True),
        ("Bldg. 181, Room 1L30", True),
        ("London, NW3 1Q4, England", True),
        ("United States of America", True),
        ("Ottawa, Ontario K1A 0P8", True),
        ("P.O. Box 6000", True),
        # Legacy lists: a city with a country and a partial postcode, or a partial code alone.
        ("London, England W1", True),
        ("London W1", True),
        ("Manchester, M13", True),
        ("Paris, France 75007", True),
        ("Washington, DC 2053", True),
        ("Ottawa, Ontario K1A", True),
        ("D-6200 Wiesbaden", True),
        ("Department K9", False),
        ("Unit B12", False),
        ("Home Office Research Unit", False),
        ("US Dept of Justice, Bureau of Justice Statistics", False),
        ("National Institute of Justice (NIJ)", False),
        ("Oxford University Press, Inc", False),
        ("21st Century Research Foundation", False),
    ],
)
def test_is_address_line(line: str, expected: bool) -> None:
    assert is_address_line(line) is expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            [
                "National Institute of Justice (NIJ)\nWashington, DC 20531\n"
                "National Law Enforcement and Corrections Technology Center (NLECTC)\n"
                "Gaithersburg, MD 20879"
            ],
            [
                "National Institute of Justice (NIJ)",
                "National Law Enforcement and Corrections Technology Center (NLECTC)",
            ],
        ),
        (["Oxford University Press, Inc\nNew York, NY 10016"], ["Oxford University Press, Inc"]),
        (
            ["National Ctr for Juvenile Justice\nUnited States of America"],
            ["National Ctr for Juvenile Justice"],
        ),
        (["Home Office\nLondon, NW3 1Q4, England"], ["Home Office"]),
        (
            ["Home Office Research Unit\nLondon, England W1\nPolice Foundation\nLondon W1"],
            ["Home Office Research Unit", "Police Foundation"],
        ),
        (["Ministère de la Justice\nOttawa, Ontario K1A"], ["Ministère de la Justice"]),
        (["NIJ", "NIJ"], ["NIJ"]),
    ],
)
def test_organization_names(values: list[str], expected: list[str]) -> None:
    assert organization_names(values) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("191386\nJournal\nGlobal Issues Volume: 6", 191386),  # a value that swallowed the rest
        ("NCJ 191386 Find in a Library\nTitle\nX", 191386),
        ("191386\n191387", None),  # two numbers: which one is not for us to guess
        ("Journal\n191386", None),  # the number does not lead
    ],
)
def test_parse_ncj_number_takes_an_unambiguous_leading_line(
    text: str, expected: int | None
) -> None:
    assert parse_ncj_number(text) == expected


def test_parse_date_takes_the_leading_line_of_a_swallowing_value() -> None:
    assert parse_date("June 2006\nLength\n8 pages") == PartialDate(
        text="June 2006", year=2006, month=6, precision="month"
    )
    # One date over two lines is still read whole.
    assert parse_date("Summer\n1977") == PartialDate(
        text="Summer 1977", year=1977, precision="season"
    )
    assert parse_date("Length\nJune 2006") == PartialDate(text="Length June 2006")


def test_split_list_keeps_order_and_drops_repeats() -> None:
    assert split_list(["96-MU-MU-K011; 2005-IJ-CX-0001\n96-MU-MU-K011"]) == [
        "96-MU-MU-K011",
        "2005-IJ-CX-0001",
    ]


def test_block_text_joins_paragraphs_with_blank_lines() -> None:
    assert block_text(["First para.", "", "a\nb"]) == "First para.\n\na\nb"
    assert block_text([]) is None


text_strategy = st.one_of(
    st.none(), st.text(), st.text(alphabet="0123456789,:-/ ()NCJPagesVolumIsuDtd\n\u00a0")
)


@given(text_strategy)
def test_single_value_normalizers_never_raise(text: str | None) -> None:
    parse_ncj_number(text)
    parse_chapter(text)
    parse_journal(text)
    parse_date(text)
    parse_length(text)


@given(st.lists(st.text()))
def test_list_normalizers_never_raise(values: list[str]) -> None:
    parse_people(values, commas=False)
    parse_people(values, commas=True)
    organization_names(values)
    split_list(values)
    block_text(values)


@given(st.text(min_size=1))
def test_parse_person_keeps_the_display_name(name: str) -> None:
    assert parse_person(name).name == name


def test_journal_citation_type() -> None:
    assert isinstance(parse_journal("X Volume: 1"), JournalCitation)


def test_numbers_too_large_to_store_are_not_read() -> None:
    assert parse_ncj_number("2147483647") == 2147483647
    assert parse_ncj_number("2147483648") is None
    assert parse_ncj_number("18446744073709551616") is None
    assert parse_length("99999999999 pages") is None
