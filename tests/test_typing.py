"""The strict type check of harvester/ and spiders/ (pyproject.toml, [tool.mypy]).

It runs inside the test suite so that `pytest`, the README's one test line and what .ci/run
runs, fails on a type error like on any other defect.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ("harvester", "spiders")

# `# type: ignore[code]` followed by `# why`, or with the reason on the comment line above.
_IGNORE = re.compile(r"#\s*type:\s*ignore(?P<codes>\[[^\]]*\])?(?P<rest>.*)$")


def test_harvester_and_spiders_type_check_strictly(monkeypatch: pytest.MonkeyPatch) -> None:
    # The paths in [tool.mypy] are relative to the repository root; the cache under it makes
    # a second run take seconds instead of tens of seconds.
    monkeypatch.chdir(ROOT)
    report, errors, status = api.run(["--config-file", str(ROOT / "pyproject.toml")])
    assert status == 0, f"mypy found type errors:\n{report}{errors}"
    assert report.startswith("Success: no issues found"), report


def test_every_type_ignore_names_its_error_and_says_why() -> None:
    unexplained = []
    for package in CHECKED:
        for path in sorted((ROOT / package).rglob("*.py")):
            lines = path.read_text(encoding="utf-8").splitlines()
            for number, line in enumerate(lines, start=1):
                found = _IGNORE.search(line)
                if found is None:
                    continue
                reason_after = found["rest"].strip().startswith("#")
                reason_above = number > 1 and lines[number - 2].strip().startswith("#")
                if not found["codes"] or not (reason_after or reason_above):
                    unexplained.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not unexplained, "type: ignore without an error code or a reason:\n" + "\n".join(
        unexplained
    )
