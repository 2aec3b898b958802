"""Benchmarks of the harvester: development support, not part of the installed package.

Run from a checkout (the repository root on ``sys.path``) with the ``bench`` extra installed:
``python -m benchmarks <name> [options]`` or ``python -m benchmarks.<name> [options]``.

- parse: pages/s of judging a page (parse, normalize, validate, hash) against plain lxml;
- crawl: end-to-end crawl against a bare Scrapy spider and a naive script (A/B/A/B), peak RSS
  growth with --memory, a cProfile of the crawl process with --profile;
- incremental: what a scheduled re-run costs;
- storage: bytes per record of raw pages and versions, and re-parse time;
- search, export: search latency and export peak RSS on a generated database.

docs/performance.md has the current figures and the targets.
"""
