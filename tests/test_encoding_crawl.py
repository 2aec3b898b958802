"""End to end: `scrapy crawl ncjrs` over pages whose charset is wrong or undeclared.

A small HTTP server on 127.0.0.1 serves the frozen fixture pages' raw bytes with the
Content-Type header each fault needs; the crawl stores what the pages meant, records the
repairs, and quarantines the page whose bytes are lost (reason ``encoding``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from harvester import models
from tests.support import PAGES, golden, scrapy_crawl

# Fixture page -> the Content-Type header it is served with (its golden file's).
SERVED = [
    "undeclared_cp1252_90101",
    "header_latin1_body_utf8_90102",
    "header_utf8_body_latin1_90103",
    "mixed_bytes_90104",
    "mojibake_source_90105",
    "deep_300_90106",
    "swallowed_90107",
]


class _Pages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        name = self.path.strip("/")
        if name not in SERVED:
            self.send_error(404)
            return
        body = (PAGES / f"{name}.html").read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", golden(name)["content_type"])
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # the crawl's log is the one to read
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def authors(session: Session, ncj_number: int) -> list[str]:
    return list(
        session.scalars(
            select(models.RecordContributor.name_as_shown)
            .where(models.RecordContributor.ncj_number == ncj_number)
            .where(models.RecordContributor.role == "author")
            .order_by(models.RecordContributor.position)
        )
    )


def test_crawl_stores_text_as_the_pages_meant_it(
    server: str, database_url: str, engine_for: Engine
) -> None:
    urls = ",".join(f"{server}/{name}" for name in SERVED)
    done = scrapy_crawl(database_url, f"url={urls}")
    assert done.returncode == 0, done.stderr[-3000:]

    with Session(engine_for) as session:
        records = {r.ncj_number: r for r in session.scalars(select(models.Record))}
        assert sorted(records) == [90101, 90102, 90103, 90105, 90106, 90107]
        assert authors(session, 90101) == ["José Núñez", "François Müller"]
        assert records[90101].title == "Policía y sociedad: el caso de Núñez — «Estudios» 1983"
        assert records[90101].text_repairs is None  # the fallback is the standard, not a repair
        agencies = session.scalars(
            select(models.RecordAgency.name_as_shown)
            .where(models.RecordAgency.ncj_number == 90101)
            .order_by(models.RecordAgency.position)
        ).all()
        assert agencies == ["Home Office Research Unit"]
        assert authors(session, 90102) == ["Hans Müller", "Anders Ångström"]
        assert records[90102].text_repairs == [
            "declared cp1252 (header), but the body is valid UTF-8"
        ]
        assert authors(session, 90103) == ["Hélène Müller"]
        assert records[90103].text_repairs == [
            "declared utf-8 (header), but no byte of the body is UTF-8: read as windows-1252"
        ]
        assert authors(session, 90105) == ["João Gonçalves", "María Núñez"]
        assert records[90105].title == "Victim Services in São Paulo"
        assert len(records[90105].text_repairs or []) == 3
        assert authors(session, 90106) == ["Ann Smith"]
        assert (records[90107].published_text, records[90107].page_count) == ("June 2006", 8)

        quarantined = session.scalars(select(models.Quarantine)).all()
        assert [(q.url, q.reason) for q in quarantined] == [
            (f"{server}/mixed_bytes_90104", "encoding")
        ]
        assert quarantined[0].detail == (
            "Author(s): 'S\ufffdren M\ufffdller' has a U+FFFD replacement character "
            "(bytes lost in decoding)"
        )
        run = session.scalars(select(models.CrawlRun)).one()
        stats = run.stats if isinstance(run.stats, dict) else json.loads(run.stats or "{}")
        assert stats["harvester/encoding_repaired"] == 3
        assert stats["harvester/quarantined/encoding"] == 1
    assert done.stderr.count("Text repaired at ") == 3
