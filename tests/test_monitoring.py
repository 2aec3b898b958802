"""Post-run checks: the pure rules, and a simulated layout change on the local site."""

from __future__ import annotations

from typing import Any

import pytest
from scrapy.settings import Settings
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from harvester import models
from harvester.localsite import serve_site
from harvester.monitoring import COVERAGE_FIELDS, Thresholds, check_run, coverage_from_stats
from tests.support import scrapy_crawl

HEALTHY = {"finish_reason": "finished", "errors": 0, "pages_fetched": 200, "records_quarantined": 1}
FULL = dict.fromkeys(COVERAGE_FIELDS, 0.9)


def stats(**values: int) -> dict[str, Any]:
    return {"harvester/record_pages": 200, "harvester/coverage/records": 200, **values}


def test_a_healthy_run_passes() -> None:
    assert (
        check_run({**HEALTHY, "coverage": FULL}, stats(), [{"coverage": FULL}], Thresholds()) == []
    )


@pytest.mark.parametrize(
    ("figures", "run_stats", "expected"),
    [
        ({"finish_reason": "closespider_errorcount"}, {}, "ended with 'closespider_errorcount'"),
        ({"errors": 30}, {}, "error rate 13.0% (30 errors) is above 5%"),
        ({"records_quarantined": 40}, {}, "quarantine rate 20.0% (40 of 200 record pages)"),
        ({}, {"harvester/non_record/no_record_fields": 50}, "50 of 250 record pages (20%)"),
        ({}, {"harvester/unknown_label/Summary": 180}, "new label 'Summary' on 180 of 200"),
        ({}, {"harvester/robots_unavailable": 1}, "robots.txt could not be read"),
    ],
)
def test_each_check_fires_on_its_own(
    figures: dict[str, Any], run_stats: dict[str, int], expected: str
) -> None:
    alerts = check_run({**HEALTHY, **figures}, stats(**run_stats), [], Thresholds())
    assert len(alerts) == 1
    assert expected in alerts[0]


def test_budget_and_sigterm_finishes_are_healthy() -> None:
    for reason in ("shutdown", "max_requests"):
        assert check_run({**HEALTHY, "finish_reason": reason}, stats(), [], Thresholds()) == []


def test_coverage_drift_is_judged_against_the_mean_of_healthy_runs() -> None:
    history = [{"coverage": {**FULL, "abstract": share}} for share in (0.95, 0.85, 0.9)]
    dropped = {**FULL, "abstract": 0.7}  # within the 25-point threshold
    assert check_run({**HEALTHY, "coverage": dropped}, stats(), history, Thresholds()) == []
    gone = {**FULL, "abstract": 0.0}
    (alert,) = check_run({**HEALTHY, "coverage": gone}, stats(), history, Thresholds())
    assert alert.startswith("coverage of 'abstract' fell to 0% from 90% over the last 3 run(s)")


def test_small_runs_are_not_judged_on_rates_or_coverage() -> None:
    tiny = {"harvester/record_pages": 5, "harvester/coverage/records": 5}
    figures = {**HEALTHY, "pages_fetched": 5, "errors": 1, "coverage": dict.fromkeys(FULL, 0.0)}
    assert check_run(figures, tiny, [{"coverage": FULL}], Thresholds()) == []


def test_thresholds_from_settings_fall_back_to_the_defaults() -> None:
    """A setting that is not set takes the dataclass default (with slots=True the class
    attribute is a slot descriptor, which Settings.getfloat cannot convert)."""
    assert Thresholds.from_settings(Settings()) == Thresholds()
    assert Thresholds.from_settings(Settings({"HARVESTER_CHECK_HISTORY": 7})).history == 7


def test_coverage_from_stats() -> None:
    shares = coverage_from_stats({"harvester/coverage/records": 4, "harvester/coverage/title": 4})
    assert shares is not None
    assert shares["title"] == 1.0
    assert shares["abstract"] == 0.0
    assert coverage_from_stats({}) is None


def test_a_renamed_label_on_the_site_makes_the_run_fail_with_a_drift_message(
    database_url: str, engine_for: Engine
) -> None:
    with serve_site(records=120, seed=8) as site:
        sitemap = f"sitemap={site.base_url}/sitemap.xml"
        first = scrapy_crawl(database_url, sitemap)
        assert first.returncode == 0, first.stderr[-3000:]
        site.configure(renames={"Abstract": "Summary", "Annotation": "Synopsis"})
        drifted = scrapy_crawl(database_url, sitemap, "full=1")
    assert drifted.returncode == 3, drifted.stderr[-3000:]
    log = drifted.stderr
    assert "Check failed: coverage of 'abstract' fell to 0%" in log
    assert "Check failed: new label 'Summary'" in log
    assert "Check failed: new label 'Synopsis'" in log
    with Session(engine_for) as session:
        runs = list(session.scalars(select(models.CrawlRun).order_by(models.CrawlRun.id)))
    assert runs[0].alerts == []
    assert runs[0].coverage is not None
    assert runs[0].coverage["abstract"] > 0.5
    assert runs[1].coverage is not None
    assert runs[1].coverage["abstract"] == 0.0
    assert any("coverage of 'annotation'" in alert for alert in runs[1].alerts or [])
