"""Which URLs are record pages, and how an NCJ number becomes a URL.

Paths, not hosts, identify a record page, so mirrors and a local test site (127.0.0.1) work the
same as www.ojp.gov.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from w3lib.url import canonicalize_url

RECORD_URL = re.compile(
    r"""^https?://[^/]+(?:
        (?:/ncjrs/virtual-library/abstracts             # current ojp.gov record pages
          | /library/publications)                      # bureau publication pages
        /(?!search$|list$)[^/?#.]+/?(?:\#.*)?            # a slug; no query (listings), no feed
      | /App/Publications/abstract\.aspx\?(?:.*&)?id=\d+(?:&.*)?(?:\#.*)?   # legacy pages
      | /App/abstractdb/AbstractDBDetails\.aspx\?(?:.*&)?id=\d+(?:&.*)?(?:\#.*)?
    )$""",
    re.IGNORECASE | re.VERBOSE,
)

LIVE_SITE_ROBOTS = "https://www.ojp.gov/robots.txt"
LEGACY_NCJ_URL_TEMPLATE = "https://www.ncjrs.gov/App/Publications/abstract.aspx?ID={ncj}"
# The live collection moved from ncjrs.gov to ojp.gov (and its bureau sub-sites); legacy URLs
# redirect across them, so a crawl that starts on one must be allowed onto the other.
_SITE_FAMILY = ("ojp.gov", "ncjrs.gov")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# A URL with nothing for percent-encoding normalisation to change.
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[A-Za-z0-9._~:/?=&@!$'()*+,;-]*(?:#.*)?")
# ASP.NET (the legacy ncjrs.gov pages) treats paths and query keys case-insensitively.
_LEGACY_PATH = re.compile(r"\.aspx$", re.IGNORECASE)


def is_record_url(url: str) -> bool:
    return bool(RECORD_URL.match(url))


def ncj_url(template: str, ncj_number: int) -> str:
    return template.format(ncj=ncj_number)


def allowed_domains(urls: list[str]) -> list[str]:
    """The hosts a crawl that starts at ``urls`` may visit."""
    domains: list[str] = []
    for url in urls:
        host = (urlsplit(url).hostname or "").rstrip(".")
        names = _SITE_FAMILY if host.endswith(_SITE_FAMILY) else (host,)
        for name in names:
            if name and name not in domains:
                domains.append(name)
    return domains


def canonical_url(url: str) -> str:
    """The one spelling of a page's URL that the database keys URL state on.

    ``https://WWW.ojp.gov.:443/x/`` and ``https://ojp.gov/x`` are one page, and so are
    ``abstract.aspx?ID=5`` and ``abstract.aspx?id=5``: host case, a ``www.`` prefix, a
    trailing dot, the default port, a trailing slash, query order and percent-encoding
    variants, the fragment and, on legacy ASP.NET pages, path and query-key case are dropped.
    The scheme is kept: it is what the site answered on.
    """
    url = url.strip()
    if "&" in url or not _PLAIN.fullmatch(url):
        # Percent-encoding and query-order variants: w3lib's full canonicalisation (slow,
        # so only for URLs that need it; sitemaps list plain URLs by the ten thousand).
        url = canonicalize_url(url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".").lower().removeprefix("www.")
    netloc = host
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(scheme):
        netloc = f"{host}:{parts.port}"
    path = parts.path.rstrip("/") or "/"
    query = parts.query
    if _LEGACY_PATH.search(path):
        path = path.lower()
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(sorted((key.lower(), value) for key, value in pairs))
    return urlunsplit((scheme, netloc, path, query, ""))
