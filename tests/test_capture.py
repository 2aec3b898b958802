"""`harvester capture`: local-site pages become fixtures whose golden files hold the truth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harvester.capture import fixture_name
from harvester.localsite import serve_site
from tests.support import REPO

CAPTURE = [sys.executable, "-m", "harvester.cli", "capture"]
UNREACHABLE = "http://127.0.0.1:9/ncjrs/virtual-library/abstracts"  # port 9: discard, closed


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://www.ojp.gov/ncjrs/virtual-library/abstracts/some-record", "captured-some-record"),
        ("https://www.ncjrs.gov/App/Publications/abstract.aspx?ID=78126", "captured-legacy-78126"),
        ("https://nij.ojp.gov/library/publications/A_B%20c/", "captured-a-b-20c"),
    ],
)
def test_fixture_name(url: str, name: str) -> None:
    assert fixture_name(url) == name


def test_captured_pages_carry_what_the_parser_reads_today(tmp_path: Path) -> None:
    with serve_site(records=30, seed=3) as site:
        truth = [t for t in site.truth() if t["kind"] == "record"]
        current = next(t for t in truth if t["layout"] == "current")
        legacy = next(t for t in truth if t["layout"] == "legacy")
        soft_404 = site.url(site.site.entry_path(("soft404", site.site.records)))
        done = subprocess.run(
            [*CAPTURE, "--dir", str(tmp_path), current["url"], legacy["url"], soft_404],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Review the .json files" in done.stdout
    for entry in (current, legacy):
        name = fixture_name(entry["url"])
        golden = json.loads((tmp_path / f"{name}.json").read_text(encoding="utf-8"))
        assert golden["kind"] == "record"
        assert golden["layout"] == entry["layout"]
        assert golden["expected"] == entry["expected"]
        assert (tmp_path / f"{name}.html").read_bytes().startswith(b"<!DOCTYPE html")
    soft = json.loads((tmp_path / f"{fixture_name(soft_404)}.json").read_text(encoding="utf-8"))
    assert soft["kind"] == "soft_404"


def test_an_unreachable_page_is_reported_and_fails(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CAPTURE, "--dir", str(tmp_path), f"{UNREACHABLE}/x", "-s", "RETRY_TIMES=0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "not captured: http://127.0.0.1:9/" in done.stderr
    assert list(tmp_path.iterdir()) == []
