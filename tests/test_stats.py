"""harvester/stats.py and the `harvester stats`, `show` and `search` commands, on both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, insert

from harvester import models
from harvester.cli import main
from harvester.db import ensure_schema
from harvester.items import Record
from harvester.stats import collect_stats, record_detail
from tests.support import fixture_records, store_records


@pytest.fixture
def stored(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> tuple[Engine, list[Record]]:
    ensure_schema(engine, auto_migrate=True)
    records = fixture_records()
    store_records(engine, records)
    with engine.begin() as connection:
        connection.execute(
            insert(models.CrawlRun).values(
                spider="ncjrs",
                arguments={},
                started_at=datetime(2026, 1, 1, tzinfo=UTC),
                finish_reason="finished",
                pages_fetched=40,
                records_new=len(records),
            )
        )
    monkeypatch.setenv("DATABASE_URL", engine.url.render_as_string(hide_password=False))
    return engine, records


def invoke(*arguments: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(arguments))
    return result.exit_code, result.output


def test_stats_counts_and_coverage(stored: tuple[Engine, list[Record]]) -> None:
    engine, records = stored
    with engine.connect() as connection:
        summary = collect_stats(connection)
    assert summary["counts"]["records"] == len(records)
    with_abstract = sum(1 for r in records if r.abstract)
    assert summary["coverage"]["abstract"]["records"] == with_abstract
    assert summary["coverage"]["abstract"]["share"] == round(with_abstract / len(records), 4)
    with_people = sum(1 for r in records if r.authors or r.editors or r.corporate_authors)
    assert summary["coverage"]["authors or editors"]["records"] == with_people
    journals = sum(1 for r in records if r.journal)
    assert summary["coverage"]["journal"]["records"] == journals
    assert summary["last_runs"][0]["new"] == len(records)
    assert sum(summary["layouts"].values()) == len(records)
    code, output = invoke("stats")
    assert code == 0, output
    assert f"records: {len(records)}" in output
    assert "abstract" in output
    code, output = invoke("stats", "--json")
    assert code == 0, output
    assert json.loads(output)["counts"]["records"] == len(records)


def test_show_prints_one_record(stored: tuple[Engine, list[Record]]) -> None:
    engine, records = stored
    record = next(r for r in records if r.authors and r.journal)
    with engine.connect() as connection:
        detail = record_detail(connection, record.ncj_number or 0)
        assert record_detail(connection, 1) is None
    assert detail is not None
    assert detail["title"] == record.title
    assert [a["name"] for a in detail["authors"]] == [p.name for p in record.authors]
    code, output = invoke("show", str(record.ncj_number))
    assert code == 0, output
    assert record.title in output
    assert record.authors[0].name in output
    code, output = invoke("show", str(record.ncj_number), "--json")
    assert record.journal is not None
    assert json.loads(output)["journal_name"] == record.journal.name
    code, output = invoke("show", "1")
    assert code == 1
    assert "no record NCJ 1" in output


def test_search_command(stored: tuple[Engine, list[Record]]) -> None:
    code, output = invoke("search", "juvenile", "justice", "--json", "--limit", "3")
    assert code == 0, output
    hits = json.loads(output)
    assert 0 < len(hits) <= 3
    assert {"ncj_number", "tier", "matched_in", "title", "authors", "year", "url"} <= set(hits[0])
    code, output = invoke("search", "juvenile", "justice")
    assert code == 0, output
    assert f"NCJ {hits[0]['ncj_number']}" in output.splitlines()[0]
    code, output = invoke("search", "--", "--")
    assert code == 2  # a usage error
    assert "no words to search for" in output


def test_commands_refuse_a_missing_or_unmigrated_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "missing.sqlite"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{missing}")
    code, output = invoke("stats")
    assert code == 1
    assert "no database at" in output
    assert not missing.exists()
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{empty}")
    code, output = invoke("search", "police")
    assert code == 1
    assert "has no tables" in output
