"""Entry points (robots.txt, sitemaps, sitemap indexes, listings): reading them safely, the
hosts and ports a run stays on, and why a request came to nothing.

Pure functions and values, plus the offsite filter the crawl uses instead of Scrapy's:

``Scope``
    The hosts (with the live site's sister hosts) AND ports the run was pointed at.
    ``Scope.refusal(url)`` says why a URL listed by an entry point must not be fetched:
    ``not_http`` (ftp:, javascript:, mailto: ...) or ``offsite`` (another host, or another
    port of the same host).
``OffsiteMiddleware``
    Scrapy's, with the port check, and filtering when a request is downloaded rather than when
    it is scheduled: Scrapy's drops an offsite request at scheduling time without calling its
    errback, so an offsite redirect or sitemap vanished without a trace.
``read_sitemap``
    A sitemap or sitemap index body (gzip or not) -> its entries, and what is wrong with it.
    Entities are never expanded (a "billion laughs" DTD costs nothing); XML that does not parse
    gives the entries before the damage and says it is damaged.
``failure_reason`` / ``ignored_kind``
    Why a request failed or was ignored, in the words of ``models.GAP_REASONS``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import lxml.etree
from scrapy import Request, Spider
from scrapy.downloadermiddlewares.offsite import OffsiteMiddleware as ScrapyOffsiteMiddleware
from scrapy.exceptions import (
    DownloadCancelledError,
    DownloadTimeoutError,
    IgnoreRequest,
    ResponseDataLossError,
)
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils.gz import gunzip
from twisted.internet.error import TimeoutError as TwistedTimeoutError
from twisted.python.failure import Failure
from twisted.web._newclient import ResponseFailed

from harvester.errors import SitemapUnreadable
from harvester.urls import allowed_domains

_DEFAULT_PORTS = {"http": 80, "https": 443}
GZIP_MAGIC = b"\x1f\x8b\x08"


# --- Scope: hosts and ports ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scope:
    domains: tuple[str, ...]
    ports: frozenset[int]

    @classmethod
    def of(cls, urls: Iterable[str]) -> Scope:
        """The scope of a run started at ``urls``. A start URL on a default port allows both
        default ports: http and https of one site are the same site."""
        urls = list(urls)
        ports: set[int] = set()
        for url in urls:
            port = _port(url)
            if port is None:
                continue
            ports.update(_DEFAULT_PORTS.values() if port in _DEFAULT_PORTS.values() else (port,))
        return cls(tuple(allowed_domains(urls)), frozenset(ports))

    def refusal(self, url: str) -> str | None:
        """None when ``url`` may be fetched; else ``not_http`` or ``offsite``."""
        parts = urlsplit(url.strip())
        if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
            return "not_http"
        host = parts.hostname.rstrip(".").lower()
        if self.domains and not any(host == d or host.endswith(f".{d}") for d in self.domains):
            return "offsite"
        port = _port(url)
        if port is None:
            return "not_http"  # a port that is not a number
        if self.ports and port not in self.ports:
            return "offsite"
        return None


def _port(url: str) -> int | None:
    parts = urlsplit(url.strip())
    try:
        explicit = parts.port
    except ValueError:
        return None
    return explicit if explicit is not None else _DEFAULT_PORTS.get(parts.scheme.lower())


class OffsiteMiddleware(ScrapyOffsiteMiddleware):
    """Scrapy's offsite filter with ports (the spider's ``scope``), applied at download time
    so that the request's errback hears of it (see the module docstring)."""

    def request_scheduled(self, request: Request, spider: Spider) -> None:
        return None

    def process_request(self, request: Request, spider: Spider | None = None) -> None:
        # Unlike Scrapy's, dont_filter does not let a request off the run's hosts and ports.
        assert self.crawler.spider is not None
        if request.meta.get("allow_offsite") or self.should_follow(request, self.crawler.spider):
            return
        self.stats.inc_value("offsite/filtered")
        parts = urlsplit(request.url)
        raise IgnoreRequest(f"Filtered offsite request to {parts.netloc!r}")

    def should_follow(self, request: Request, spider: Spider) -> bool:
        scope = getattr(spider, "scope", None)
        if not isinstance(scope, Scope):
            return super().should_follow(request, spider)
        return scope.refusal(request.url) != "offsite"


# --- Why a request came to nothing --------------------------------------------------------


def ignored_kind(failure: Failure) -> str | None:
    """For an ignored request (not an HTTP error): robots, offsite, too_large,
    redirect_limit, budget or other. None when the failure is not an ignored request."""
    if not isinstance(failure.value, IgnoreRequest) or isinstance(failure.value, HttpError):
        return None
    message = failure.getErrorMessage()
    if "robots.txt" in message:
        return "robots"
    if "offsite" in message:
        return "offsite"
    if "max redirections" in message:
        return "redirect_limit"
    if "DOWNLOAD_MAXSIZE" in message or "max size" in message:
        return "too_large"
    if "request budget" in message:
        return "budget"
    if CRAWL_CLOSING in message:
        return "closing"
    return "other"


# What a request dropped because the crawl closes while it waited says (harvester.sharedrate).
CRAWL_CLOSING = "the crawl is closing"

_IGNORED_REASONS = {
    "robots": "robots_blocked",
    "offsite": "offsite_redirect",
    "too_large": "too_large",
    "redirect_limit": "redirect_loop",
}


def failure_reason(failure: Failure) -> str | None:
    """Why a request failed, as a ``models.GAP_REASONS`` value (None: the request budget was
    spent, or the crawl was closing before the request could leave: nothing is wrong with the
    page, and no failure is recorded, so the next run, or a distributed run's reconcile, asks
    for it again)."""
    kind = ignored_kind(failure)
    if kind in ("budget", "closing"):
        return None
    if kind is not None:
        return _IGNORED_REASONS.get(kind, "fetch_failed")
    if isinstance(failure.value, (DownloadTimeoutError, TwistedTimeoutError)):
        return "timeout"
    if isinstance(failure.value, ResponseDataLossError):
        return "data_loss"
    if isinstance(failure.value, DownloadCancelledError):
        return "too_large"  # the download handler's DOWNLOAD_MAXSIZE
    if isinstance(failure.value, ResponseFailed) and "DataLoss" in repr(failure.value):
        return "data_loss"
    return "fetch_failed"


# --- Reading sitemaps ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SitemapDocument:
    kind: str  # "urlset" or "sitemapindex"
    entries: list[tuple[str, str | None]]  # (loc, lastmod text) as listed
    damage: str | None = None  # "entity_declarations" or "broken_xml": entries may be missing
    damage_detail: str | None = None


def read_sitemap(body: bytes, max_size: int) -> SitemapDocument:
    """A sitemap or sitemap index (gzip-compressed or not); raises ``SitemapUnreadable``."""
    if body.startswith(GZIP_MAGIC):
        try:
            body = gunzip(body, max_size=max_size)
        except ValueError as error:  # scrapy.utils._compression's max-size error
            raise SitemapUnreadable("too_large", f"inflates beyond {max_size} bytes") from error
        except (OSError, EOFError) as error:  # a corrupt gzip stream
            raise SitemapUnreadable("not_xml", f"bad gzip data ({error})") from error
    # Scrapy's Sitemap parser options: recover what parses, never expand an entity, never
    # fetch a DTD.
    parser = lxml.etree.XMLParser(
        recover=True,
        resolve_entities=False,
        no_network=True,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )
    try:
        root = lxml.etree.fromstring(body, parser)
    except lxml.etree.XMLSyntaxError as error:
        raise SitemapUnreadable("not_xml", str(error)) from error
    if root is None:
        raise SitemapUnreadable("not_xml", _first_error(parser) or "no XML element")
    kind = lxml.etree.QName(root).localname
    if kind not in ("urlset", "sitemapindex"):
        raise SitemapUnreadable("not_a_sitemap", f"its root element is <{kind}>")
    child = "url" if kind == "urlset" else "sitemap"
    entries: list[tuple[str, str | None]] = []
    for element in root:
        if not isinstance(element.tag, str) or lxml.etree.QName(element).localname != child:
            continue
        values = {
            lxml.etree.QName(part).localname: (part.text or "").strip()
            for part in element
            if isinstance(part.tag, str)
        }
        if location := values.get("loc"):
            entries.append((location, values.get("lastmod") or None))
    damage = detail = None
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        # A sitemap never needs one: at best noise, at worst a "billion laughs".
        damage, detail = "entity_declarations", "declares XML entities (not expanded)"
    elif first_error := _first_error(parser):
        damage, detail = "broken_xml", first_error
    return SitemapDocument(kind, entries, damage, detail)


def _first_error(parser: lxml.etree.XMLParser) -> str | None:
    for entry in parser.error_log:
        if entry.level >= lxml.etree.ErrorLevels.ERROR:
            return f"line {entry.line}: {entry.message}"
    return None
