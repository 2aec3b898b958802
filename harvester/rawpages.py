"""Raw pages: the fetched HTML of records and quarantined pages, kept to be parsed again.

A body is stored once, keyed by its SHA-256, zstd-compressed with a dictionary trained on the
pages themselves. Record pages share their site chrome (navigation, banners, footers: most of
a 36 KiB ojp.gov-like page); a dictionary holds it once. On 2,000 generated pages of the local
site (36 KiB mean), bytes stored per page and compression time per page on one core:

    zlib level 6            8,780 B   720 µs
    zstd level 3            8,990 B   160 µs
    zstd level 3 + 110 KiB dictionary trained on 500 pages   1,170 B   41 µs

so zstd with a dictionary: 7x smaller and 17x faster than zlib. zstd is Python's own
``compression.zstd`` from 3.14 on and its official backport before (``backports.zstd``, by
the author of PEP 784, already installed as a Scrapy dependency).

The first batch of at least ``DICTIONARY_MIN_PAGES`` pages written to a database without a
dictionary trains one (``raw_page_dictionaries``); later pages use the newest dictionary, and
pages written before there was one are compressed without. A dictionary stays valid forever
(pages name theirs); if the site's chrome changes, pages still compress, only less well.

Storing is decided by the judging pipeline (setting ``HARVESTER_STORE_RAW_PAGES``), which hands
the page on with its record; the writer stores it with the batch that references it and forgets
it. ``response_for`` turns a stored page back into the Scrapy response the crawl parsed, so a
re-parse goes through ``harvester.parsing.parse_page`` exactly as the crawl did.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from scrapy.http import Headers, Request, Response, TextResponse
from scrapy.responsetypes import responsetypes
from sqlalchemy import Connection, Engine, RowMapping, Table, insert, select

from harvester import models
from harvester.db import WRITE_TRANSACTION_OPTION, chunks, insert_for
from harvester.items import FetchedPage, RawRecord

try:  # Python >= 3.14
    # mypy checks as 3.11 (pyproject.toml), whose standard library has no compression package
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:
    from backports import zstd

logger = logging.getLogger(__name__)

RAW_PAGES: Table = models.RawPage.__table__
DICTIONARIES: Table = models.RawPageDictionary.__table__

CODEC = "zstd"
COMPRESSION_LEVEL = 3  # higher levels cost much more time for a few per cent (see above)
# zstd's guidance: train on about 100 times the dictionary size in samples. A batch of 500
# record pages (18 MB with chrome) is plenty; fewer than this, and pages go without.
DICTIONARY_MIN_PAGES = 200
DICTIONARY_BYTES = 110 * 1024
DICTIONARY_MAX_SAMPLES = 1000
# The key of an empty body: a page with no body and another key is a reference (below).
_EMPTY_BODY_KEY = hashlib.sha256(b"").hexdigest()


def stored_reference(page: FetchedPage) -> FetchedPage:
    """A page read back from ``raw_pages``, without its body: what a record re-derived from it
    carries to the writer, which stores nothing for it (``PageCodec.store``) and only keeps
    its key. A re-parse's judging process sends it back instead of the page: 36 KiB less per
    page through the pipe, pickled on one side and unpickled on the other."""
    return dataclasses.replace(page, body=b"")


def is_reference(page: FetchedPage) -> bool:
    return not page.body and page.sha256 != _EMPTY_BODY_KEY


def fetched_page(response: TextResponse, raw: RawRecord) -> FetchedPage:
    """What re-parsing ``response`` needs later: its body and how it was fetched and decoded."""
    body = response.body
    content_type = response.headers.get(b"Content-Type")
    return FetchedPage(
        sha256=hashlib.sha256(body).hexdigest(),
        body=body,
        url=response.url,
        status=response.status,
        content_type=content_type.decode("latin-1") if content_type else None,
        encoding=raw.encoding or response.encoding,
        fetched_at=raw.fetched_at,
        redirect_urls=list(raw.redirect_urls),
    )


def response_for(page: FetchedPage) -> Response:
    """The response the downloader built for this page: same class, headers, URL, redirects.

    It carries the encoding the crawl decoded the page with; ``parse_page`` decodes the body
    again from its bytes and Content-Type (``harvester.decoding``), which gives the same text
    for the same page, and a corrected text once the decoding itself is corrected.
    """
    headers = Headers({"Content-Type": page.content_type} if page.content_type else {})
    response_class = responsetypes.from_args(headers=headers, url=page.url, body=page.body)
    request = Request(page.url, meta={"redirect_urls": list(page.redirect_urls)})
    if issubclass(response_class, TextResponse):
        return response_class(
            url=page.url,
            status=page.status,
            headers=headers,
            body=page.body,
            encoding=page.encoding,
            request=request,
        )
    return response_class(
        url=page.url, status=page.status, headers=headers, body=page.body, request=request
    )


class PageCodec:
    """Compresses and decompresses pages of one database.

    One per writer (compressors are not shared between threads); dictionaries are loaded once.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every cached lookup: called when a transaction that used them rolled back.

        A dictionary trained in that transaction is gone from the database (and SQLite may
        give its id to the next one), so a codec that kept it would write pages that reference
        nothing, or the wrong dictionary, in every later batch.
        """
        self._dictionaries: dict[int, Any] = {}
        self._newest: int | None = None
        self._looked_up = False
        self._compressor: Any = None
        self._compressor_dictionary: int | None = None

    def prepare(self, engine: Engine, pages: Sequence[FetchedPage]) -> None:
        """Train the first dictionary, if these pages are enough, in a transaction of its own.

        A writer calls this before it opens a batch's transaction, so that a batch the
        database refuses cannot take the dictionary down with it.
        """
        if self._newest is not None or len(pages) < DICTIONARY_MIN_PAGES:
            return  # nothing to train: the batch looks the dictionary up itself
        try:
            with (
                engine.connect().execution_options(**{WRITE_TRANSACTION_OPTION: True}) as conn,
                conn.begin(),
            ):
                self._dictionary_for(conn, pages)
        except Exception:
            self.reset()  # the batch itself will look again, or go without a dictionary
            raise

    # --- writing -------------------------------------------------------------------------

    def store(self, connection: Connection, pages: Iterable[FetchedPage]) -> None:
        """Store the pages not stored yet (one query per chunk finds them)."""
        unique: dict[str, FetchedPage] = {}
        for page in pages:
            unique.setdefault(page.sha256, page)  # the first fetch of a body describes it
        if not unique:
            return
        keys = list(unique)
        stored: set[str] = set()
        for chunk in chunks(keys):
            query = select(RAW_PAGES.c.sha256).where(RAW_PAGES.c.sha256.in_(chunk))
            stored.update(connection.execute(query).scalars())
        missing = [page for key, page in unique.items() if key not in stored]
        if not missing:
            return
        if gone := [page.sha256 for page in missing if is_reference(page)]:
            # read from raw_pages in this run, deleted since: nothing to store it from
            raise ValueError(f"raw pages no longer stored: {', '.join(gone)}")
        dictionary_id = self._dictionary_for(connection, missing)
        rows = [self._row(page, dictionary_id) for page in missing]
        # Another crawl on the same database may have stored the same body meanwhile.
        connection.execute(_insert_ignoring(connection, RAW_PAGES, "sha256"), rows)

    def _row(self, page: FetchedPage, dictionary_id: int | None) -> dict[str, Any]:
        return {
            "sha256": page.sha256,
            "codec": CODEC,
            "dictionary_id": dictionary_id,
            "body": self._compress(page.body),
            "size": len(page.body),
            "url": page.url,
            "status": page.status,
            "content_type": page.content_type,
            "encoding": page.encoding,
            "redirect_urls": list(page.redirect_urls),
            "fetched_at": page.fetched_at,
        }

    def _compress(self, body: bytes) -> bytes:
        compressed: bytes = self._compressor.compress(body, mode=zstd.ZstdCompressor.FLUSH_FRAME)
        return compressed

    def _dictionary_for(self, connection: Connection, pages: Sequence[FetchedPage]) -> int | None:
        """The dictionary these pages are compressed with; trains the first one if none."""
        if not self._looked_up or (self._newest is None and len(pages) >= DICTIONARY_MIN_PAGES):
            self._newest = self._newest_dictionary(connection)
            self._looked_up = True
            if self._newest is None and len(pages) >= DICTIONARY_MIN_PAGES:
                self._newest = self._train(connection, pages)
        if self._compressor is None or self._compressor_dictionary != self._newest:
            options: dict[str, Any] = {"level": COMPRESSION_LEVEL}
            if self._newest is not None:
                options["zstd_dict"] = self._dictionaries[self._newest].as_digested_dict
            self._compressor = zstd.ZstdCompressor(**options)
            self._compressor_dictionary = self._newest
        return self._newest

    def _newest_dictionary(self, connection: Connection) -> int | None:
        query = select(DICTIONARIES.c.id).order_by(DICTIONARIES.c.id.desc()).limit(1)
        newest = connection.execute(query).scalar()
        if newest is not None:
            self._load(connection, [newest])
        return newest

    def _train(self, connection: Connection, pages: Sequence[FetchedPage]) -> int | None:
        step = max(1, len(pages) // DICTIONARY_MAX_SAMPLES)
        samples = [page.body for page in pages[::step]]
        try:
            dictionary = zstd.train_dict(samples, DICTIONARY_BYTES)
        except zstd.ZstdError as error:  # too few or too alike samples: go on without
            logger.warning("No zstd dictionary for raw pages: %s", error)
            return None
        result = connection.execute(
            insert(DICTIONARIES)
            .values(
                dictionary=dictionary.dict_content,
                sample_pages=len(samples),
                created_at=datetime.now(UTC),
            )
            .returning(DICTIONARIES.c.id)
        )
        dictionary_id = int(result.scalar_one())
        self._dictionaries[dictionary_id] = dictionary
        logger.info(
            "Trained raw page dictionary %d on %d pages (%d bytes)",
            dictionary_id,
            len(samples),
            len(dictionary.dict_content),
        )
        return dictionary_id

    # --- reading -------------------------------------------------------------------------

    def _load(self, connection: Connection, ids: Iterable[int]) -> None:
        wanted = [i for i in set(ids) if i not in self._dictionaries]
        if not wanted:
            return
        query = select(DICTIONARIES.c.id, DICTIONARIES.c.dictionary).where(
            DICTIONARIES.c.id.in_(wanted)
        )
        for dictionary_id, content in connection.execute(query):
            self._dictionaries[dictionary_id] = zstd.ZstdDict(bytes(content))

    def page(self, connection: Connection, row: RowMapping) -> FetchedPage:
        """A stored page (a ``raw_pages`` row, all columns) decompressed and checked."""
        if row["dictionary_id"] is not None:
            self._load(connection, [row["dictionary_id"]])
        return decoded_page(row, self._dictionaries)

    def pages(self, connection: Connection, keys: Iterable[str]) -> dict[str, FetchedPage]:
        """The stored pages with these keys (missing ones are left out)."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, FetchedPage] = {}
        for chunk in chunks(keys):
            query = select(RAW_PAGES).where(RAW_PAGES.c.sha256.in_(chunk))
            for row in connection.execute(query).mappings():
                found[row["sha256"]] = self.page(connection, row)
        return found


def decoded_page(row: Mapping[Any, Any], dictionaries: Mapping[int, Any]) -> FetchedPage:
    """A stored page (a ``raw_pages`` row, all columns) decompressed and checked against its
    hash, given the zstd dictionaries (``ZstdDict`` by id) it may name.

    No connection: the re-parse's judging processes, which have none, read pages with it too.
    """
    if row["codec"] != CODEC:
        raise ValueError(f"raw page {row['sha256']}: unknown codec {row['codec']!r}")
    options: dict[str, Any] = {}
    if row["dictionary_id"] is not None:
        if row["dictionary_id"] not in dictionaries:
            raise ValueError(
                f"raw page {row['sha256']}: dictionary {row['dictionary_id']} is not stored"
            )
        options["zstd_dict"] = dictionaries[row["dictionary_id"]]
    # PostgreSQL gives the body as a memoryview
    body = zstd.decompress(bytes(row["body"]), **options)
    if hashlib.sha256(body).hexdigest() != row["sha256"]:
        raise ValueError(f"raw page {row['sha256']}: the stored body does not match its hash")
    return FetchedPage(
        sha256=row["sha256"],
        body=body,
        url=row["url"],
        status=row["status"],
        content_type=row["content_type"],
        encoding=row["encoding"],
        fetched_at=row["fetched_at"],
        redirect_urls=list(row["redirect_urls"] or ()),
    )


def _insert_ignoring(connection: Connection, table: Table, key: str) -> Any:
    return insert_for(connection, table).on_conflict_do_nothing(index_elements=[table.c[key]])
