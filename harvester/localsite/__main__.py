"""``python -m harvester.localsite --records N --seed S --port P``: serve until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Sequence

from harvester.localsite.generator import CURRENT_PREFIX, Site
from harvester.localsite.server import ServerOptions, child_main, run_server, split_options


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harvester.localsite",
        description="Serve a local NCJRS-style site (deterministic from --records and --seed).",
    )
    p.add_argument("--records", type=int, default=1000, help="number of records (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks one)")
    p.add_argument("--bad-share", type=float, help="share of quarantine pages (default 0.01)")
    p.add_argument("--legacy-share", type=float, help="share of legacy pages (default 0.15)")
    p.add_argument("--per-sitemap", type=int, help="URLs per sitemap page (default 2000)")
    p.add_argument("--gzip", action="store_true", help="gzip responses when accepted")
    p.add_argument("--options", default=None, help="more options as a JSON object")
    # internal: run as the child process of serve_site()
    p.add_argument("--control", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--config", default="{}", help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.control:
        child_main(args.records, args.seed, args.host, args.port, json.loads(args.config))
        return 0
    options: dict[str, object] = json.loads(args.options) if args.options else {}
    for name in ("bad_share", "legacy_share", "per_sitemap"):
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    if args.gzip:
        options["gzip"] = True
    site_kwargs, server_kwargs = split_options(options)
    site = Site(records=args.records, seed=args.seed, **site_kwargs)

    def listening(host: str, port: int) -> None:
        host_url = f"http://{host}:{port}"
        print(host_url, flush=True)
        print(
            f"serving {site.records} records (seed {site.seed}); "
            f"start at {host_url}/sitemap.xml or {host_url}{CURRENT_PREFIX}; Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )

    options_obj = ServerOptions(**server_kwargs)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_server(site, args.host, args.port, options_obj, on_listening=listening))
    print("stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
