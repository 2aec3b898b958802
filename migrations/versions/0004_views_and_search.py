"""Views for downstream SQL (record_summary, record_people) and full-text search.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 16:00:00

Search index, kept in sync by triggers so that every write path (crawl, re-parse, hand SQL)
updates it:

* SQLite: an FTS5 table ``records_fts(title, people, annotation, abstract)`` whose rowid is the
  NCJ number. It keeps its own copy of the text (not external content): deleting a row from an
  external-content index needs the exact old values, which the people column cannot give back
  reliably once ``record_contributors`` has changed.
* PostgreSQL: tsvector columns on ``records``, each with a GIN index
  ``ix_records_<column>``: ``search_vector`` (weights A title, B people, C annotation,
  D abstract), ``search_vector_title`` and ``search_vector_title_people`` (the narrower fields
  the search tiers filter on). A BEFORE trigger on ``records`` computes them; statement-level
  triggers on ``record_contributors`` redo the people part for the records whose people
  changed.

Both split text the same way, so that ``harvester search`` ranks alike on both (see
harvester/search.py): a word is a run of letters and digits, compared case-insensitively, with
no stemming, stop words or accent folding. SQLite: ``unicode61`` with categories ``L* N*`` and
diacritics kept; PostgreSQL: non-alphanumerics replaced by spaces, then the ``simple``
configuration.

``people`` is every ``record_contributors.name_as_shown`` of the record (authors, editors,
corporate authors). The views and the search objects are not SQLAlchemy models:
migrations/env.py leaves them out of the autogenerate comparison.

A later migration that rebuilds ``records`` or ``record_contributors`` on SQLite (batch mode
copies the table and drops the old one) drops these triggers with it and must recreate them.

Hand-written, no application imports, like 0001.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _names(role: str, separator: str, *, postgresql: bool) -> str:
    """Names in one role of the record ``r``, in page order, joined by ``separator``."""
    if postgresql:
        return (
            f"(SELECT string_agg(rc.name_as_shown, '{separator}' ORDER BY rc.position)"
            " FROM record_contributors rc"
            f" WHERE rc.ncj_number = r.ncj_number AND rc.role = '{role}')"
        )
    # SQLite before 3.44 has no ORDER BY inside group_concat; it aggregates rows in the order
    # the ordered subquery returns them.
    return (
        f"(SELECT group_concat(name_as_shown, '{separator}') FROM ("
        "SELECT rc.name_as_shown FROM record_contributors rc"
        f" WHERE rc.ncj_number = r.ncj_number AND rc.role = '{role}' ORDER BY rc.position))"
    )


def _create_views(postgresql: bool) -> None:
    op.execute(
        f"""
        CREATE VIEW record_summary AS
        SELECT r.ncj_number,
               r.title,
               {_names("author", "; ", postgresql=postgresql)} AS authors,
               {_names("editor", "; ", postgresql=postgresql)} AS editors,
               {_names("corporate_author", "; ", postgresql=postgresql)} AS corporate_authors,
               r.journal_citation,
               r.published_year AS year,
               r.page_count,
               r.source_url AS url
        FROM records r
        """
    )
    op.execute(
        """
        CREATE VIEW record_people AS
        SELECT rc.ncj_number,
               rc.role,
               rc.position,
               rc.name_as_shown AS name,
               c.id AS contributor_id,
               c.kind,
               c.family,
               c.given,
               c.suffix
        FROM record_contributors rc
        JOIN contributors c ON c.id = rc.contributor_id
        """
    )


# --- SQLite ----------------------------------------------------------------------------------

_SQLITE_PEOPLE = (
    "(SELECT group_concat(name_as_shown, ' ') FROM record_contributors WHERE ncj_number = {ncj})"
)


def _sqlite_index_row(ncj: str) -> str:
    return (
        "INSERT INTO records_fts(rowid, title, people, annotation, abstract)"
        f" SELECT r.ncj_number, r.title, {_SQLITE_PEOPLE.format(ncj='r.ncj_number')},"
        f" r.annotation, r.abstract FROM records r WHERE r.ncj_number = {ncj};"
    )


def _sqlite_refresh_people(ncj: str) -> str:
    return f"UPDATE records_fts SET people = {_SQLITE_PEOPLE.format(ncj=ncj)} WHERE rowid = {ncj};"


_SQLITE_TRIGGERS = {
    "records_fts_after_insert": (
        "AFTER INSERT ON records",
        _sqlite_index_row("new.ncj_number"),
    ),
    "records_fts_after_update": (
        "AFTER UPDATE OF ncj_number, title, annotation, abstract ON records",
        "DELETE FROM records_fts WHERE rowid = old.ncj_number; "
        + _sqlite_index_row("new.ncj_number"),
    ),
    "records_fts_after_delete": (
        "AFTER DELETE ON records",
        "DELETE FROM records_fts WHERE rowid = old.ncj_number;",
    ),
    "record_contributors_fts_after_insert": (
        "AFTER INSERT ON record_contributors",
        _sqlite_refresh_people("new.ncj_number"),
    ),
    "record_contributors_fts_after_update": (
        "AFTER UPDATE OF ncj_number, name_as_shown ON record_contributors",
        _sqlite_refresh_people("old.ncj_number") + " " + _sqlite_refresh_people("new.ncj_number"),
    ),
    "record_contributors_fts_after_delete": (
        "AFTER DELETE ON record_contributors",
        _sqlite_refresh_people("old.ncj_number"),
    ),
}


def _sqlite_upgrade() -> None:
    op.execute(
        "CREATE VIRTUAL TABLE records_fts USING fts5("
        "title, people, annotation, abstract, "
        "tokenize = \"unicode61 remove_diacritics 0 categories 'L* N*'\")"
    )
    for name, (event, body) in _SQLITE_TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {event} BEGIN {body} END")
    op.execute(
        "INSERT INTO records_fts(rowid, title, people, annotation, abstract)"
        f" SELECT r.ncj_number, r.title, {_SQLITE_PEOPLE.format(ncj='r.ncj_number')},"
        " r.annotation, r.abstract FROM records r"
    )


def _sqlite_downgrade() -> None:
    for name in _SQLITE_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute("DROP TABLE IF EXISTS records_fts")


# --- PostgreSQL ------------------------------------------------------------------------------

# (column, what it indexes): the full weighted vector, and the two narrower ones that the
# search tiers filter on; a weight-restricted query (word:A) cannot be answered by the GIN
# index alone (every candidate row is rechecked), a vector of its own can.
_PG_VECTORS = (
    ("search_vector", "title (A), people (B), annotation (C), abstract (D)"),
    ("search_vector_title", "title"),
    ("search_vector_title_people", "title and people"),
)


def _postgresql_upgrade() -> None:
    for column, _ in _PG_VECTORS:
        op.execute(f"ALTER TABLE records ADD COLUMN {column} tsvector")
    op.execute(
        """
        CREATE FUNCTION records_search_words(value text) RETURNS text
        LANGUAGE sql IMMUTABLE AS $$
            SELECT regexp_replace(coalesce(value, ''), '[^[:alnum:]]+', ' ', 'g')
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION records_search_document(
            title text, people text, annotation text, abstract text
        ) RETURNS tsvector LANGUAGE sql IMMUTABLE AS $$
            SELECT setweight(to_tsvector('simple', records_search_words(title)), 'A')
                || setweight(to_tsvector('simple', records_search_words(people)), 'B')
                || setweight(to_tsvector('simple', records_search_words(annotation)), 'C')
                || setweight(to_tsvector('simple', records_search_words(abstract)), 'D')
        $$
        """
    )
    # Computed when a record is written (its people as they are at that moment), and again
    # whenever a column they are made of is written: `UPDATE records SET title = title`
    # rebuilds a record's vectors by hand.
    op.execute(
        """
        CREATE FUNCTION records_search_vector_refresh() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            people text := (SELECT string_agg(rc.name_as_shown, ' ') FROM record_contributors rc
                            WHERE rc.ncj_number = NEW.ncj_number);
        BEGIN
            NEW.search_vector := records_search_document(
                NEW.title, people, NEW.annotation, NEW.abstract);
            NEW.search_vector_title := to_tsvector('simple', records_search_words(NEW.title));
            NEW.search_vector_title_people := to_tsvector(
                'simple', records_search_words(NEW.title) || ' ' || records_search_words(people));
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER records_search_vector_refresh
        BEFORE INSERT OR UPDATE OF ncj_number, title, annotation, abstract
        ON records FOR EACH ROW EXECUTE FUNCTION records_search_vector_refresh()
        """
    )
    # When people change, only their part is redone: the B-weighted entries of search_vector
    # are replaced (ts_filter keeps the others; tokenizing the abstract again would triple the
    # cost of writing a record) and the title + people vector is rebuilt. Statement-level with
    # transition tables, so a batch of contributor rows costs one UPDATE; a trigger with
    # transition tables serves one event only, hence three.
    for event, tables in (
        ("insert", "NEW TABLE AS changed_rows"),
        ("delete", "OLD TABLE AS changed_rows"),
        ("update", "OLD TABLE AS previous_rows NEW TABLE AS changed_rows"),
    ):
        changed = "SELECT ncj_number FROM changed_rows"
        if event == "update":
            changed += " UNION SELECT ncj_number FROM previous_rows"
        op.execute(
            f"""
            CREATE FUNCTION record_contributors_search_{event}() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                UPDATE records r
                SET search_vector = ts_filter(r.search_vector, '{{a,c,d}}')
                        || setweight(to_tsvector('simple', records_search_words(p.people)), 'B'),
                    search_vector_title_people = to_tsvector('simple',
                        records_search_words(r.title) || ' ' || records_search_words(p.people))
                FROM (
                    SELECT changed.ncj_number,
                           (SELECT string_agg(rc.name_as_shown, ' ') FROM record_contributors rc
                            WHERE rc.ncj_number = changed.ncj_number) AS people
                    FROM ({changed}) AS changed
                ) AS p
                WHERE r.ncj_number = p.ncj_number;
                RETURN NULL;
            END
            $$
            """
        )
        op.execute(
            f"""
            CREATE TRIGGER record_contributors_search_{event}
            AFTER {event.upper()} ON record_contributors REFERENCING {tables}
            FOR EACH STATEMENT EXECUTE FUNCTION record_contributors_search_{event}()
            """
        )
    op.execute("UPDATE records SET title = title")  # backfill, through the trigger
    for column, _ in _PG_VECTORS:
        op.execute(f"CREATE INDEX ix_records_{column} ON records USING gin ({column})")


def _postgresql_downgrade() -> None:
    for event in ("insert", "delete", "update"):
        op.execute(
            f"DROP TRIGGER IF EXISTS record_contributors_search_{event} ON record_contributors"
        )
        op.execute(f"DROP FUNCTION IF EXISTS record_contributors_search_{event}()")
    op.execute("DROP TRIGGER IF EXISTS records_search_vector_refresh ON records")
    op.execute("DROP FUNCTION IF EXISTS records_search_vector_refresh()")
    op.execute("DROP FUNCTION IF EXISTS records_search_document(text, text, text, text)")
    op.execute("DROP FUNCTION IF EXISTS records_search_words(text)")
    for column, _ in _PG_VECTORS:
        op.execute(f"DROP INDEX IF EXISTS ix_records_{column}")
        op.execute(f"ALTER TABLE records DROP COLUMN IF EXISTS {column}")


def upgrade() -> None:
    postgresql = op.get_context().dialect.name == "postgresql"
    _create_views(postgresql)
    if postgresql:
        _postgresql_upgrade()
    else:
        _sqlite_upgrade()


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS record_people")
    op.execute("DROP VIEW IF EXISTS record_summary")
    if op.get_context().dialect.name == "postgresql":
        _postgresql_downgrade()
    else:
        _sqlite_downgrade()
