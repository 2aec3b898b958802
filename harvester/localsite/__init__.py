"""A local NCJRS-style website for tests, demos and benchmarks.

``serve_site(records=N, seed=S)`` runs it in a child process; ``Site`` generates the same
records, pages and truth in-process. ``python -m harvester.localsite --records N --seed S``
serves it in the foreground.
"""

from harvester.localsite.generator import GOLDEN_KEYS, GeneratedRecord, Site, SiteOptions, slugify
from harvester.localsite.server import (
    ROUTES,
    LocalSiteApp,
    RequestLogEntry,
    Response,
    Route,
    ServerOptions,
    SiteHandle,
    run_server,
    serve_site,
    start_site,
)

__all__ = [
    "GOLDEN_KEYS",
    "ROUTES",
    "GeneratedRecord",
    "LocalSiteApp",
    "RequestLogEntry",
    "Response",
    "Route",
    "ServerOptions",
    "Site",
    "SiteHandle",
    "SiteOptions",
    "run_server",
    "serve_site",
    "slugify",
    "start_site",
]
