"""Which URLs are record pages, and how an NCJ number becomes a URL.

Paths, not hosts, identify a record page, so mirrors and a local test site (127.0.0.1) work the
same as www.ojp.gov.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

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
