"""Checks after each crawl: is this run as healthy as the ones before it?

A scraper rots silently: the site renames a label, the parser stops finding abstracts, and
every run still "succeeds". After each run the figures of ``crawl_runs`` are checked against
thresholds (settings, below) and against the previous healthy runs:

- the finish reason (a crawl that died or was cancelled);
- the error rate and the quarantine rate;
- record-page URLs whose page the parser does not recognise as a record at all;
- labels the parser does not know that show up on a large share of pages (a renamed label);
- field coverage: the share of this run's records that have each field, against the mean of
  the last healthy runs; a drop beyond the threshold is drift;
- entry points (robots.txt, sitemaps, listing pages) that could not be read, were blocked or
  were damaged (``entry_point_alerts``), and a run that stored nothing although its entry
  points listed record pages (``nothing_stored_alerts``).

Failed checks are logged as errors, stored in ``crawl_runs.alerts``, and make
``scrapy crawl`` / ``harvester crawl`` exit with status 3, so cron and systemd report them.
Everything here is pure: figures in, messages out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from scrapy.settings import BaseSettings

from harvester.items import PAGE_VERDICTS, GapReason, Record

# Field -> whether a record has it. The fields users rely on, and the ones a renamed label
# would silently empty.
COVERAGE_FIELDS: dict[str, Callable[[Record], bool]] = {
    "title": lambda r: bool(r.title),
    "published": lambda r: r.published is not None,
    "authors": lambda r: bool(r.authors or r.corporate_authors),
    "annotation": lambda r: bool(r.annotation),
    "abstract": lambda r: bool(r.abstract),
    "journal": lambda r: r.journal is not None,
    "page_count": lambda r: r.page_count is not None,
    "publication_type": lambda r: bool(r.publication_type),
    "language": lambda r: bool(r.language),
    "sponsoring_agencies": lambda r: bool(r.sponsoring_agencies),
}
OK_FINISH_REASONS = ("finished", "shutdown", "max_requests")
# A distributed run's record pages stored or found unchanged by all its workers (set by the
# worker's crawl run at close, harvester.distributed.Fleet.records_answered).
RUN_RECORDS_ANSWERED = "harvester/distributed/records_answered"


def covered_fields(record: Record) -> Iterable[str]:
    return (name for name, has in COVERAGE_FIELDS.items() if has(record))


@dataclass(frozen=True, slots=True)
class Thresholds:
    max_error_rate: float = 0.05
    max_quarantine_rate: float = 0.05
    max_unrecognised_rate: float = 0.05
    new_label_share: float = 0.2
    max_coverage_drop: float = 0.25
    min_records: int = 50  # fewer records than this: coverage is not compared
    min_pages: int = 10  # fewer record pages than this: rates are not judged
    history: int = 5  # healthy runs the coverage baseline is the mean of
    max_missing: int = 0  # record pages a run may leave unfetched or unstored and still pass

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> Thresholds:
        # The defaults come from an instance: with slots=True the class attribute is the slot
        # descriptor, not the default value.
        default = cls()
        return cls(
            max_error_rate=settings.getfloat("HARVESTER_MAX_ERROR_RATE", default.max_error_rate),
            max_quarantine_rate=settings.getfloat(
                "HARVESTER_MAX_QUARANTINE_RATE", default.max_quarantine_rate
            ),
            max_unrecognised_rate=settings.getfloat(
                "HARVESTER_MAX_UNRECOGNISED_RATE", default.max_unrecognised_rate
            ),
            new_label_share=settings.getfloat("HARVESTER_NEW_LABEL_SHARE", default.new_label_share),
            max_coverage_drop=settings.getfloat(
                "HARVESTER_MAX_COVERAGE_DROP", default.max_coverage_drop
            ),
            min_records=settings.getint("HARVESTER_CHECK_MIN_RECORDS", default.min_records),
            min_pages=settings.getint("HARVESTER_CHECK_MIN_PAGES", default.min_pages),
            history=settings.getint("HARVESTER_CHECK_HISTORY", default.history),
            max_missing=settings.getint("HARVESTER_MAX_MISSING", default.max_missing),
        )


# Stats of field coverage: the records counted, and per field the records that have it.
COVERAGE_PREFIX = "harvester/coverage/"
COVERAGE_RECORDS = f"{COVERAGE_PREFIX}records"
# A worker of a distributed run: the records of the whole run (so far) its coverage is of.
RUN_COVERAGE_RECORDS = "harvester/distributed/coverage_records"


def coverage_from_stats(stats: Mapping[str, Any]) -> dict[str, float] | None:
    """Share of the run's records with each field (None when the run stored no record)."""
    records = int(stats.get(COVERAGE_RECORDS, 0))
    if not records:
        return None
    return {
        name: round(int(stats.get(f"{COVERAGE_PREFIX}{name}", 0)) / records, 4)
        for name in COVERAGE_FIELDS
    }


def check_run(
    figures: Mapping[str, Any],
    stats: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    thresholds: Thresholds,
) -> list[str]:
    """The checks this run fails, as messages. ``history``: earlier healthy runs, newest first,
    each with ``coverage`` and ``records`` (the number of records it was measured on)."""
    alerts: list[str] = []
    reason = figures.get("finish_reason")
    if reason not in OK_FINISH_REASONS:
        alerts.append(f"the crawl ended with '{reason}', not 'finished'")
    if stats.get("harvester/robots_unavailable"):
        alerts.append(
            "robots.txt could not be read (5xx or network error): its host was not crawled"
        )
    alerts += entry_point_alerts(stats)
    alerts += nothing_stored_alerts(figures, stats)

    pages = int(stats.get("harvester/record_pages", 0))  # parsed as records
    errors = int(figures.get("errors", 0))
    fetched = int(figures.get("pages_fetched", 0))
    if errors and fetched + errors >= thresholds.min_pages:
        rate = errors / (fetched + errors)
        if rate > thresholds.max_error_rate:
            alerts.append(
                f"error rate {rate:.1%} ({errors} errors) is above {thresholds.max_error_rate:.0%}"
            )
    quarantined = int(figures.get("records_quarantined", 0))
    if quarantined and pages >= thresholds.min_pages:
        rate = quarantined / pages
        if rate > thresholds.max_quarantine_rate:
            alerts.append(
                f"quarantine rate {rate:.1%} ({quarantined} of {pages} record pages) is above "
                f"{thresholds.max_quarantine_rate:.0%}"
            )
    alerts += missing_records(stats, thresholds)
    unrecognised = int(stats.get("harvester/non_record/no_record_fields", 0))
    looked_at = pages + unrecognised
    if unrecognised and looked_at >= thresholds.min_pages:
        rate = unrecognised / looked_at
        if rate > thresholds.max_unrecognised_rate:
            alerts.append(
                f"{unrecognised} of {looked_at} record pages ({rate:.0%}) have a template the "
                "parser does not recognise: the site's layout may have changed"
            )
    if pages >= thresholds.min_pages:
        prefix = "harvester/unknown_label/"
        for key, count in sorted(stats.items()):
            if key.startswith(prefix) and int(count) / pages >= thresholds.new_label_share:
                alerts.append(
                    f"new label '{key[len(prefix) :]}' on {int(count)} of {pages} record pages: "
                    "the site's layout may have changed (see harvester.parsing.LABELS)"
                )

    coverage = figures.get("coverage")
    records = int(stats.get(COVERAGE_RECORDS, 0))
    baseline_runs = [run for run in history[: thresholds.history] if run.get("coverage")]
    if coverage and records >= thresholds.min_records and baseline_runs:
        for name in COVERAGE_FIELDS:
            before = sum(run["coverage"].get(name, 0.0) for run in baseline_runs) / len(
                baseline_runs
            )
            now = coverage.get(name, 0.0)
            if before - now > thresholds.max_coverage_drop:
                alerts.append(
                    f"coverage of '{name}' fell to {now:.0%} from {before:.0%} over the last "
                    f"{len(baseline_runs)} run(s): the parser may no longer find it"
                )
    return alerts


# Gaps that mean a record page of this run is missing: it got no usable answer. (A record the
# database refused is quarantined as store_error, like one that failed validation, and a page
# that shows no record has a check of its own: the quarantine and unrecognised rates.)
MISSING_REASONS = tuple(r for r in get_args(GapReason) if r not in PAGE_VERDICTS)
# Record pages fetched whose record a pipeline lost by raising (a bug, not a verdict on the
# page): gaps too (store_error in the ledger), counted apart from the database's refusals.
PIPELINE_ERROR_GAPS = "harvester/gaps/pipeline_error"


def missing_records(stats: Mapping[str, Any], thresholds: Thresholds) -> list[str]:
    """A run that leaves record pages unfetched does not pass: the database is not
    complete, whatever the error rate. They are gaps in the ledger, retried first next run."""
    by_reason = {
        reason: int(stats.get(f"harvester/gaps/{reason}", 0))
        for reason in MISSING_REASONS
        if stats.get(f"harvester/gaps/{reason}")
    }
    missing = sum(by_reason.values())
    lost = int(stats.get(PIPELINE_ERROR_GAPS, 0))
    if missing + lost <= thresholds.max_missing:
        return []
    alerts = []
    if missing:
        reasons = ", ".join(f"{count} {reason}" for reason, count in by_reason.items())
        alerts.append(
            f"{missing} record page(s) could not be fetched ({reasons}): the next run "
            "retries them first; `harvester coverage` lists every gap"
        )
    if lost:
        alerts.append(
            f"{lost} record page(s) were fetched but not stored: an item pipeline raised on "
            "them (the log shows where); the next run retries them first"
        )
    return alerts


# Finish reasons of runs that stopped themselves (harvester.crawl_session): none is "ok".
STOP_REASONS = {
    "database_error": "the database refused writes (disk full or read-only): the crawl stopped",
    "lock_lost": "the run lock was lost to another crawl: the crawl stopped",
    "no_progress": "the crawl made no progress (HARVESTER_NO_PROGRESS_TIMEOUT): it stopped",
    "forced_stop": "the crawl was stopped by force (a second SIGTERM/SIGINT): what was "
    "fetched may not all be written",
}


def check_run_integrity(figures: Mapping[str, Any], stats: Mapping[str, Any]) -> list[str]:
    """Checks that the run wrote what it fetched, and why it stopped if it stopped itself."""
    alerts: list[str] = []
    reason = figures.get("finish_reason")
    if reason in STOP_REASONS:
        message = stats.get("harvester/stop_message")
        alerts.append(f"{STOP_REASONS[reason]}" + (f" ({message})" if message else ""))
    unwritten = int(stats.get("harvester/records_unwritten", 0))
    if unwritten:
        alerts.append(
            f"{unwritten} records were fetched but not written (the database failed): the "
            "next run fetches them again"
        )
    states = int(stats.get("harvester/url_states_unwritten", 0))
    if states:
        alerts.append(f"{states} URL states were not written (the database failed)")
    return alerts


def entry_point_alerts(stats: Mapping[str, Any]) -> list[str]:
    """Entry points the run could not read, was refused, or read only in part (the spider's
    ``harvester/entry_points_failed`` and ``harvester/failed_entry_points``): what they list
    is missing from this run."""
    failed = int(stats.get("harvester/entry_points_failed", 0))
    if not failed:
        return []
    listed = [str(entry) for entry in stats.get("harvester/failed_entry_points") or []]
    shown = "; ".join(listed[:3])
    if len(listed) > 3:
        shown += f"; and {failed - 3} more (crawl_runs.stats harvester/failed_entry_points)"
    return [
        f"{failed} entry point(s) could not be read, were blocked or are damaged, so the "
        f"pages they list may be missing (read again by the next run): {shown}"
    ]


def nothing_stored_alerts(figures: Mapping[str, Any], stats: Mapping[str, Any]) -> list[str]:
    """A run whose sitemaps and listings listed record pages but that stored none of them, nor
    found them unchanged: blocked, failing or not records after all."""
    listed = int(stats.get("harvester/listed_record_pages", 0))
    accounted = sum(
        int(figures.get(name, 0))
        for name in (
            "records_new",
            "records_updated",
            "records_unchanged",
            "pages_not_modified",
            "pages_skipped",
        )
    )
    # A distributed run's worker: the records its fellow workers stored count too.
    accounted += int(stats.get(RUN_RECORDS_ANSWERED, 0))
    if not listed or accounted:
        return []
    return [
        f"the entry points listed {listed} record page(s) but the run stored none of them "
        "(see harvester/ignored and harvester/errors in crawl_runs.stats)"
    ]
