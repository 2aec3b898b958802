"""`python -m benchmarks <name> [options]`: run one benchmark (see benchmarks/__init__.py)."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = (
    "parse",
    "crawl",
    "incremental",
    "storage",
    "search",
    "export",
    "reparse",
    "distributed",
)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHMARKS:
        print(f"usage: python -m benchmarks {{{','.join(BENCHMARKS)}}} [options]", file=sys.stderr)
        return 2
    name, options = argv[0], argv[1:]
    if name in ("search", "export"):  # one module, two benchmarks on one generated database
        from benchmarks.search import main as search_main

        return search_main([name, *options])
    module = importlib.import_module(f"benchmarks.{name}")
    return int(module.main(options))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
