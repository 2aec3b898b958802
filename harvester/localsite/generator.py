"""Deterministic NCJRS-style records and the HTML pages that show them.

Everything here is pure: a :class:`Site` built from the same options renders byte-identical pages
and the same truth in any process. Record ``i`` is generated from ``(seed, i)`` alone, so any page
can be rendered on demand in O(1) without generating records ``0..i-1``:

- NCJ numbers come from a keyed Feistel permutation of ``0..249,999`` (cycle-walked inside an
  18-bit domain) shifted to ``10,000..259,999``; it is invertible, so ``?ID=<ncj>`` resolves in
  O(1).
- The first three significant words of every title are three "code words" that encode an affine
  permutation of the index, so titles and slugs are unique by construction and a slug decodes back
  to its index in O(1).
- Page-shape decisions (layout, bad record, publication page) come from a fast integer hash, the
  content from a ``random.Random`` seeded per record.

The structured truth is known before rendering: :meth:`Site.expected` derives the golden-format
``expected`` dict (docs/golden-format.md) from the structured record, never from HTML.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import random
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Final, Literal, TypeVar

__all__ = [
    "CONTENT_TYPE_HTML",
    "CONTENT_TYPE_TEXT",
    "CONTENT_TYPE_XML",
    "GOLDEN_KEYS",
    "MAX_RECORDS",
    "DateValue",
    "GeneratedRecord",
    "JournalParts",
    "PersonName",
    "Site",
    "SiteOptions",
    "slugify",
]

CONTENT_TYPE_HTML: Final = "text/html; charset=utf-8"
CONTENT_TYPE_XML: Final = "application/xml"
CONTENT_TYPE_TEXT: Final = "text/plain; charset=utf-8"

NCJ_MIN: Final = 10_000
NCJ_SPAN: Final = 250_000  # NCJ numbers 10,000..259,999
MAX_RECORDS: Final = NCJ_SPAN
LEGACY_ALT_ID_BASE: Final = 260_000  # legacy URL ids that are not the record's NCJ number
_CODE_BITS: Final = 18  # 64 * 64 * 64 title code words
_CODE_SPACE: Final = 1 << _CODE_BITS

CURRENT_PREFIX: Final = "/ncjrs/virtual-library/abstracts"
PUBLICATION_PREFIX: Final = "/library/publications"
LEGACY_PATH: Final = "/App/Publications/abstract.aspx"
LEGACY_VARIANT_PATH: Final = "/App/publications/Abstract.aspx"
TOPIC_PREFIX: Final = "/topics"

GOLDEN_KEYS: Final[tuple[str, ...]] = (
    "ncj_number",
    "title",
    "chapter_of",
    "journal",
    "authors",
    "editors",
    "corporate_authors",
    "published",
    "date_created",
    "page_count",
    "annotation",
    "abstract",
    "sponsoring_agencies",
    "agencies",
    "grant_numbers",
    "sale_source",
    "publisher",
    "document_urls",
    "publication_type",
    "publication_format",
    "language",
    "country",
    "publication_series",
    "note",
    "subjects",
    "extra_fields",
)

_T = TypeVar("_T")
Layout = Literal["current", "legacy", "publication"]
Rejection = Literal["invalid_ncj_number", "missing_title"]
Precision = Literal["day", "month", "month_range", "season", "year"]


# --------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SiteOptions:
    """Everything that decides the site's content. New knobs go here (JSON-able values only)."""

    records: int = 1000
    seed: int = 0
    bad_share: float = 0.01  # pages that must be quarantined (non-numeric NCJ Number, no title)
    legacy_share: float = 0.15  # primary layout legacy (ncjrs.gov ASP.NET page)
    publication_share: float = 0.05  # share of current records that also have a bureau page
    legacy_alt_id_share: float = 0.1  # legacy records whose URL id is not their NCJ number
    topic_share: float = 0.02  # share of sitemap entries that are topic (non-record) pages
    soft_404s: int | None = None  # soft-404 URLs in the sitemap; None: max(3, records // 1000)
    per_sitemap: int = 2000  # URLs per sitemap page
    page_size: int = 25  # record links per listing page
    crawl_delay: float | None = None  # robots.txt Crawl-delay, seconds

    def __post_init__(self) -> None:
        if not 0 < self.records <= MAX_RECORDS:
            raise ValueError(f"records must be 1..{MAX_RECORDS}, got {self.records}")
        for name in ("bad_share", "legacy_share", "publication_share", "legacy_alt_id_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {value}")
        if not 0.0 <= self.topic_share < 0.5:
            raise ValueError(f"topic_share must be within 0..0.5, got {self.topic_share}")
        if self.per_sitemap < 1 or self.page_size < 1:
            raise ValueError("per_sitemap and page_size must be positive")
        if self.soft_404s is not None and self.soft_404s < 0:
            raise ValueError("soft_404s must not be negative")
        if self.records + self.soft_404_count > _CODE_SPACE:
            raise ValueError("too many soft-404 pages for the slug code space")

    @property
    def soft_404_count(self) -> int:
        return max(3, self.records // 1000) if self.soft_404s is None else self.soft_404s

    @classmethod
    def names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# --------------------------------------------------------------------------------------------
# Structured record
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PersonName:
    name: str  # as displayed
    family: str
    given: str | None
    suffix: str | None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "name": self.name,
            "family": self.family,
            "given": self.given,
            "suffix": self.suffix,
        }


@dataclass(frozen=True, slots=True)
class DateValue:
    text: str
    year: int | None = None
    month: int | None = None
    day: int | None = None
    precision: Precision | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "year": self.year,
            "month": self.month,
            "day": self.day,
            "precision": self.precision,
        }


@dataclass(frozen=True, slots=True)
class JournalParts:
    display: str  # as rendered (legacy spacing kept)
    name: str
    volume: str | None
    issue: str | None
    dated: str | None  # without parentheses
    pages: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "raw": _collapse(self.display),
            "name": self.name,
            "volume": self.volume,
            "issue": self.issue,
            "dated": self.dated,
            "pages": self.pages,
        }


@dataclass(frozen=True, slots=True)
class ChapterParts:
    parent_ncj_number: int
    book_title: str
    pages: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "parent_ncj_number": self.parent_ncj_number,
            "book_title": self.book_title,
            "pages": self.pages,
        }


@dataclass(frozen=True, slots=True)
class PublicationInfo:
    """What the bureau publication page of a current record shows."""

    agencies: tuple[str, ...]
    published: DateValue | None  # None: the Date Published field is empty
    date_created: DateValue
    similar: tuple[int, ...]  # indexes of the "Similar Publications"


Block = tuple[Literal["p"], str] | tuple[Literal["ul"], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class GeneratedRecord:
    index: int
    ncj_number: int
    slug: str
    layout: Literal["current", "legacy"]  # primary layout
    legacy_variant: Literal["table", "2010"]
    legacy_id: int  # id in the legacy URL (usually the NCJ number)
    rejection: Rejection | None
    ncj_display: str  # the NCJ Number value as shown
    title: str  # as shown ("" for missing_title pages)
    chapter: ChapterParts | None
    journal: JournalParts | None
    authors: tuple[PersonName, ...]
    anon: bool  # the author field shows "ANON"
    editors: tuple[PersonName, ...]
    corporate_authors: tuple[tuple[str, str], ...]  # (name, country line)
    published: DateValue | None
    page_count: int | None
    annotation: str  # display text (may hold double spaces / line breaks)
    abstract: tuple[Block, ...]
    sponsoring_agencies: tuple[tuple[str, tuple[str, ...]], ...]  # (name, address lines)
    grant_numbers: tuple[str, ...]
    sale_source: tuple[str, ...]  # lines
    documents: tuple[tuple[str, str], ...]  # (link text, path)
    publication_type: str | None
    publication_format: str | None
    language: str
    country: str
    caps: bool
    year: int
    node_id: int
    lastmod: datetime
    viewstate_seed: int
    publication: PublicationInfo | None

    @property
    def has_publication(self) -> bool:
        return self.publication is not None


# --------------------------------------------------------------------------------------------
# Hashing helpers
# --------------------------------------------------------------------------------------------

_M64: Final = (1 << 64) - 1


def _mix64(x: int) -> int:
    """SplitMix64 finalizer: a fast, well-spread, deterministic integer hash."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


# salts for the per-record decisions
_S_LAYOUT, _S_BAD, _S_BADKIND, _S_PUB, _S_KIND, _S_CAPS, _S_YEAR = 1, 2, 3, 4, 5, 6, 7
_S_VARIANT, _S_ALTID, _S_PARENT, _S_TITLE, _S_RECORD, _S_LINKFORM, _S_LASTMOD = (
    8,
    9,
    10,
    11,
    12,
    13,
    14,
)
_S_TOPIC = 15


_WS = re.compile(r"\s+")


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _collapse(text: str) -> str:
    return _WS.sub(" ", text).strip()


# pathauto's default "ignore words"
_SLUG_STOPWORDS: Final = frozenset(
    _words(
        "a an as at before but by for from is in into like of off on onto per since than the this "
        "that to up via with"
    )
)
_SLUG_MAX: Final = 70


def slugify(text: str, max_length: int = _SLUG_MAX) -> str:
    """Drupal pathauto-style alias: ASCII, lower case, stop words dropped, cut at a word."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    ascii_text = ascii_text.lower().replace("'", "")
    words = [w for w in re.split(r"[^a-z0-9]+", ascii_text) if w and w not in _SLUG_STOPWORDS]
    slug = ""
    for word in words:
        candidate = f"{slug}-{word}" if slug else word
        if len(candidate) > max_length:
            break
        slug = candidate
    return slug


# --------------------------------------------------------------------------------------------
# Word lists (texts need not be meaningful, only plausible)
# --------------------------------------------------------------------------------------------

_CODE_A: Final = _words(
    """Juvenile Federal Rural Urban Violent Community Correctional Judicial Municipal Regional
    Tribal Forensic Criminal Domestic Statewide National Local Private Public Military Maritime
    Campus Suburban Metropolitan Coastal Frontier Electronic Digital Mobile Hidden Emerging
    Chronic Serious Minor Repeat Female Male Adolescent Elderly Young Early Late Intensive
    Restorative Preventive Alternative Specialized Standard Experimental Comparative Historical
    Modern Contemporary Traditional Informal Formal Voluntary Mandatory Collaborative Integrated
    Strategic Tactical Administrative Statistical"""
)
_CODE_B: Final = _words(
    """Police Prison Court Probation Parole Jail Offender Victim Witness Gang Drug Firearm
    Detention Sentencing Policing Patrol Custody Reentry Diversion Supervision Treatment Evidence
    Crime Delinquency Violence Homicide Burglary Robbery Fraud Arson Trafficking Smuggling
    Terrorism Cybercrime Narcotics Alcohol Weapon Security Surveillance Investigation Prosecution
    Defense Jury Bail Pretrial Corrections Rehabilitation Mediation Restitution Victimization
    Recidivism Incarceration Enforcement Training Leadership Management Technology Laboratory
    Ballistics Fingerprint Identification Interrogation Testimony Truancy"""
)
_CODE_C: Final = _words(
    """Programs Policies Outcomes Practices Strategies Trends Patterns Reforms Standards
    Guidelines Models Methods Systems Services Initiatives Partnerships Assessments Evaluations
    Surveys Statistics Indicators Costs Benefits Risks Needs Responses Challenges Issues
    Perspectives Dynamics Effects Impacts Decisions Procedures Operations Networks Agencies
    Officers Populations Facilities Workloads Budgets Records Databases Protocols Curricula
    Incentives Sanctions Alternatives Options Priorities Lessons Findings Profiles Experiences
    Attitudes Perceptions Careers Communities Families Schools Neighborhoods Disparities
    Controversies"""
)
_CODE_INDEX: Final = tuple(
    {w.lower(): n for n, w in enumerate(lst)} for lst in (_CODE_A, _CODE_B, _CODE_C)
)

_PLACES: Final = (
    "Ohio", "Maryland", "New York State", "California", "Texas", "Canada", "England and Wales",
    "France", "Rhode Island", "New Mexico", "the Pacific Northwest", "Rural Alabama", "Chicago",
    "Los Angeles County", "Edmonton, Alberta", "Minneapolis", "the United States", "Europe",
    "Three Cities", "Indian Country",
)  # fmt: skip
_SUBTITLES: Final = (
    "A National Survey", "An Evaluation", "Findings From a Multisite Study", "Lessons Learned",
    "A Review of the Literature", "Results of a Pilot Project", "Past, Present, and Future",
    "Questions and Answers", "Report to Congress", "Final Report", "A Guide for Practitioners",
    "Issues and Options", "What Works?", "Trends, Definitions & Intervention Strategies",
    "An Examination of the Relationship Between Arrest Activity and Complaints",
    "Research in Brief", "Executive Summary", "A Case Study", "Policy Implications",
)  # fmt: skip
_BOOK_TITLES: Final = (
    "Juvenile Justice Sourcebook: Past, Present, and Future",
    "Police and Policing: Contemporary Issues",
    "Crime and Justice: A Review of Research",
    "Handbook of Crime & Punishment",
    "Critical Issues in Policing: Contemporary Readings",
    "Corrections in America: An Introduction",
    "Victims of Crime: Problems, Policies, and Programs",
    "The Criminal Justice System: Politics and Policies",
    "Drugs, Crime, and the Justice System",
    "Community Policing: Rhetoric or Reality",
    "Prisons Today and Tomorrow",
    "Forensic Science Handbook, Volume II",
)
_JOURNALS: Final = (
    "Global Issues", "Journal of Criminal Justice", "Police Chief", "Library Trends",
    "Corrections Compendium", "Punishment & Society: The International Journal of Penology",
    "Crime & Delinquency", "Justice Quarterly", "Criminology", "FBI Law Enforcement Bulletin",
    "Federal Probation", "Journal of Research in Crime and Delinquency",
    "Crime, Law and Social Change", "Law & Society Review", "Journal of Law, Medicine & Ethics",
    "Corrections Today", "Juvenile and Family Court Journal",
    "Policing: An International Journal of Police Strategies & Management",
    "Journal of Forensic Sciences", "Victims & Offenders", "NIJ Journal",
    "Youth Violence and Juvenile Justice", "Trends in Organized Crime",
    "British Journal of Criminology", "Canadian Journal of Criminology", "Security Management",
    "Law and Order",
)  # fmt: skip
_FOREIGN_JOURNALS: Final = {
    "French": (
        "Annales de Vaucresson",
        "Revue de science criminelle et de droit pénal comparé",
        "Revue internationale de police criminelle",
    ),
    "German": ("Kriminalistik", "Monatsschrift für Kriminologie und Strafrechtsreform"),
    "Spanish": ("Revista de Derecho Penal y Criminología",),
}
_FOREIGN_COUNTRY: Final = {"French": "France", "German": "Germany", "Spanish": "Spain"}

_GIVEN: Final = (
    "Matthew", "Joseph", "Albert", "Melissa", "Susan", "Dennis", "Gary", "Robert", "Mary",
    "Linda", "James", "Patricia", "John", "Jennifer", "Michael", "Elizabeth", "David", "Barbara",
    "William", "Karen", "Richard", "Nancy", "Thomas", "Lisa", "Charles", "Margaret", "Daniel",
    "Sandra", "Mark", "Donna", "Paul", "Carol", "Steven", "Ruth", "Kevin", "Sharon", "Brian",
    "Michelle", "George", "Laura", "Edward", "Sarah", "Ronald", "Kimberly", "Anthony", "Deborah",
    "Jean", "Pierre", "Michel", "Claude", "Hans", "Ingrid", "Maria", "Carlos", "Wei", "Aisha",
    "Darnell", "Keisha", "Tomas", "Françoise", "José",
)  # fmt: skip
_FAMILY: Final = (
    "Walsh", "Foote", "Day", "Goldman", "Hickman", "Greene", "Roberts", "Sickmund", "Clayton",
    "Cordner", "Kenney", "Pool", "Henry", "Girault", "Peyre", "Selosse", "Smith", "Johnson",
    "Williams", "Brown", "Jones", "Miller", "Davis", "Garcia", "Rodriguez", "Wilson", "Martinez",
    "Anderson", "Taylor", "Thomas", "Hernandez", "Moore", "Martin", "Jackson", "Thompson",
    "White", "Lopez", "Lee", "Gonzalez", "Harris", "Clark", "Lewis", "Robinson", "Walker",
    "Perez", "Hall", "Young", "Allen", "Sanchez", "Wright", "King", "Scott", "Nguyen", "Hill",
    "Flores", "Adams", "Baker", "Nelson", "Carter", "Mitchell", "O'Brien", "McDonald",
    "MacKenzie", "Smith-Jones", "Reiss", "Sherman", "Weisburd", "Blumstein", "Petersilia",
    "Skogan", "Tonry", "Farrington", "Sampson", "Laub", "Cullen", "Gendreau", "Dubois",
    "Lefebvre", "Müller",
)  # fmt: skip
_SUFFIXES: Final = ("Ph.D.", "Jr.", "III", "M.D.", "Sr.")
_INITIALS: Final = "ABCDEFGHJKLMNPRSTW"

_CORPORATE: Final = (
    ("National Ctr for Juvenile Justice", "United States of America"),
    (
        "National Law Enforcement and Corrections Technology Center (NLECTC)",
        "United States of America",
    ),
    ("RAND Corporation", "United States of America"),
    ("Police Executive Research Forum", "United States of America"),
    ("Urban Institute", "United States of America"),
    ("Vera Institute of Justice", "United States of America"),
    ("American Correctional Association", "United States of America"),
    ("National Council on Crime and Delinquency", "United States of America"),
    ("Abt Associates, Inc", "United States of America"),
    ("Council of State Governments & Justice Center", "United States of America"),
    ("Home Office Research and Planning Unit", "United Kingdom"),
    ("Solicitor General Canada", "Canada"),
    ("Centre de Formation et de Recherche de l'Education Surveillée", "France"),
    ("Australian Institute of Criminology", "Australia"),
)
_DC: Final = ("Washington, DC 20531",)
_FEDERAL_SPONSORS: Final = (
    ("National Institute of Justice (NIJ)", _DC),
    ("Bureau of Justice Statistics (BJS)", _DC),
    ("Office of Juvenile Justice and Delinquency Prevention (OJJDP)", _DC),
    ("Bureau of Justice Assistance (BJA)", _DC),
    ("Office for Victims of Crime (OVC)", _DC),
    ("National Institute of Corrections (NIC)", ("Washington, DC 20534",)),
    ("Office of Community Oriented Policing Services (COPS)", ("Washington, DC 20530",)),
)
_LEAA: Final = ("Law Enforcement Assistance Administration (LEAA)", _DC)
_OTHER_SPONSORS: Final = (
    ("Oxford University Press, Inc", ("New York, NY 10016",)),
    ("Sage Publications, Inc", ("Thousand Oaks, CA 91320",)),
    (
        "National Law Enforcement and Corrections Technology Center (NLECTC)",
        ("Gaithersburg, MD 20879",),
    ),
    ("Ford Foundation", ("New York, NY 10017",)),
    ("Robert Wood Johnson Foundation", ("Princeton, NJ 08543",)),
    ("US Dept of Health and Human Services", ("Washington, DC 20201",)),
    ("Police Foundation", ()),
)
_SALE_SOURCES: Final = (
    (
        "National Criminal Justice Reference Service (NCJRS)",
        "Box 6000",
        "Rockville, MD 20849",
        "United States of America",
    ),
    ("Superintendent of Documents, GPO", "Washington, DC 20402", "United States of America"),
    (
        "Oxford University Press, Inc",
        "198 Madison Avenue",
        "New York, NY 10016",
        "United States of America",
    ),
    (
        "National Law Enforcement and Corrections Technology Center (NLECTC)",
        "700 N. Frederick Ave.",
        "Bldg. 181, Room 1L30",
        "Gaithersburg, MD 20879",
        "United States of America",
    ),
    ("NCJRS Photocopy Services", "Box 6000", "Rockville, MD 20849", "United States of America"),
    (
        "Sage Publications, Inc",
        "2455 Teller Road",
        "Thousand Oaks, CA 91320",
        "United States of America",
    ),
    (
        "National Technical Information Service",
        "5285 Port Royal Road",
        "Springfield, VA 22161",
        "United States of America",
    ),
)
_FRENCH_SALE_SOURCE: Final = (
    "Ministère de la Justice",
    "13, place Vendôme",
    "75042 Paris Cedex 01",
    "France",
)
_TYPES: Final = (
    "Issue Overview", "Report (Technical)", "Statistics", "Program/Project Description",
    "Research (Applied/Empirical)", "Survey", "Legislation/Policy Analysis", "Literature Review",
    "Training (Aid/Material)", "Bibliography", "Program/Project Evaluation",
    "Instructional Material", "Research (Theoretical)", "Conference Material", "Handbook",
)  # fmt: skip
_OTHER_FORMATS: Final = (
    "Document", "Report (Study/Research)", "Report (Grant Sponsored)", "Microfiche",
    "Book (Softbound)", "Dataset",
)  # fmt: skip
_AGENCY_ABBREVIATIONS: Final = ("NIJ", "BJS", "OJJDP", "BJA", "OVC", "OJP")
_GRANT_CODES: Final = ("IJ", "MU", "JN", "DD", "BJ", "JS", "VF", "DB", "NI", "JF", "SC", "RP")
_GRANT_MIDS: Final = ("CX", "MU", "AX", "FX", "K0", "99")

_SUBJECTS: Final = (
    "The study", "This report", "The author", "This article", "The project", "Researchers",
    "The survey", "The program evaluation", "This document", "The panel", "The analysis",
    "This chapter", "The guide",
)  # fmt: skip
_VERBS: Final = (
    "examines", "describes", "discusses", "reviews", "assesses", "compares", "explores",
    "documents", "summarizes", "analyzes", "identifies", "considers", "evaluates", "outlines",
)  # fmt: skip
_VERBS2: Final = (
    "are associated with", "reduce", "increase", "do not predict", "strongly affect",
    "vary with", "are unrelated to", "improve",
)  # fmt: skip
_UNITS: Final = (
    "police departments", "correctional facilities", "juvenile courts", "probation offices",
    "State agencies", "inmates", "officers", "victims", "counties", "jails",
    "prosecutors' offices", "treatment programs", "schools", "households",
)  # fmt: skip
_PARTICIPLES: Final = (
    "surveyed", "interviewed", "observed", "tracked", "released", "arrested", "referred",
)  # fmt: skip
_ADJ_PRED: Final = (
    "more effective", "less costly", "more common", "less consistent", "more visible",
)  # fmt: skip
_ORGS: Final = (
    "Bureau of Alcohol, Tobacco, Firearms & Explosives", "Federal Bureau of Investigation",
    "Immigration and Naturalization Service", "National Sheriffs' Association",
    "American Bar Association", "International Association of Chiefs of Police",
)  # fmt: skip
_DOC_WORDS: Final = ("study", "report", "article", "survey", "chapter", "document", "evaluation")
_MONTHS: Final = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
_SEASONS: Final = ("Spring", "Summer", "Fall", "Winter")

# NCJ number -> approximate year the record was catalogued (piecewise linear)
_ERA: Final = (
    (10_000, 1969), (30_000, 1975), (60_000, 1978), (82_000, 1981), (107_000, 1986),
    (121_000, 1989), (160_000, 1995), (190_000, 2001), (206_000, 2004), (213_000, 2006),
    (229_000, 2010), (245_000, 2016), (260_000, 2023),
)  # fmt: skip


def _era_year(ncj: int) -> int:
    for (n0, y0), (n1, y1) in itertools.pairwise(_ERA):
        if ncj <= n1:
            return y0 + round((ncj - n0) * (y1 - y0) / (n1 - n0))
    return _ERA[-1][1]


_TOPIC_AREAS: Final = (
    "Corrections", "Courts", "Crime Prevention", "Drugs and Crime", "Forensic Sciences",
    "Juvenile Justice", "Law Enforcement", "Victims and Victimization", "Tribal Justice",
    "Reentry", "Human Trafficking", "School Safety", "Firearms", "Terrorism", "Technology",
    "Violence Against Women", "Youth Violence", "Policing", "Sentencing", "Substance Abuse",
)  # fmt: skip
_TOPIC_AREA_SLUGS: Final = tuple(slugify(a) for a in _TOPIC_AREAS)
_TOPIC_AREA_INDEX: Final = {s: n for n, s in enumerate(_TOPIC_AREA_SLUGS)}
_TOPIC_SPACE: Final = len(_TOPIC_AREAS) * 64 * 64
_TOPIC_MULT: Final = 48_271  # coprime to 81,920 = 2**14 * 5


# --------------------------------------------------------------------------------------------
# Text generation
# --------------------------------------------------------------------------------------------


def _pick(rng: random.Random, seq: Sequence[_T]) -> _T:
    """``rng.choice`` without its overhead (deterministic all the same)."""
    return seq[int(rng.random() * len(seq))]


def _rint(rng: random.Random, low: int, high: int) -> int:
    """``rng.randint`` without its overhead."""
    return low + int(rng.random() * (high - low + 1))


def _np(rng: random.Random) -> str:
    """A noun phrase such as 'juvenile detention practices'."""
    return (
        f"{_pick(rng, _CODE_A).lower()} {_pick(rng, _CODE_B).lower()} {_pick(rng, _CODE_C).lower()}"
    )


def _complement(rng: random.Random) -> str:
    kind = int(rng.random() * 8)
    if kind == 0:
        return f" in {_pick(rng, _PLACES)}"
    if kind == 1:
        year = _rint(rng, 1965, 2019)
        return f" between {year} and {year + _rint(rng, 1, 12)}"
    if kind == 2:
        return f" among {_pick(rng, _UNITS)}"
    if kind == 3:
        return f" since {_rint(rng, 1965, 2019)}"
    if kind == 4:
        return f" across {_rint(rng, 2, 50)} States"
    if kind == 5:
        return " at the local level"
    if kind == 6:
        return f" in {_rint(rng, 3, 900):,} jurisdictions"
    return ""


def _sentence(rng: random.Random) -> str:
    kind = int(rng.random() * 12)
    if kind == 0:
        return f"Findings indicate that {_np(rng)} {_pick(rng, _VERBS2)} {_np(rng)}."
    if kind == 1:
        n = _rint(rng, 12, 12_000)
        return f"Data were collected from {n:,} {_pick(rng, _UNITS)}{_complement(rng)}."
    if kind == 2:
        return (
            f"{_rint(rng, 2, 97)} percent of {_pick(rng, _UNITS)} reported {_np(rng)}, compared "
            f"with {_rint(rng, 2, 97)} percent in {_rint(rng, 1970, 2019)}."
        )
    if kind == 3:
        return f"Recommendations include {_np(rng)}, {_np(rng)}, and {_np(rng)}."
    if kind == 4:
        return (
            f"The {_pick(rng, _DOC_WORDS)} also discusses the role of {_np(rng)} "
            f"(e.g., {_np(rng)}, {_np(rng)})."
        )
    if kind == 5:
        return (
            f"Officials in {_pick(rng, _PLACES)} {_pick(rng, _VERBS)} the "
            f"'{_pick(rng, _CODE_A)} {_pick(rng, _CODE_B)}' approach to {_np(rng)}."
        )
    if kind == 6:
        return f"The {_pick(rng, _ORGS)} {_pick(rng, _VERBS)} {_np(rng)}{_complement(rng)}."
    if kind == 7:
        return (
            f"In {_rint(rng, 1968, 2020)}, {_rint(rng, 2, 5000):,} {_pick(rng, _UNITS)} were "
            f"{_pick(rng, _PARTICIPLES)}{_complement(rng)}."
        )
    if kind == 8:
        return f"Results suggest that {_np(rng)} is {_pick(rng, _ADJ_PRED)} than {_np(rng)}."
    if kind == 9:
        return (
            f"Samples were small (n < {_rint(rng, 10, 60)}) in {_rint(rng, 2, 9)} of the "
            f"{_pick(rng, _UNITS)} -- a limitation the authors acknowledge."
        )
    return f"{_pick(rng, _SUBJECTS)} {_pick(rng, _VERBS)} {_np(rng)}{_complement(rng)}."


def _closing(rng: random.Random) -> str:
    n = _rint(rng, 3, 90)
    return _pick(
        rng,
        (
            f"{n} references.",
            f"Tables, figures, notes, and {n} references",
            f"Tables and {n} references (Author abstract modified)",
            f"Appended letters and {n} references.",
            "Figures, tables, notes, references",
        ),
    )


def _paragraph(rng: random.Random, target: int, closing: bool = False) -> str:
    """Display text of one paragraph: sentences separated by one space, sometimes two or a line
    break (as in the HTML source); the truth collapses them."""
    parts: list[str] = []
    length = 0
    while length < target:
        sentence = _sentence(rng)
        if parts and length + len(sentence) > target and length >= 0.6 * target:
            break  # keeps the paragraph between 60% of target and target (or one sentence)
        parts.append(sentence)
        length += len(sentence) + 1
    if closing:
        parts.append(_closing(rng))
    out = parts[0]
    for part in parts[1:]:
        r = rng.random()
        out += "  " + part if r < 0.08 else "\n" + part if r < 0.12 else " " + part
    return out


def _bullet(rng: random.Random) -> str:
    year = _rint(rng, 1990, 2020)
    return _pick(
        rng,
        (
            f"During {year} {_np(rng)} increased by {_rint(rng, 2, 60)}% in "
            f"{_rint(rng, 3, 50)} States.",
            f"About a third of all {_pick(rng, _UNITS)} ({_rint(rng, 20, 45)}%) reported "
            f"{_np(rng)}.",
            f"Using {_np(rng)} as an indicator results in an estimate of about "
            f"{_rint(rng, 2, 90) * 100:,} incidents.",
            f"{_rint(rng, 2, 9)} in 10 {_pick(rng, _UNITS)} had {_np(rng)}.",
        ),
    )


def _person(rng: random.Random, year: int, upper: bool) -> PersonName:
    family = _pick(rng, _FAMILY)
    style = rng.random()
    if year < 1990 and style < 0.7:
        given = " ".join(_pick(rng, _INITIALS) for _ in range(_pick(rng, (1, 1, 2))))
    elif style < 0.8:
        given = f"{_pick(rng, _GIVEN)} {_pick(rng, _INITIALS)}"  # Matthew J
    elif style < 0.9:
        given = f"{_pick(rng, _GIVEN)} {_pick(rng, _INITIALS)}."  # Joseph R.
    elif style < 0.96:
        given = _pick(rng, _GIVEN)  # Melissa
    else:
        given = f"{_pick(rng, _GIVEN)} {_pick(rng, _GIVEN)}"  # Dennis Jay
    suffix = _pick(rng, _SUFFIXES) if not upper and rng.random() < 0.05 else None
    if upper:
        given, family = given.upper(), family.upper()
    name = f"{given} {family}" + (f" {suffix}" if suffix else "")
    return PersonName(name=name, family=family, given=given, suffix=suffix)


def _grant(rng: random.Random, year: int) -> str:
    code, mid = _pick(rng, _GRANT_CODES), _pick(rng, _GRANT_MIDS)
    if year < 2000:
        return f"{year % 100:02d}-{code}-{mid}-{_pick(rng, ('', 'K'))}{_rint(rng, 1, 999):03d}"
    return f"{year}-{code}-{mid}-{_pick(rng, ('', 'K'))}{_rint(rng, 1, 999):03d}"


def _month_date(year: int, month: int) -> DateValue:
    return DateValue(f"{_MONTHS[month - 1]} {year}", year, month, None, "month")


def _day_date(year: int, month: int, day: int) -> DateValue:
    return DateValue(f"{_MONTHS[month - 1]} {day}, {year}", year, month, day, "day")


# --------------------------------------------------------------------------------------------
# Site
# --------------------------------------------------------------------------------------------

SitemapEntry = tuple[Literal["record", "publication", "topic", "soft404"], int]


class Site:
    """The whole local NCJRS site for one ``SiteOptions``: records, truth and page HTML."""

    def __init__(self, records: int = 1000, seed: int = 0, **options: Any) -> None:
        self.options = SiteOptions(records=records, seed=seed, **options)
        self.records = records
        self.seed = seed
        self._key = _mix64(_mix64(seed & _M64) ^ ((seed >> 64) & _M64))
        self._fkeys = tuple(_mix64(self._key + 1_000 + r) for r in range(4))
        self._code_mult = (_mix64(self._key + 7) | 1) & (_CODE_SPACE - 1)
        self._code_add = _mix64(self._key + 8) & (_CODE_SPACE - 1)
        self._code_inv = pow(self._code_mult, -1, _CODE_SPACE)
        self._sitemap: list[SitemapEntry] | None = None
        self.revisions: dict[int, int] = {}  # record index -> times changed (see revise)
        self._record = lru_cache(maxsize=4096)(self._generate)
        self._chrome = _chrome()
        # base time of the newest record; older records step back in time
        span = 15 * 365 * 86_400
        self._lastmod_base = datetime(2024, 11, 29, 17, 0, 0, tzinfo=UTC)
        self._lastmod_step = max(60, span // max(records, 1))

    # -- deterministic helpers ---------------------------------------------------------------

    def _unit(self, i: int, salt: int) -> float:
        return _mix64(self._key + _mix64((i << 8) | salt)) / 18446744073709551616.0

    def _rng(self, i: int, salt: int) -> random.Random:
        return random.Random(_mix64(self._key ^ _mix64((i << 8) | salt)))

    def _feistel(self, x: int, inverse: bool = False) -> int:
        left, right = x >> 9, x & 511
        if inverse:
            for k in reversed(self._fkeys):
                left, right = right ^ (_mix64(left ^ k) & 511), left
        else:
            for k in self._fkeys:
                left, right = right, left ^ (_mix64(right ^ k) & 511)
        return (left << 9) | right

    def _permute(self, x: int, inverse: bool = False) -> int:
        y = self._feistel(x, inverse)
        while y >= NCJ_SPAN:  # cycle walking keeps the permutation inside 0..NCJ_SPAN-1
            y = self._feistel(y, inverse)
        return y

    def _code_key(self, i: int) -> int:
        return (self._code_mult * i + self._code_add) & (_CODE_SPACE - 1)

    def _check(self, i: int) -> None:
        if not 0 <= i < self.records:
            raise IndexError(f"record index {i} outside 0..{self.records - 1}")

    # -- identity and shape (cheap, no record generation) -------------------------------------

    def ncj_number(self, i: int) -> int:
        self._check(i)
        return NCJ_MIN + self._permute(i)

    def index_of_ncj(self, ncj: int) -> int | None:
        if not NCJ_MIN <= ncj < NCJ_MIN + NCJ_SPAN:
            return None
        i = self._permute(ncj - NCJ_MIN, inverse=True)
        return i if i < self.records else None

    def year(self, i: int) -> int:
        """Nominal year of record i (from its NCJ number's era, jittered)."""
        jitter = int(self._unit(i, _S_YEAR) * 3) - 1
        return max(1968, min(2023, _era_year(NCJ_MIN + self._permute(i)) + jitter))

    def layout(self, i: int) -> Literal["current", "legacy"]:
        self._check(i)
        return "legacy" if self._unit(i, _S_LAYOUT) < self.options.legacy_share else "current"

    def rejection(self, i: int) -> Rejection | None:
        self._check(i)
        if self._unit(i, _S_BAD) >= self.options.bad_share:
            return None
        return "invalid_ncj_number" if self._unit(i, _S_BADKIND) < 0.5 else "missing_title"

    def has_publication(self, i: int) -> bool:
        return (
            self.layout(i) == "current"
            and self.rejection(i) is None
            and self._unit(i, _S_PUB) < self.options.publication_share
        )

    def legacy_id(self, i: int) -> int:
        """The id in the record's legacy URL: its NCJ number, or for a few legacy records not."""
        if (
            self.layout(i) == "legacy"
            and self._unit(i, _S_ALTID) < self.options.legacy_alt_id_share
        ):
            return LEGACY_ALT_ID_BASE + self._code_key(i)
        return self.ncj_number(i)

    def index_of_legacy_id(self, legacy_id: int) -> int | None:
        """The record a legacy URL id belongs to (its NCJ number or its alternative id)."""
        if legacy_id >= LEGACY_ALT_ID_BASE:
            key = legacy_id - LEGACY_ALT_ID_BASE
            if key >= _CODE_SPACE:
                return None
            i = ((key - self._code_add) * self._code_inv) & (_CODE_SPACE - 1)
        else:
            found = self.index_of_ncj(legacy_id)
            if found is None:
                return None
            i = found
        if i >= self.records or self.legacy_id(i) != legacy_id:
            return None
        return i

    def _kind(self, i: int, year: int) -> Literal["journal", "chapter", "other"]:
        u = self._unit(i, _S_KIND)
        if u < 0.42:
            return "journal"
        if u < 0.54 and year >= 1979 and self.records > 1:
            return "chapter"
        return "other"

    def _caps(self, i: int, year: int) -> bool:
        return year <= 1978 and self._unit(i, _S_CAPS) < 0.85

    # -- titles and slugs ---------------------------------------------------------------------

    def _title(self, i: int) -> tuple[str, ChapterParts | None]:
        """The full title of index i (also for indexes >= records: removed records)."""
        key = self._code_key(i)
        a, b, c = _CODE_A[key >> 12], _CODE_B[(key >> 6) & 63], _CODE_C[key & 63]
        rng = self._rng(i, _S_TITLE)
        core = f"{a} {b} {c}"
        form = int(rng.random() * 8)
        if form == 0:
            title = f"{core}: {_pick(rng, _SUBTITLES)}"
        elif form == 1:
            title = f"The {core} of {_pick(rng, _PLACES)}"
        elif form == 2:
            title = f"{core} in {_pick(rng, _PLACES)}"
        elif form == 3:
            y = _rint(rng, 1960, 2015)
            title = f"{core}, {y}-{y + _rint(rng, 1, 12)}"
        elif form == 4:
            title = f"{core} -- {_pick(rng, _SUBTITLES)}"
        elif form == 5:
            title = f"{core} and {_pick(rng, _CODE_B)} {_pick(rng, _CODE_C)}"
        else:
            title = core
        in_range = i < self.records
        year = self.year(i) if in_range else 2000
        chapter = None
        if in_range and self._kind(i, year) == "chapter":
            parent = int(self._unit(i, _S_PARENT) * (self.records - 1))
            parent += parent >= i  # any other record
            start = _rint(rng, 1, 400)
            pages = f"{start}-{start + _rint(rng, 4, 40)}"
            book = _pick(rng, _BOOK_TITLES)
            editor = _person(rng, max(year, 1990), False)
            parent_ncj = NCJ_MIN + self._permute(parent)
            chapter = ChapterParts(parent_ncj, book, pages)
            title += (
                f" (From {book}, P {pages}, {year}, {editor.name}, ed. -- See NCJ-{parent_ncj})"
            )
        if in_range and self._caps(i, year):
            title = title.upper()
        return title, chapter

    def slug(self, i: int) -> str:
        """URL alias of index i; indexes from ``records`` on are removed records (soft 404s)."""
        return slugify(self._title(i)[0])

    def index_of_slug(self, slug: str) -> int | None:
        """Decode a slug to its index (may be >= records for removed records); None if none."""
        words = slug.split("-", 3)
        if len(words) < 3:
            return None
        try:
            a, b, c = (table[w] for table, w in zip(_CODE_INDEX, words[:3], strict=False))
        except KeyError:
            return None
        key = (a << 12) | (b << 6) | c
        i = ((key - self._code_add) * self._code_inv) & (_CODE_SPACE - 1)
        if i >= self.records + self.options.soft_404_count or self.slug(i) != slug:
            return None
        return i

    def is_soft_404_index(self, i: int) -> bool:
        return self.records <= i < self.records + self.options.soft_404_count

    # -- record generation --------------------------------------------------------------------

    def record(self, i: int) -> GeneratedRecord:
        self._check(i)
        record = self._record(i)
        revision = self.revisions.get(i)
        if revision is None:
            return record
        return replace(
            record,
            annotation=f"{record.annotation} Revised edition {revision}.".strip(),
            lastmod=self._revised_lastmod(revision),
        )

    def revise(self, indices: Iterable[int]) -> None:
        """Change records in place, as the live site does: new annotation text, newer lastmod."""
        for i in indices:
            self._check(i)
            self.revisions[i] = self.revisions.get(i, 0) + 1

    def _revised_lastmod(self, revision: int) -> datetime:
        return self._lastmod_base + timedelta(days=revision)

    def _generate(self, i: int) -> GeneratedRecord:
        rng = self._rng(i, _S_RECORD)
        ncj = self.ncj_number(i)
        year = self.year(i)
        layout = self.layout(i)
        kind = self._kind(i, year)
        caps = self._caps(i, year)
        rejection = self.rejection(i)
        title, chapter = self._title(i)
        slug = slugify(title)
        variant: Literal["table", "2010"] = (
            "2010"
            if layout == "legacy" and year >= 2008 and self._unit(i, _S_VARIANT) < 0.7
            else "table"
        )
        r = rng.random()
        language = (
            "French" if r < 0.04 else "German" if r < 0.06 else "Spanish" if r < 0.07 else "English"
        )
        if language == "English":
            country = _pick(rng, ("United States of America",) * 8 + ("Canada", "United Kingdom"))
        else:
            country = _FOREIGN_COUNTRY[language]

        # dates, journal, length
        published: DateValue | None
        journal: JournalParts | None = None
        page_count: int | None
        if kind == "journal":
            journal, published, page_count = self._journal(rng, year, language, variant)
        else:
            published = self._published(rng, year, variant)
            if chapter is not None:
                first, last = chapter.pages.split("-")
                page_count = int(last) - int(first) + 1
            else:
                page_count = _rint(rng, 1, 400) if rng.random() < 0.95 else None
        film = kind == "other" and rng.random() < 0.03
        if film or (page_count is not None and rng.random() < 0.02):
            page_count = 0

        # people and organizations
        n_authors = rng.choices((0, 1, 2, 3, 4, 5), (20, 40, 20, 10, 6, 4))[0]
        upper_names = caps and rng.random() < 0.3
        authors = tuple(_person(rng, year, upper_names) for _ in range(n_authors))
        anon = not authors and rng.random() < 0.25
        editors: tuple[PersonName, ...] = ()
        if rng.random() < 0.06:
            editors = tuple(_person(rng, year, upper_names) for _ in range(_pick(rng, (1, 1, 2))))
        corporate: tuple[tuple[str, str], ...] = ()
        if rng.random() < 0.25:
            corporate = tuple(rng.sample(_CORPORATE, _pick(rng, (1, 1, 1, 2))))
        sponsors: tuple[tuple[str, tuple[str, ...]], ...] = ()
        grants: tuple[str, ...] = ()
        if rng.random() < 0.4:
            pool = _FEDERAL_SPONSORS + ((_LEAA,) if year < 1983 else ()) + _OTHER_SPONSORS
            sponsors = tuple(rng.sample(pool, _pick(rng, (1, 1, 2))))
            if any(s in _FEDERAL_SPONSORS or s == _LEAA for s in sponsors) and rng.random() < 0.6:
                grants = tuple(_grant(rng, year) for _ in range(_pick(rng, (1, 1, 1, 2))))
        sale: tuple[str, ...] = ()
        if rng.random() < 0.5:
            sale = _FRENCH_SALE_SOURCE if language == "French" else _pick(rng, _SALE_SOURCES)
        documents: tuple[tuple[str, str], ...] = ()
        if rng.random() < 0.3:
            bureau = _pick(rng, ("nij", "bjs", "ojjdp", "bja", "ovc"))
            documents = (("PDF", f"/pdffiles1/{bureau}/{ncj}.pdf"),)
            if rng.random() < 0.15:
                documents += (("HTML", f"/App/Publications/Document.aspx?ID={ncj}"),)
        ptype = _pick(rng, _TYPES) if rng.random() < 0.92 else None
        if kind == "journal":
            pformat: str | None = "Article"
        elif kind == "chapter":
            pformat = _pick(rng, ("Book (Hardbound)", "Book (Softbound)"))
        else:
            pformat = "Film" if film else _pick(rng, _OTHER_FORMATS)

        # texts
        annotation = (
            f"This {_pick(rng, _DOC_WORDS)} {_pick(rng, _VERBS)} {_np(rng)}{_complement(rng)}"
            + (f" and {_np(rng)}." if rng.random() < 0.5 else ".")
        )
        abstract = self._abstract(rng, year, layout)
        if caps:
            annotation = annotation.upper()
            abstract = tuple(
                ("p", b[1].upper()) if b[0] == "p" else ("ul", tuple(x.upper() for x in b[1]))
                for b in abstract
            )

        ncj_display = f"NCJ {ncj}" if variant == "2010" else str(ncj)
        if rejection == "invalid_ncj_number":
            ncj_display = _pick(rng, ("Pending", "TBD", "N/A", "See record", "NCJ-PENDING"))
        if rejection == "missing_title":
            title = ""

        publication = (
            self._publication_info(rng, i, year, published) if self.has_publication(i) else None
        )
        lastmod = self._lastmod_base - timedelta(
            seconds=i * self._lastmod_step + int(self._unit(i, _S_LASTMOD) * self._lastmod_step)
        )
        return GeneratedRecord(
            index=i,
            ncj_number=ncj,
            slug=slug,
            layout=layout,
            legacy_variant=variant,
            legacy_id=self.legacy_id(i),
            rejection=rejection,
            ncj_display=ncj_display,
            title=title,
            chapter=chapter,
            journal=journal,
            authors=authors,
            anon=anon,
            editors=editors,
            corporate_authors=corporate,
            published=published,
            page_count=page_count,
            annotation=annotation,
            abstract=abstract,
            sponsoring_agencies=sponsors,
            grant_numbers=grants,
            sale_source=sale,
            documents=documents,
            publication_type=ptype,
            publication_format=pformat,
            language=language,
            country=country,
            caps=caps,
            year=year,
            node_id=20_000 + i * 7 + int(self._unit(i, _S_LASTMOD) * 7),
            lastmod=lastmod,
            viewstate_seed=rng.getrandbits(64),
            publication=publication,
        )

    def _published(self, rng: random.Random, year: int, variant: str) -> DateValue | None:
        r = rng.random()
        month = _rint(rng, 1, 12)
        if r < 0.05:
            return None
        if r < 0.12:
            return DateValue("Unknown")
        if r < 0.47:
            if variant == "2010":
                return DateValue(f"{month:02d}/{year}", year, month, None, "month")
            return _month_date(year, month)
        if r < 0.55 and year >= 1995:
            return _day_date(year, month, _rint(rng, 1, 28))
        return DateValue(str(year), year, None, None, "year")

    def _journal(
        self, rng: random.Random, year: int, language: str, variant: str
    ) -> tuple[JournalParts, DateValue | None, int | None]:
        name = (
            _pick(rng, _FOREIGN_JOURNALS[language])
            if language != "English"
            else _pick(rng, _JOURNALS)
        )
        volume = str(_rint(rng, 1, 60)) if rng.random() >= 0.2 else None
        issue = str(_rint(rng, 1, 12)) if rng.random() >= 0.05 else None
        month = _rint(rng, 1, 11)
        r = rng.random()
        published: DateValue | None
        if r < 0.5:
            dated = f"{_MONTHS[month - 1]} {year}"
            published = _month_date(year, month) if rng.random() < 0.7 else None
        elif r < 0.65:
            dated = f"{_pick(rng, _SEASONS)} {year}"
            published = DateValue(dated, year, None, None, "season") if rng.random() < 0.3 else None
        elif r < 0.75:
            dated = f"{_MONTHS[month - 1]}-{_MONTHS[month]} {year}"
            published = (
                _month_date(year, month)
                if rng.random() < 0.5
                else DateValue(dated, year, month, None, "month_range")
            )
        else:
            dated = str(year)
            published = None
        if published is None:
            published = DateValue(str(year), year, None, None, "year")
        if variant == "2010" and published.precision == "month" and published.month:
            published = DateValue(
                f"{published.month:02d}/{year}", year, published.month, None, "month"
            )
        old = year < 1990
        dated_display = f"({dated})" if old and rng.random() < 0.8 else dated

        r = rng.random()
        page_count: int | None
        pages: str | None
        if r < 0.7:
            start = _rint(rng, 1, 600)
            length = _rint(rng, 1, 30)
            pages = f"{start}-{start + length - 1}" if length > 1 else str(start)
            page_count = length
        elif r < 0.75:
            pages, page_count = "complete issue", _rint(rng, 40, 200)
        elif r < 0.78:
            pages, page_count = "Insert", _rint(rng, 2, 10)
        elif r < 0.88:
            s = _rint(rng, 10, 80)
            pages = f"{s},{s + 2},{s + 4},{s + 6}-{s + 9}"
            page_count = 7
        else:
            pages, page_count = None, _rint(rng, 1, 30)
        if rng.random() < 0.05:
            page_count = None

        parts = [("Volume", volume), ("Issue", issue), ("Dated", dated_display), ("Pages", pages)]
        if old and rng.random() < 0.5:  # legacy spacing: two spaces, no space after the colon
            display = "  ".join([name] + [f"{k}:{v}" for k, v in parts if v is not None])
        else:
            display = " ".join([name] + [f"{k}: {v}" for k, v in parts if v is not None])
        return JournalParts(display, name, volume, issue, dated, pages), published, page_count

    def _abstract(self, rng: random.Random, year: int, layout: str) -> tuple[Block, ...]:
        n_paragraphs = rng.choices((1, 2, 3, 4), (50, 25, 15, 10))[0]
        if layout == "legacy":
            n_paragraphs = min(n_paragraphs, 2)
        total = _rint(rng, 360, 2380)  # the abstract ends up 200..2,500 characters long
        items: tuple[str, ...] = ()
        if layout == "current" and year >= 2000 and rng.random() < 0.2:
            items = tuple(_bullet(rng) for _ in range(_rint(rng, 2, 5)))
            total = max(360, total - sum(len(item) + 1 for item in items))
        blocks: list[Block] = []
        for n in range(n_paragraphs):
            target = total // n_paragraphs - 55 * (n == n_paragraphs - 1)
            blocks.append(("p", _paragraph(rng, target, closing=n == n_paragraphs - 1)))
        if items:
            blocks.insert(1 if rng.random() < 0.5 else len(blocks), ("ul", items))
        return tuple(blocks)

    def _publication_info(
        self, rng: random.Random, i: int, year: int, published: DateValue | None
    ) -> PublicationInfo:
        agencies = tuple(rng.sample(_AGENCY_ABBREVIATIONS, _pick(rng, (1, 1, 2))))
        shown: DateValue | None = None
        precise = published is not None and published.precision in ("month", "day", "year")
        if published is not None and precise and rng.random() < 0.5:
            shown = published
            if "/" in published.text and published.month:  # legacy-only numeric form
                shown = _month_date(published.year or year, published.month)
        created_year = _rint(rng, max(year, 2012), 2023)
        created = _day_date(created_year, _rint(rng, 1, 12), _rint(rng, 1, 28))
        similar = tuple(self._similar(i, k) for k in range(3))
        return PublicationInfo(agencies, shown, created, similar)

    def _similar(self, i: int, k: int) -> int:
        j = int(self._unit(i * 4 + k, _S_TOPIC) * self.records)
        return j if j != i else (i + 1) % self.records

    # -- truth --------------------------------------------------------------------------------

    def paths(self, i: int) -> dict[str, str | None]:
        """Site-relative URLs of record i (None where the record has no such page)."""
        layout = self.layout(i)
        legacy_id = self.legacy_id(i)
        current = f"{CURRENT_PREFIX}/{self.slug(i)}" if layout == "current" else None
        return {
            "primary": current or f"{LEGACY_PATH}?ID={legacy_id}",
            "current": current,
            "legacy": f"{LEGACY_PATH}?ID={legacy_id}",
            "legacy_variant": f"{LEGACY_VARIANT_PATH}?id={legacy_id}",
            "publication": (
                f"{PUBLICATION_PREFIX}/{self.slug(i)}" if self.has_publication(i) else None
            ),
        }

    def urls(self, i: int, base_url: str) -> dict[str, str | None]:
        base = base_url.rstrip("/")
        return {k: (base + v if v else None) for k, v in self.paths(i).items()}

    def expected(
        self, i: int, layout: Layout | None = None, base_url: str = ""
    ) -> dict[str, Any] | None:
        """The golden ``expected`` dict record i's page yields (None for a rejected page).

        ``layout`` defaults to the primary layout; pass "publication" for the bureau page.
        ``base_url`` makes ``document_urls`` absolute (legacy pages only show documents).
        """
        rec = self.record(i)
        layout = layout or rec.layout
        if layout == "publication" and rec.publication is None:
            raise ValueError(f"record {i} has no publication page")
        if rec.rejection is not None:
            return None
        out: dict[str, Any] = {
            "ncj_number": rec.ncj_number,
            "title": _collapse(rec.title),
            "chapter_of": rec.chapter.as_dict() if rec.chapter else None,
            "journal": None,
            "authors": [],
            "editors": [],
            "corporate_authors": [],
            "published": rec.published.as_dict() if rec.published else None,
            "date_created": None,
            "page_count": rec.page_count,
            "annotation": _collapse(rec.annotation),
            "abstract": _abstract_text(rec.abstract),
            "sponsoring_agencies": [],
            "agencies": [],
            "grant_numbers": [],
            "sale_source": None,
            "publisher": None,
            "document_urls": [],
            "publication_type": None,
            "publication_format": None,
            "language": None,
            "country": None,
            "publication_series": None,
            "note": None,
            "subjects": [],
            "extra_fields": {},
        }
        if layout == "publication":
            pub = rec.publication
            assert pub is not None
            out["published"] = pub.published.as_dict() if pub.published else None
            out["date_created"] = pub.date_created.as_dict()
            out["agencies"] = list(pub.agencies)
            return out
        out["journal"] = rec.journal.as_dict() if rec.journal else None
        out["authors"] = [p.as_dict() for p in rec.authors]
        out["editors"] = [p.as_dict() for p in rec.editors]
        if layout == "legacy":
            base = base_url.rstrip("/")
            out["corporate_authors"] = [name for name, _ in rec.corporate_authors]
            out["sponsoring_agencies"] = [name for name, _ in rec.sponsoring_agencies]
            out["grant_numbers"] = list(rec.grant_numbers)
            out["sale_source"] = "\n".join(rec.sale_source) or None
            out["document_urls"] = [base + path for _, path in rec.documents]
            out["publication_type"] = rec.publication_type
            out["publication_format"] = rec.publication_format
            out["language"] = rec.language
            out["country"] = rec.country
        return out

    def truth_entry(self, i: int, base_url: str) -> dict[str, Any]:
        """Golden-file-shaped truth for record i's primary page, plus its URLs.

        ``{"index", "ncj_number", "slug", "url", "content_type", "kind", "rejection", "layout",
        "expected", "urls", "lastmod", "publication"}`` where ``publication`` is None or
        ``{"url", "layout": "publication", "kind": "record", "rejection": None, "expected"}``.
        """
        rec = self.record(i)
        urls = self.urls(i, base_url)
        publication = None
        if rec.publication is not None:
            publication = {
                "url": urls["publication"],
                "content_type": CONTENT_TYPE_HTML,
                "layout": "publication",
                "kind": "record",
                "rejection": None,
                "expected": self.expected(i, "publication", base_url),
            }
        return {
            "index": i,
            "ncj_number": rec.ncj_number,
            "slug": rec.slug,
            "url": urls["primary"],
            "content_type": CONTENT_TYPE_HTML,
            "kind": "rejected" if rec.rejection else "record",
            "rejection": rec.rejection,
            "layout": rec.layout,
            "expected": self.expected(i, None, base_url),
            "urls": urls,
            "lastmod": _iso(rec.lastmod),
            "publication": publication,
        }

    def truth(self, base_url: str) -> Iterator[dict[str, Any]]:
        """Truth entries of all records, in index (listing) order."""
        for i in range(self.records):
            yield self.truth_entry(i, base_url)

    # -- site structure -----------------------------------------------------------------------

    def sitemap_entries(self) -> list[SitemapEntry]:
        """Every sitemap URL in order: records, their publication pages, topic pages and a few
        soft-404 URLs, interleaved. Computed once (cheap per-record hashes only)."""
        if self._sitemap is not None:
            return self._sitemap
        n = self.records
        opts = self.options
        unit = self._unit
        with_publication = {
            i
            for i in range(n)
            if unit(i, _S_PUB) < opts.publication_share  # = has_publication(i), cheapest test first
            and unit(i, _S_LAYOUT) >= opts.legacy_share
            and unit(i, _S_BAD) >= opts.bad_share
        }
        pubs = len(with_publication)
        share = self.options.topic_share
        topics = min(_TOPIC_SPACE, max(1, round(share * (n + pubs) / (1 - share)))) if share else 0
        soft = self.options.soft_404_count
        entries: list[SitemapEntry] = []
        t = s = 0
        for i in range(n):
            entries.append(("record", i))
            if i in with_publication:
                entries.append(("publication", i))
            while t < topics and (i + 1) * topics >= (t + 1) * n:
                entries.append(("topic", t))
                t += 1
            while s < soft and (i + 1) * soft >= (s + 1) * n:
                entries.append(("soft404", n + s))
                s += 1
        self._sitemap = entries
        return entries

    @property
    def topic_count(self) -> int:
        return sum(1 for kind, _ in self.sitemap_entries() if kind == "topic")

    @property
    def sitemap_count(self) -> int:
        return -(-len(self.sitemap_entries()) // self.options.per_sitemap)

    @property
    def listing_page_count(self) -> int:
        return -(-self.records // self.options.page_size)

    def topic_path(self, k: int) -> str:
        code = (k * _TOPIC_MULT + (self._key & 0xFFFF)) % _TOPIC_SPACE
        area, rest = divmod(code, 64 * 64)
        return f"{TOPIC_PREFIX}/{_TOPIC_AREA_SLUGS[area]}/{_CODE_B[rest >> 6].lower()}-{_CODE_C[rest & 63].lower()}"  # noqa: E501

    def topic_index(self, area: str, name: str) -> int | None:
        area_n = _TOPIC_AREA_INDEX.get(area)
        words = name.split("-")
        if area_n is None or len(words) != 2:
            return None
        b, c = _CODE_INDEX[1].get(words[0]), _CODE_INDEX[2].get(words[1])
        if b is None or c is None:
            return None
        code = area_n * 4096 + (b << 6) + c
        k = ((code - (self._key & 0xFFFF)) * pow(_TOPIC_MULT, -1, _TOPIC_SPACE)) % _TOPIC_SPACE
        return k if k < self.topic_count else None

    def entry_path(self, entry: SitemapEntry) -> str:
        kind, n = entry
        if kind == "record":
            path = self.paths(n)["primary"]
        elif kind == "publication":
            path = f"{PUBLICATION_PREFIX}/{self.slug(n)}"
        elif kind == "topic":
            path = self.topic_path(n)
        else:
            path = f"{CURRENT_PREFIX}/{self.slug(n)}"
        assert path is not None
        return path

    def entry_lastmod(self, entry: SitemapEntry) -> datetime:
        kind, n = entry
        if kind in ("record", "publication") and n in self.revisions:
            return self._revised_lastmod(self.revisions[n])
        if kind in ("record", "publication"):
            base = self._lastmod_base - timedelta(
                seconds=n * self._lastmod_step + int(self._unit(n, _S_LASTMOD) * self._lastmod_step)
            )
            return base + timedelta(hours=5) if kind == "publication" else base
        return self._lastmod_base - timedelta(days=30 + (n * 13) % 900)

    def section_title(self, path: str) -> str | None:
        """Title of a static section (navigation) page, None if the path is none."""
        return self._chrome.sections.get(path)

    # -- rendering ----------------------------------------------------------------------------

    def render_robots(self, base_url: str) -> str:
        delay = self.options.crawl_delay
        rules = "Allow: /\n" + (f"Crawl-delay: {delay:g}\n" if delay else "")
        return f"User-agent: *\n{rules}\nSitemap: {base_url.rstrip('/')}/sitemap.xml\n"

    def render_sitemap_index(self, base_url: str) -> str:
        base = base_url.rstrip("/")
        entries = self.sitemap_entries()
        per = self.options.per_sitemap
        out = [
            '<?xml version="1.0" encoding="UTF-8"?>\n',
            '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n',
        ]
        for k in range(self.sitemap_count):
            chunk = entries[k * per : (k + 1) * per]
            # record lastmods fall with the index: only the first record entry can be the newest
            first = next((e for e in chunk if e[0] == "record"), None)
            newest = max(
                self.entry_lastmod(e)
                for e in chunk
                if e[0] != "record" or e is first or e[1] in self.revisions  # revised: newer
            )
            out.append(
                f"  <sitemap><loc>{base}/sitemaps/sitemap-{k + 1}.xml</loc>"
                f"<lastmod>{_iso(newest)}</lastmod></sitemap>\n"
            )
        out.append("</sitemapindex>\n")
        return "".join(out)

    def render_sitemap(self, number: int, base_url: str) -> str | None:
        """Sitemap page ``number`` (1-based), None when out of range."""
        if not 1 <= number <= self.sitemap_count:
            return None
        base = base_url.rstrip("/")
        per = self.options.per_sitemap
        chunk = self.sitemap_entries()[(number - 1) * per : number * per]
        out = [
            '<?xml version="1.0" encoding="UTF-8"?>\n',
            '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n',
        ]
        for entry in chunk:
            loc = html.escape(base + self.entry_path(entry), quote=False)
            out.append(
                f"  <url><loc>{loc}</loc>"
                f"<lastmod>{_iso(self.entry_lastmod(entry))}</lastmod></url>\n"
            )
        out.append("</urlset>\n")
        return "".join(out)

    def listing_href(self, i: int) -> str:
        """The (site-relative) URL the listing links record i with: mostly the primary URL,
        for some current records a legacy URL that redirects."""
        paths = self.paths(i)
        if paths["current"] is not None:
            u = self._unit(i, _S_LINKFORM)
            if u < 0.15:
                return paths["legacy"] or ""
            if u < 0.2:
                return paths["legacy_variant"] or ""
        return paths["primary"] or ""

    def render_listing(self, page: int, base_url: str) -> str | None:
        """Listing page ``page`` (0-based, newest first), None when out of range."""
        last = self.listing_page_count - 1
        if not 0 <= page <= last:
            return None
        base = base_url.rstrip("/")
        size = self.options.page_size
        rows = []
        for i in range(page * size, min(self.records, (page + 1) * size)):
            title = _collapse(self._title(i)[0]) if self.rejection(i) != "missing_title" else ""
            stamp = self.entry_lastmod(("record", i))
            rows.append(
                '<div class="views-row"><article class="teaser teaser--abstract">\n'
                f'  <h3 class="teaser__title"><a href="{base}{html.escape(self.listing_href(i))}" '
                f'hreflang="en">{html.escape(title) or "(untitled)"}</a></h3>\n'
                f'  <div class="teaser__meta"><time datetime="{_iso(stamp)}">'
                f"{_MONTHS[stamp.month - 1]} {stamp.day}, {stamp.year}</time></div>\n"
                "</article></div>\n"
            )
        pager = [
            '<nav class="pager" role="navigation" aria-labelledby="pagination-heading">\n'
            '<h4 id="pagination-heading" class="visually-hidden">Pagination</h4>\n'
            '<ul class="pager__items js-pager__items">\n'
        ]
        if page > 0:
            pager.append(
                '<li class="pager__item pager__item--first"><a href="?page=0" title="Go to first '
                'page"><span class="visually-hidden">First page</span><span>« First</span>'
                "</a></li>\n"
                f'<li class="pager__item pager__item--previous"><a href="?page={page - 1}" '
                'title="Go to previous page" rel="prev"><span>‹ Previous</span></a></li>\n'
            )
        for p in range(max(0, page - 4), min(last, page + 4) + 1):
            cls = " is-active" if p == page else ""
            pager.append(
                f'<li class="pager__item{cls}"><a href="?page={p}" title="Go to page {p + 1}">'
                f"{p + 1}</a></li>\n"
            )
        if page < last:
            pager.append(
                f'<li class="pager__item pager__item--next"><a href="?page={page + 1}" '
                'title="Go to next page" rel="next"><span>Next ›</span></a></li>\n'
                f'<li class="pager__item pager__item--last"><a href="?page={last}" '
                'title="Go to last page"><span>Last »</span></a></li>\n'
            )
        pager.append("</ul>\n</nav>\n")
        main = (
            '<div class="ncjrs-listing">\n'
            '<h1 class="page-title">NCJRS Virtual Library Abstracts</h1>\n'
            f'<p class="view-header">Showing {page * size + 1} - '
            f"{min(self.records, (page + 1) * size)}"
            f" of {self.records:,} results, newest first</p>\n"
            '<div class="view-content">\n'
            + "".join(rows)
            + "</div>\n"
            + "".join(pager)
            + "</div>\n"
        )
        return self._chrome.current_page(
            head_title="Abstracts | Office of Justice Programs",
            canonical=f"{base}{CURRENT_PREFIX}?page={page}",
            node_path="ncjrs/virtual-library/abstracts",
            breadcrumb=(("Home", "/"), ("NCJRS Virtual Library", "/ncjrs/virtual-library")),
            main=main,
            body_class="path-ncjrs page-view-abstracts",
        )

    def render_current(self, i: int, base_url: str) -> str:
        rec = self.record(i)
        base = base_url.rstrip("/")
        fields_html = [
            _drupal_field("ncj-number", "NCJ Number", html.escape(rec.ncj_display)),
        ]
        if rec.journal:
            fields_html.append(
                _drupal_field("journal", "Journal", html.escape(rec.journal.display))
            )
        if rec.authors or rec.anon:
            names = "; ".join(p.name for p in rec.authors) if rec.authors else "ANON"
            fields_html.append(_drupal_field("authors", "Author(s)", html.escape(names)))
        if rec.editors:
            names = "; ".join(p.name for p in rec.editors)
            fields_html.append(_drupal_field("editors", "Editor(s)", html.escape(names)))
        if rec.published:
            fields_html.append(
                _drupal_field("date-published", "Date Published", html.escape(rec.published.text))
            )
        if rec.page_count is not None:
            fields_html.append(_drupal_field("length", "Length", f"{rec.page_count} pages"))
        fields_html.append(_drupal_field("annotation", "Annotation", html.escape(rec.annotation)))
        fields_html.append(
            _drupal_field("body", "Abstract", _blocks_html(rec.abstract), kind="text-with-summary")
        )
        main = (
            _NCJRS_BANNER
            + '<h1 class="page-title"><span class="field field--name-title">'
            + html.escape(rec.title)
            + "</span></h1>\n"
            + f'<article role="article" about="/node/{rec.node_id}" '
            'class="node node--type-abstract node--view-mode-full">\n'
            '<div class="node__content">\n'
            + "".join(fields_html)
            + "</div>\n</article>\n"
            + '<section class="abstract-downloads">\n<h2>Downloads</h2>\n'
            "<p>No download available</p>\n</section>\n"
            '<section class="abstract-availability">\n<h2>Availability</h2>\n'
            '<p><a href="/ncjrs/obtain-documents">How to obtain documents</a></p>\n</section>\n'
        )
        head_title = (
            f"{_collapse(rec.title)} | Office of Justice Programs"
            if rec.title
            else "Office of Justice Programs"
        )
        return self._chrome.current_page(
            head_title=head_title,
            canonical=f"{base}{CURRENT_PREFIX}/{rec.slug}",
            node_path=f"node/{rec.node_id}",
            breadcrumb=(
                ("Home", "/"),
                ("NCJRS Virtual Library", "/ncjrs/virtual-library"),
                ("Abstracts", CURRENT_PREFIX),
            ),
            main=main,
            body_class="path-node page-node-type-abstract",
            description=_collapse(rec.annotation)[:160],
        )

    def render_publication(self, i: int, base_url: str) -> str:
        rec = self.record(i)
        pub = rec.publication
        if pub is None:
            raise ValueError(f"record {i} has no publication page")
        base = base_url.rstrip("/")
        agencies = "".join(f'<div class="field__item">{a}</div>' for a in pub.agencies)
        similar = "".join(
            f'<li><a href="{base}{CURRENT_PREFIX}/{self.slug(j)}">'
            f"{html.escape(_collapse(self._title(j)[0]))}</a></li>\n"
            for j in pub.similar
        )
        main = (
            f'<h1 class="page-title">{html.escape(rec.title)}</h1>\n'
            f'<article class="node node--type-publication node--view-mode-full">\n'
            + _drupal_field("ncj-number", "NCJ Number", html.escape(rec.ncj_display))
            + _drupal_field(
                "date-published",
                "Date Published",
                html.escape(pub.published.text) if pub.published else "",
            )
            + '<div class="field field--name-field-agencies field--label-above">\n'
            '  <div class="field__label">Agencies</div>\n'
            f'  <div class="field__items">{agencies}</div>\n</div>\n'
            + _drupal_field("publication-series", "Publication Series", "")
            + _drupal_field("annotation", "Annotation", html.escape(rec.annotation))
            + _drupal_field(
                "body", "Abstract", _blocks_html(rec.abstract), kind="text-with-summary"
            )
            + '<div class="pub-field pub-field--date-created"><strong>Date Created:</strong> '
            f"{pub.date_created.text}</div>\n"
            '<section class="publication-downloads">\n<h2>Downloads</h2>\n'
            f'<ul><li><a href="/pdffiles1/{pub.agencies[0].lower()}/{rec.ncj_number}.pdf">'
            "Download PDF</a></li></ul>\n</section>\n"
            + (
                '<div class="pub-field pub-field--length"><strong>Length:</strong> '
                f"{rec.page_count} pages</div>\n"
                if rec.page_count is not None
                else ""
            )
            + "</article>\n"
            '<section class="similar-publications">\n<h2>Similar Publications</h2>\n'
            f"<ul>\n{similar}</ul>\n</section>\n"
        )
        return self._chrome.current_page(
            head_title=f"{_collapse(rec.title)} | National Institute of Justice",
            canonical=f"{base}{PUBLICATION_PREFIX}/{rec.slug}",
            node_path=f"node/{rec.node_id + 900_000}",
            breadcrumb=(
                ("Home", "/"),
                ("Library", "/library"),
                ("Publications", PUBLICATION_PREFIX),
            ),
            main=main,
            body_class="path-node page-node-type-publication",
            description=_collapse(rec.annotation)[:160],
        )

    def render_legacy(self, i: int, base_url: str) -> str:
        rec = self.record(i)
        base = base_url.rstrip("/")
        rows: list[str] = []

        def row(label: str, value: str) -> None:
            rows.append(
                f'<tr>\n  <td valign="top" class="abstractLabel"><strong>{label}:</strong></td>\n'
                f'  <td valign="top" class="abstractValue">{value}</td>\n</tr>\n'
            )

        gap = "&nbsp;" * 5 if rec.legacy_variant == "2010" else " "
        row(
            "NCJ Number",
            f'{html.escape(rec.ncj_display)}{gap}<a href="{base}/App/Publications/FindInLibrary'
            f'.aspx?ID={rec.legacy_id}" target="_blank">Find in a Library</a>',
        )
        if rec.title:
            row("Title", html.escape(rec.title))
        docs = "<br />".join(
            f'<a href="{base}{p}" target="_blank">{t}</a>' for t, p in rec.documents
        )
        if rec.legacy_variant == "2010" and docs:
            row("Document URL", docs)
        if rec.journal:
            row("Journal", html.escape(rec.journal.display))
        if rec.authors or rec.anon:
            row("Author(s)", html.escape("; ".join(p.name for p in rec.authors) or "ANON"))
        if rec.editors:
            row("Editor(s)", html.escape("; ".join(p.name for p in rec.editors)))
        if rec.corporate_authors:
            row(
                "Corporate Author",
                "<br />".join(f"{html.escape(n)}<br />{c}" for n, c in rec.corporate_authors),
            )
        if rec.published:
            row("Date Published", html.escape(rec.published.text))
        if rec.page_count is not None:
            row("Page Count", str(rec.page_count))
        if rec.sponsoring_agencies:
            row(
                "Sponsoring Agency",
                "<br />".join(
                    "<br />".join((html.escape(n), *addr)) for n, addr in rec.sponsoring_agencies
                ),
            )
        if rec.grant_numbers:
            row("Grant Number", "<br />".join(rec.grant_numbers))
        if rec.sale_source:
            row("Sale Source", "<br />".join(html.escape(line) for line in rec.sale_source))
        if rec.legacy_variant == "table" and docs:
            row("Document", docs)
        if rec.publication_type:
            row("Type", html.escape(rec.publication_type))
        if rec.publication_format:
            row("Format", html.escape(rec.publication_format))
        row("Language", rec.language)
        row("Country", rec.country)
        paragraphs = "<br /><br />\n".join(html.escape(b[1]) for b in rec.abstract if b[0] == "p")
        if rec.legacy_variant == "2010":
            inline = (
                '<div id="abstractText" class="abstractText">\n'
                f"  <b>Annotation:</b> {html.escape(rec.annotation)}<br />\n<br />\n"
                f"<b>Abstract:</b> {paragraphs}<br />\n</div>\n"
            )
        else:
            row("Annotation", html.escape(rec.annotation))
            row("Abstract", paragraphs)
            inline = ""
        record_html = (
            '<table id="abstractTable" class="abstractTable" border="0" cellpadding="3" '
            'cellspacing="0" width="100%">\n' + "".join(rows) + "</table>\n" + inline
        )
        return self._chrome.legacy_page(rec, record_html, base)

    def render_section(self, path: str, base_url: str) -> str | None:
        title = self.section_title(path)
        if title is None:
            return None
        rng = random.Random(_mix64(self._key ^ _mix64(_hash_path(path))))
        links = []
        for _ in range(8):
            j = rng.randrange(self.records)
            href = self.paths(j)["primary"]
            links.append(
                f'<li><a href="{base_url.rstrip("/")}{href}">'
                f"{html.escape(_collapse(self._title(j)[0]))}</a></li>\n"
            )
        main = (
            f'<h1 class="page-title">{html.escape(title)}</h1>\n'
            f'<div class="section-intro"><p>{html.escape(_paragraph(rng, 300))}</p>\n'
            f"<p>{html.escape(_paragraph(rng, 200))}</p></div>\n"
            '<section class="featured"><h2>Featured Publications</h2>\n'
            f"<ul>\n{''.join(links)}</ul></section>\n"
        )
        return self._chrome.current_page(
            head_title=f"{title} | Office of Justice Programs",
            canonical=f"{base_url.rstrip('/')}{path}",
            node_path=path.strip("/") or "node/1",
            breadcrumb=(("Home", "/"),),
            main=main,
            body_class="path-section",
        )

    def render_topic(self, k: int, base_url: str) -> str:
        path = self.topic_path(k)
        _, area, name = path.split("/")[1:]
        title = f"{_TOPIC_AREAS[_TOPIC_AREA_INDEX[area]]}: " + " ".join(
            w.capitalize() for w in name.split("-")
        )
        rng = random.Random(_mix64(self._key ^ _mix64(k * 31 + 5)))
        base = base_url.rstrip("/")
        links = []
        for _ in range(10):
            j = rng.randrange(self.records)
            links.append(
                f'<li><a href="{base}{self.listing_href(j)}">'
                f"{html.escape(_collapse(self._title(j)[0])) or '(untitled)'}</a></li>\n"
            )
        main = (
            f'<h1 class="page-title">{html.escape(title)}</h1>\n'
            '<div class="topic-overview"><h2>Overview</h2>'
            f"<p>{html.escape(_paragraph(rng, 500))}</p>"
            "</div>\n"
            '<section class="topic-publications"><h2>Publications and Abstracts</h2>\n'
            f"<ul>\n{''.join(links)}</ul></section>\n"
        )
        return self._chrome.current_page(
            head_title=f"{title} | Office of Justice Programs",
            canonical=f"{base}{path}",
            node_path=f"taxonomy/term/{1_000 + k}",
            breadcrumb=(("Home", "/"), ("Topics", f"{TOPIC_PREFIX}/{area}")),
            main=main,
            body_class="path-taxonomy page-topic",
        )

    def render_soft_404(self, base_url: str, path: str) -> str:
        main = (
            '<h1 class="page-title">Page not found</h1>\n'
            "<p>The requested page could not be found.</p>\n"
            '<p>Try the <a href="/ncjrs/virtual-library">NCJRS Virtual Library</a> search, or '
            'browse <a href="/ncjrs/virtual-library/abstracts">all abstracts</a>.</p>\n'
        )
        return self._chrome.current_page(
            head_title="Page not found | Office of Justice Programs",
            canonical=f"{base_url.rstrip('/')}{path}",
            node_path="system/404",
            breadcrumb=(("Home", "/"),),
            main=main,
            body_class="path-system",
        )

    def render_not_found(self, path: str) -> str:
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8" />'
            "<title>404 Not Found</title></head>\n<body><h1>Not Found</h1>\n"
            f"<p>The requested URL {html.escape(path)} was not found on this server.</p>\n"
            "</body></html>\n"
        )

    def with_options(self, **changes: Any) -> Site:
        """A new site with some options changed (same seed and records unless given)."""
        opts = replace(self.options, **changes)
        data = opts.to_dict()
        return Site(**data)


def _hash_path(path: str) -> int:
    """Stable (process-independent) hash of a string."""
    h = 0xCBF29CE484222325
    for byte in path.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & _M64
    return h


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _abstract_text(blocks: Sequence[Block]) -> str | None:
    parts = []
    for kind, content in blocks:
        if kind == "p":
            assert isinstance(content, str)
            parts.append(_collapse(content))
        else:
            parts.append("\n".join(_collapse(item) for item in content))
    return "\n\n".join(parts) or None


def _blocks_html(blocks: Sequence[Block]) -> str:
    out = []
    for kind, content in blocks:
        if kind == "p":
            assert isinstance(content, str)
            out.append(f"<p>{html.escape(content)}</p>")
        else:
            items = "".join(f"\n  <li>{html.escape(item)}</li>" for item in content)
            out.append(f"<ul>{items}\n</ul>")
    return "\n" + "\n".join(out) + "\n"


def _drupal_field(name: str, label: str, value_html: str, kind: str = "string") -> str:
    return (
        f'<div class="field field--name-field-{name} field--type-{kind} field--label-above">\n'
        f'  <div class="field__label">{label}</div>\n'
        f'  <div class="field__item">{value_html}</div>\n'
        "</div>\n"
    )


_NCJRS_BANNER: Final = (
    '<div class="ncjrs-banner">\n<h2 class="ncjrs-banner__title">NCJRS Virtual Library</h2>\n'
    "<p>The Virtual Library houses over 235,000 criminal justice resources, including all known "
    'OJP works.<br />\n<a href="/ncjrs/virtual-library">Click here to search the NCJRS Virtual '
    "Library</a></p>\n</div>\n"
)


# --------------------------------------------------------------------------------------------
# Chrome: navigation, banners, footers and inline settings around every page
# --------------------------------------------------------------------------------------------


class _Chrome:
    """Static page furniture, built once; only ``current_page`` / ``legacy_page`` vary."""

    def __init__(self) -> None:
        self.sections: dict[str, str] = {"/": "Office of Justice Programs", "/about": "About OJP"}
        menu = self._menu()
        self.nav = self._nav_html(menu)
        self.footer = self._footer_html()
        self.head_assets = self._head_assets()
        self.banner = _USWDS_BANNER
        self.settings_prefix, self.settings_suffix = self._settings_json()
        self.scripts = self._scripts()
        self.legacy_nav = self._legacy_nav()
        self.legacy_footer = _LEGACY_FOOTER

    def _add(self, title: str, path: str) -> tuple[str, str]:
        self.sections.setdefault(path, title)
        return title, path

    def _menu(self) -> list[tuple[str, list[tuple[str, str]]]]:
        topics = [
            self._add(a, f"{TOPIC_PREFIX}/{s}")
            for a, s in zip(_TOPIC_AREAS, _TOPIC_AREA_SLUGS, strict=True)
        ]
        funding_items = (
            "Current Funding Opportunities", "Apply for Funding", "Award Search",
            "Grant Management", "DOJ Grants Financial Guide", "Solicitation Resources",
            "Funding Resources", "Peer Review", "Post-Award Reporting", "Grants 101", "Closeout",
            "Training", "Grant Fraud, Waste & Abuse", "Tribal Funding", "Formula Grants",
            "Discretionary Grants", "Research Funding", "Fellowships", "Awards Made", "FAQs",
        )  # fmt: skip
        funding = [self._add(t, f"/funding/{slugify(t)}") for t in funding_items]
        programs = []
        for a in _CODE_A[:9]:
            for b in ("Justice", "Safety", "Reentry", "Assistance"):
                title = f"{a} {b} Program"
                programs.append(self._add(title, f"/program/{slugify(title)}"))
        news_items = (
            "Press Releases", "Speeches", "Blogs", "Events", "Media Advisories", "Newsletters",
            "Podcasts", "Videos", "Photo Gallery", "Testimony", "Features", "Social Media",
        )  # fmt: skip
        news = [self._add(t, f"/news/{slugify(t)}") for t in news_items]
        library = [
            self._add("NCJRS Virtual Library", "/ncjrs/virtual-library"),
            ("Abstracts", CURRENT_PREFIX),
            self._add("Publications", PUBLICATION_PREFIX),
            self._add("Library", "/library"),
            self._add("Downloads", "/library/downloads"),
            self._add("Abstracts Database Help", "/ncjrs/abstracts-database-help"),
            self._add("Obtain Documents", "/ncjrs/obtain-documents"),
            self._add("Data Sets", "/library/data-sets"),
            self._add("Multimedia", "/library/multimedia"),
            self._add("Research Reports", "/library/research-reports"),
            self._add("Fact Sheets", "/library/fact-sheets"),
            self._add("Journals", "/library/journals"),
        ]
        offices = (
            "Office of the Assistant Attorney General", "Bureau of Justice Assistance",
            "Bureau of Justice Statistics", "National Institute of Justice",
            "Office of Juvenile Justice and Delinquency Prevention", "Office for Victims of Crime",
            "SMART Office", "Office for Civil Rights", "Office of the Chief Financial Officer",
            "Office of General Counsel", "Office of Communications", "Office of Audit",
            "Assessment and Management", "Office of Administration", "Office of the Chief "
            "Information Officer", "Office of Priority Populations", "Leadership", "History",
            "Careers", "Contact Us", "Strategic Plan", "Performance Reports", "Organization Chart",
            "Budget", "Equal Employment Opportunity", "Privacy", "Regulations",
        )  # fmt: skip
        about = [self._add(t, f"/about/{slugify(t)}") for t in offices]
        return [
            ("Topics", topics),
            ("Funding", funding),
            ("Programs", programs),
            ("News &amp; Events", news),
            ("Library", library),
            ("About", about),
        ]

    @staticmethod
    def _nav_html(menu: list[tuple[str, list[tuple[str, str]]]]) -> str:
        out = [
            '<nav aria-label="Primary navigation" class="usa-nav" id="primary-nav">\n'
            '<div class="usa-nav__inner">\n<button type="button" class="usa-nav__close">'
            '<img src="/themes/custom/ojp/assets/img/usa-icons/close.svg" role="img" alt="Close" />'
            '</button>\n<ul class="usa-nav__primary usa-accordion">\n'
        ]
        for n, (heading, items) in enumerate(menu):
            out.append(
                '<li class="usa-nav__primary-item">\n'
                f'<button type="button" class="usa-accordion__button usa-nav__link" '
                f'aria-expanded="false" aria-controls="extended-mega-nav-section-{n}">'
                f"<span>{heading}</span></button>\n"
                f'<div id="extended-mega-nav-section-{n}" '
                'class="usa-nav__submenu usa-megamenu" hidden>\n'
                '<div class="grid-row grid-gap-4">\n'
            )
            for col in range(0, len(items), 12):
                out.append('<div class="usa-col"><ul class="usa-nav__submenu-list">\n')
                for title, path in items[col : col + 12]:
                    out.append(
                        f'<li class="usa-nav__submenu-item"><a href="{path}">'
                        f"<span>{html.escape(title)}</span></a></li>\n"
                    )
                out.append("</ul></div>\n")
            out.append("</div>\n</div>\n</li>\n")
        out.append(
            "</ul>\n"
            '<section aria-label="Search component"><form class="usa-search usa-search--small" '
            'role="search" action="/search/results" method="get"><label class="usa-sr-only" '
            'for="search-field">Search</label><input class="usa-input" id="search-field" '
            'type="search" name="keys" /><button class="usa-button" type="submit"><img '
            'src="/themes/custom/ojp/assets/img/usa-icons-bg/search--white.svg" '
            'class="usa-search__submit-icon" alt="Search" /></button></form></section>\n'
            "</div>\n</nav>\n"
        )
        return "".join(out)

    def _footer_html(self) -> str:
        groups = (
            ("Resources", ("Publications", "Abstracts Database", "Downloads", "Data & Statistics",
                           "Grants & Funding", "Training & Technical Assistance", "Topics A-Z",
                           "Programs", "Events", "Newsroom")),
            ("Policies", ("Accessibility", "Plain Language", "Privacy Policy", "Legal Policies "
                          "and Disclaimers", "Information Quality", "FOIA", "No FEAR Act",
                          "Vulnerability Disclosure Policy", "Site Map", "Subscribe")),
            ("Government", ("Justice.gov", "USA.gov", "Grants.gov", "SAM.gov", "Regulations.gov",
                            "Oversight.gov", "Inspector General", "Open Government",
                            "White House", "Data.gov")),
        )  # fmt: skip
        out = [
            '<footer class="usa-footer usa-footer--big" role="contentinfo">\n'
            '<div class="grid-container usa-footer__return-to-top"><a href="#">Return to top</a>'
            "</div>\n"
            '<div class="usa-footer__primary-section"><div class="grid-container">'
            '<div class="grid-row grid-gap">\n'
        ]
        for heading, items in groups:
            out.append(
                '<div class="mobile-lg:grid-col-6 desktop:grid-col-3">'
                '<section class="usa-footer__primary-content '
                'usa-footer__primary-content--collapsible">'
                f'<h4 class="usa-footer__primary-link">{html.escape(heading)}</h4>'
                '<ul class="usa-list usa-list--unstyled">\n'
            )
            for item in items:
                path = f"/{slugify(heading)}/{slugify(item)}"
                self._add(item, path)
                out.append(
                    f'<li class="usa-footer__secondary-link"><a href="{path}">'
                    f"{html.escape(item)}</a></li>\n"
                )
            out.append("</ul></section></div>\n")
        out.append(
            "</div></div></div>\n"
            '<div class="usa-footer__secondary-section"><div class="grid-container">\n'
            '<div class="usa-footer__logo grid-row mobile-lg:grid-col-6 mobile-lg:grid-gap-2">'
            '<img class="usa-footer__logo-img" src="/themes/custom/ojp/assets/img/ojp-seal.svg" '
            'alt="Office of Justice Programs seal" />'
            '<p class="usa-footer__logo-heading">Office of Justice Programs</p></div>\n'
            '<address class="usa-footer__address">810 Seventh Street NW, Washington, DC 20531 '
            '<a href="tel:1-202-307-0703">202-307-0703</a></address>\n'
            '<div class="usa-footer__social-links">'
            + "".join(
                f'<a class="usa-social-link usa-social-link--{s}" href="/news/social-media#{s}">'
                f"<span>{s.capitalize()}</span></a>"
                for s in ("facebook", "twitter", "youtube", "instagram", "linkedin", "rss")
            )
            + "</div>\n</div></div>\n"
            '<div class="usa-identifier"><section class="usa-identifier__section '
            'usa-identifier__section--masthead"><div class="usa-identifier__container">'
            '<p class="usa-identifier__identity-disclaimer">An official website of the '
            '<a href="/about">U.S. Department of Justice</a></p></div></section>'
            '<nav class="usa-identifier__section usa-identifier__section--required-links" '
            'aria-label="Important links"><ul class="usa-identifier__required-links-list">'
            + "".join(
                '<li class="usa-identifier__required-links-item">'
                '<a class="usa-identifier__required-link' + '" '
                f'href="/policies/{slugify(t)}">{t}</a></li>'
                for t in (
                    "About OJP",
                    "Accessibility support",
                    "FOIA requests",
                    "No FEAR Act data",
                    "Office of the Inspector General",
                    "Performance reports",
                    "Privacy policy",
                )
            )
            + "</ul></nav></div>\n</footer>\n"
        )
        return "".join(out)

    @staticmethod
    def _head_assets() -> str:
        css = [
            '<link rel="stylesheet" media="all" '
            f'href="/sites/g/files/xyckuh241/files/css/css_{_hex(n, 43)}.css'
            f'?delta={n}&amp;language=en&amp;theme=ojp&amp;include={_hex(n + 50, 120)}" />\n'
            for n in range(6)
        ]
        return (
            '<meta name="viewport" content="width=device-width, initial-scale=1.0" />\n'
            '<meta name="Generator" content="Drupal 10 (https://www.drupal.org)" />\n'
            '<meta name="MobileOptimized" content="width" />\n'
            '<meta name="HandheldFriendly" content="true" />\n'
            '<link rel="icon" href="/themes/custom/ojp/favicon.ico" '
            'type="image/vnd.microsoft.icon" />\n'
            + "".join(css)
            + '<script src="/core/assets/vendor/modernizr/modernizr.min.js?v=3.11.7"></script>\n'
            '<script async src="https://dap.digitalgov.gov/Universal-Federated-Analytics-Min.js'
            '?agency=DOJ&amp;subagency=OJP" id="_fed_an_ua_tag"></script>\n'
        )

    @staticmethod
    def _settings_json() -> tuple[str, str]:
        modules = _words(
            "core ojp uswds views extlink google_tag ckeditor5 system paragraphs facets "
            "search_api better_exposed_filters ctools layout_builder media node taxonomy token"
        )
        parts = _words(
            "base global-styling drupal.ajax tabledrag once components messages accordion "
            "banner forms"
        )
        libraries = [f"{module}/{part}" for module in modules for part in parts]
        prefix = '{"path":{"baseUrl":"\\/","pathPrefix":"","currentPath":"'
        suffix_data = {
            "currentPathIsAdmin": False,
            "isFront": False,
            "currentLanguage": "en",
            "pluralDelimiter": "\u0003",
            "suppressDeprecationErrors": True,
            "ajaxPageState": {
                "libraries": ",".join(libraries),
                "theme": "ojp",
                "theme_token": None,
            },
            "ajaxTrustedUrl": {
                "/search/results": True,
                "/ncjrs/virtual-library/search": True,
            },
            "gtag": {
                "tagId": "G-XXXXXXXXXX",
                "consentMode": False,
                "otherIds": [],
                "events": [],
                "additionalConfigInfo": [],
            },
            "data": {
                "extlink": {
                    "extTarget": True,
                    "extTargetNoOverride": False,
                    "extNofollow": False,
                    "extNoreferrer": True,
                    "extFollowNoOverride": False,
                    "extClass": "ext",
                    "extLabel": "(link is external)",
                    "extImgClass": False,
                    "extSubdomains": True,
                    "extExclude": "(.\\.gov)|(.\\.mil)",
                    "extInclude": "",
                    "extCssExclude": "",
                    "extCssExplicit": "",
                    "extAlert": True,
                    "extAlertText": "You are now leaving the Office of Justice Programs website. "
                    "The link you selected is not maintained by OJP; OJP is not responsible for "
                    "its content, privacy policy, or accessibility.",
                    "mailtoClass": "0",
                    "mailtoLabel": "(link sends email)",
                    "extUseFontAwesome": False,
                    "extIconPlacement": "append",
                    "extFaLinkClasses": "fa fa-external-link",
                    "extFaMailtoClasses": "fa fa-envelope-o",
                    "whitelistedDomains": [
                        "ojp.gov",
                        "justice.gov",
                        "nij.gov",
                        "bjs.gov",
                        "ojjdp.gov",
                        "ovc.gov",
                        "bja.gov",
                        "smart.gov",
                    ],
                }
            },
            "views": {
                "ajax_path": "/views/ajax",
                "ajaxViews": {
                    f"views_dom_id:{_hex(n, 64)}": {
                        "view_name": "ncjrs_abstracts",
                        "view_display_id": f"block_{n}",
                        "view_args": "",
                        "view_path": "/node/1",
                        "view_base_path": "ncjrs",
                        "view_dom_id": _hex(n, 64),
                        "pager_element": 0,
                    }
                    for n in range(4)
                },
            },
            "user": {"uid": 0, "permissionsHash": _hex(99, 64)},
        }
        suffix = '"},' + json.dumps(suffix_data, separators=(",", ":"))[1:].replace("/", "\\/")
        return prefix, suffix

    @staticmethod
    def _scripts() -> str:
        return (
            '<script src="/sites/g/files/xyckuh241/files/js/js_'
            + _hex(7, 43)
            + ".js?scope=footer&amp;delta=0&amp;language=en&amp;theme=ojp&amp;include="
            + _hex(8, 96)
            + '"></script>\n'
            "<script>\n(function (w, d, s, l, i) {\n  w[l] = w[l] || [];\n"
            "  w[l].push({'gtm.start': new Date().getTime(), event: 'gtm.js'});\n"
            "  var f = d.getElementsByTagName(s)[0], j = d.createElement(s),\n"
            "    dl = l != 'dataLayer' ? '&l=' + l : '';\n  j.async = true;\n"
            "  j.src = 'https://www.googletagmanager.com/gtm.js?id=' + i + dl;\n"
            "  f.parentNode.insertBefore(j, f);\n})(window, document, 'script', 'dataLayer', "
            "'GTM-XXXXXXX');\n</script>\n"
            "<script>\n  document.documentElement.className = "
            "document.documentElement.className.replace('no-js', 'js');\n"
            "  window.addEventListener('load', function () {\n"
            "    var links = document.querySelectorAll('a[href$=\".pdf\"]');\n"
            "    for (var n = 0; n < links.length; n++) { links[n].setAttribute('data-type', "
            "'Downloads'); }\n  });\n</script>\n"
        )

    def _legacy_nav(self) -> str:
        items = []
        for heading, subs in (
            ("Topics", _TOPIC_AREAS),
            ("Publications", ("Publications by Topic", "Most Popular", "New This Week",
                              "Abstracts Database", "Library Collection", "Journals")),
            ("Spotlight", ("Corrections", "Courts", "Drugs", "Juvenile Justice", "Victims")),
            ("About NCJRS", ("Register", "Contact Us", "Help", "Site Map", "Privacy Policy")),
        ):  # fmt: skip
            items.append(f'<li class="navHeading">{heading}<ul>\n')
            for sub in subs:
                path = f"/App/{slugify(heading)}/{slugify(sub)}.aspx"
                self._add(sub, path)
                items.append(f'<li><a href="{path}">{html.escape(sub)}</a></li>\n')
            items.append("</ul></li>\n")
        return '<ul id="leftNav" class="leftNav">\n' + "".join(items) + "</ul>\n"

    def current_page(
        self,
        *,
        head_title: str,
        canonical: str,
        node_path: str,
        breadcrumb: Sequence[tuple[str, str]],
        main: str,
        body_class: str,
        description: str = "",
    ) -> str:
        crumbs = "".join(
            f'<li class="usa-breadcrumb__list-item"><a href="{href}" class="usa-breadcrumb__link">'
            f"<span>{label}</span></a></li>"
            for label, href in breadcrumb
        )
        settings = self.settings_prefix + node_path.replace("/", "\\/") + self.settings_suffix
        return (
            '<!DOCTYPE html>\n<html lang="en" dir="ltr" prefix="og: https://ogp.me/ns#">\n<head>\n'
            '<meta charset="utf-8" />\n'
            f'<meta name="description" content="{html.escape(description)}" />\n'
            f'<link rel="canonical" href="{html.escape(canonical)}" />\n'
            f'<meta property="og:title" content="{html.escape(head_title)}" />\n'
            + self.head_assets
            + f"<title>{html.escape(head_title)}</title>\n</head>\n"
            f'<body class="{body_class}">\n'
            '<a href="#main-content" class="usa-sr-only focusable">Skip to main content</a>\n'
            + self.banner
            + '<div class="usa-overlay"></div>\n<header class="usa-header usa-header--extended">\n'
            '<div class="usa-navbar"><div class="usa-logo" id="extended-logo">'
            '<em class="usa-logo__text"><a href="/" title="Home" rel="home">'
            '<img src="/themes/custom/ojp/assets/img/ojp-logo.svg" '
            'alt="Office of Justice Programs" /></a></em></div>\n'
            '<button type="button" class="usa-menu-btn">Menu</button></div>\n'
            + self.nav
            + "</header>\n"
            '<nav class="usa-breadcrumb" aria-label="Breadcrumbs"><ol class="usa-breadcrumb__list">'
            + crumbs
            + "</ol></nav>\n"
            '<main id="main-content" class="main-content" role="main">\n'
            '<div class="grid-container"><div class="grid-row grid-gap">\n'
            '<div class="region region-content desktop:grid-col-12">\n'
            + main
            + "</div>\n</div></div>\n</main>\n"
            + self.footer
            + self.scripts
            + '<script type="application/json" data-drupal-selector="drupal-settings-json">'
            + settings
            + "</script>\n</body>\n</html>\n"
        )

    def legacy_page(self, rec: GeneratedRecord, record_html: str, base: str) -> str:
        vs = random.Random(rec.viewstate_seed)
        viewstate = base64.b64encode(vs.randbytes(1_800 + vs.randrange(1_500))).decode("ascii")
        validation = base64.b64encode(vs.randbytes(120)).decode("ascii")
        return (
            '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
            '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
            '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n<head>\n'
            "<title>NCJRS Abstract - National Criminal Justice Reference Service</title>\n"
            '<meta http-equiv="Content-Type" content="text/html; charset=utf-8" />\n'
            '<meta name="keywords" content="NCJRS, abstract, criminal justice, juvenile justice, '
            'victims, drugs, corrections, courts, law enforcement" />\n'
            '<link href="/App/css/ncjrs.css" rel="stylesheet" type="text/css" />\n'
            '<link href="/App/css/print.css" rel="stylesheet" type="text/css" media="print" />\n'
            '<script type="text/javascript" src="/App/js/global.js"></script>\n'
            "</head>\n<body>\n"
            f'<form name="aspnetForm" method="post" action="abstract.aspx?ID={rec.legacy_id}" '
            'id="aspnetForm">\n<div>\n'
            '<input type="hidden" name="__EVENTTARGET" id="__EVENTTARGET" value="" />\n'
            '<input type="hidden" name="__EVENTARGUMENT" id="__EVENTARGUMENT" value="" />\n'
            f'<input type="hidden" name="__VIEWSTATE" id="__VIEWSTATE" value="{viewstate}" />\n'
            "</div>\n"
            '<a href="#content" class="skipnav">skip navigation</a>\n'
            '<table id="layoutTable" width="100%" border="0" cellspacing="0" cellpadding="0">\n'
            '<tr><td colspan="2" id="header"><a href="/"><img src="/App/images/ncjrs_logo.gif" '
            'alt="National Criminal Justice Reference Service" /></a>\n'
            '<div id="topLinks"><a href="/App/about-ncjrs/register.aspx">Register</a> | '
            '<a href="/App/about-ncjrs/contact-us.aspx">Contact Us</a> | '
            '<a href="/App/about-ncjrs/help.aspx">Help</a></div></td></tr>\n'
            '<tr><td id="leftColumn" valign="top" width="180">\n'
            + self.legacy_nav
            + '</td>\n<td id="content" valign="top">\n'
            '<div class="registerBox"><h3>Register for Latest Research</h3>\n'
            "<p><strong>Stay Informed</strong><br />\nRegister with NCJRS to receive NCJRS's "
            "biweekly e-newsletter JUSTINFO and additional periodic emails from NCJRS and the "
            "NCJRS federal sponsors that highlight the latest research published or sponsored by "
            "the Office of Justice Programs.</p></div>\n"
            '<h1 class="pageTitle">NCJRS Abstract</h1>\n'
            '<p class="intro">The document referenced below is part of the NCJRS Virtual Library '
            'collection. To conduct further searches of the collection, visit the <a href="'
            '/ncjrs/virtual-library">Virtual Library</a>. See the '
            '<a href="/ncjrs/obtain-documents">Obtain Documents</a> page for direction on how '
            "to access resources online, via mail, through interlibrary loans, or in a local "
            "library.</p>\n"
            + record_html
            + '<p class="backLinks"><a href="/App/publications/publications-by-topic.aspx">Back to '
            "Search Results</a></p>\n"
            "</td></tr>\n" + self.legacy_footer + "</table>\n<div>\n"
            '<input type="hidden" name="__EVENTVALIDATION" id="__EVENTVALIDATION" '
            f'value="{validation}" />\n'
            "</div>\n</form>\n</body>\n</html>\n"
        )


def _hex(n: int, length: int) -> str:
    out = ""
    x = n
    while len(out) < length:
        x = _mix64(x + 0x5EED)
        out += f"{x:016x}"
    return out[:length]


_USWDS_BANNER: Final = (
    '<section class="usa-banner" aria-label="Official website of the United States government">\n'
    '<div class="usa-accordion"><header class="usa-banner__header">'
    '<div class="usa-banner__inner">\n'
    '<div class="grid-col-auto"><img aria-hidden="true" class="usa-banner__header-flag" '
    'src="/themes/custom/ojp/assets/img/us_flag_small.png" alt="U.S. flag" /></div>\n'
    '<div class="grid-col-fill tablet:grid-col-auto" aria-hidden="true">'
    '<p class="usa-banner__header-text">An official website of the United States government, '
    "Department of Justice.</p>\n"
    '<p class="usa-banner__header-action">Here\'s how you know</p></div>\n'
    '<button type="button" class="usa-accordion__button usa-banner__button" aria-expanded="false" '
    'aria-controls="gov-banner-default"><span class="usa-banner__button-text">Here\'s how you know'
    "</span></button>\n</div></header>\n"
    '<div class="usa-banner__content usa-accordion__content" id="gov-banner-default" hidden>\n'
    '<div class="grid-row grid-gap-lg">\n'
    '<div class="usa-banner__guidance tablet:grid-col-6"><img class="usa-banner__icon '
    'usa-media-block__img" src="/themes/custom/ojp/assets/img/icon-dot-gov.svg" role="img" '
    'alt="" aria-hidden="true" /><div class="usa-media-block__body"><p><strong>Official websites '
    "use .gov</strong><br />A <strong>.gov</strong> website belongs to an official government "
    "organization in the United States.</p></div></div>\n"
    '<div class="usa-banner__guidance tablet:grid-col-6"><img class="usa-banner__icon '
    'usa-media-block__img" src="/themes/custom/ojp/assets/img/icon-https.svg" role="img" alt="" '
    'aria-hidden="true" /><div class="usa-media-block__body"><p><strong>Secure .gov websites use '
    "HTTPS</strong><br />A <strong>lock</strong> or <strong>https://</strong> means you've safely "
    "connected to the .gov website. Share sensitive information only on official, secure "
    "websites.</p></div></div>\n</div>\n</div>\n</div>\n</section>\n"
)

_LEGACY_FOOTER: Final = (
    '<tr><td colspan="2" id="footer">\n'
    '<div class="footerLinks"><a href="/App/about-ncjrs/contact-us.aspx">Contact Us</a> | '
    '<a href="/App/about-ncjrs/privacy-policy.aspx">Privacy Policy</a> | '
    '<a href="/App/about-ncjrs/site-map.aspx">Site Map</a> | '
    '<a href="/App/about-ncjrs/help.aspx">Help</a></div>\n'
    "<p>NCJRS is a federally funded resource offering justice and substance abuse information to "
    "support research, policy, and program development worldwide. Abstracts, Publications and "
    "Downloads are provided as a service of the Office of Justice Programs.</p>\n"
    "</td></tr>\n"
)


@lru_cache(maxsize=1)
def _chrome() -> _Chrome:
    return _Chrome()
