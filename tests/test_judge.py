"""harvester.judge: one verdict per page, the same whichever way the page arrives."""

from __future__ import annotations

import pickle

import pytest

from harvester.judge import judge_page, judge_raw, judge_response
from harvester.normalize import record_content
from tests.support import golden, page_names, response_from_file

NAMES = page_names()


@pytest.mark.parametrize("name", NAMES)
def test_verdict_matches_the_golden_file(name: str) -> None:
    expected = golden(name)
    judgement = judge_response(response_from_file(name))
    if expected["kind"] == "record":
        assert judgement.verdict == "record"
        assert judgement.record is not None
        assert judgement.digest is not None
        assert record_content(judgement.record) == expected["expected"]
    elif expected["kind"] == "rejected":
        assert judgement.verdict == "quarantined"
        assert judgement.rejection is not None
        assert judgement.rejection.reason == expected["rejection"]
        assert judgement.digest is None
    else:
        assert judgement.verdict == "not_record"
        assert judgement.not_record == expected["kind"]
        assert judgement.record is None
        assert judgement.page is None


@pytest.mark.parametrize("name", NAMES)
def test_a_stored_page_is_judged_as_when_it_was_fetched(name: str) -> None:
    fetched = judge_response(response_from_file(name))
    if fetched.page is None:
        return  # not a record page: nothing is stored to judge again
    again = judge_page(fetched.page)
    assert again.verdict == fetched.verdict
    assert again.digest == fetched.digest
    assert again.page is fetched.page
    assert again.record is not None
    assert fetched.record is not None
    assert again.record.fetched_at == fetched.record.fetched_at


def test_raw_values_alone_give_the_same_verdict() -> None:
    name = next(n for n in NAMES if golden(n)["kind"] == "record")
    fetched = judge_response(response_from_file(name), keep_page=False)
    assert fetched.record is not None
    assert fetched.record.raw is not None
    again = judge_raw(fetched.record.raw)
    assert (again.verdict, again.digest) == ("record", fetched.digest)
    assert again.page is None


def test_a_judgement_pickles_for_another_process() -> None:
    name = next(n for n in NAMES if golden(n)["kind"] == "record")
    judgement = judge_response(response_from_file(name))
    copy = pickle.loads(pickle.dumps(judgement))
    assert copy.digest == judgement.digest
    assert copy.page is not None
    assert copy.page.body == response_from_file(name).body
