"""The garbage collector's setting (collector.py): the threshold and its override."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from authz_operator import collector


@pytest.fixture(autouse=True)
def _thresholds_restored() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_a_full_collection_is_considered_ten_times_less_often() -> None:
    young, middle, _ = gc.get_threshold()
    assert collector.collect_less_often({}) == collector.FULL_EVERY == 100
    assert gc.get_threshold() == (young, middle, 100)


def test_the_environment_can_choose_cpythons_own_setting() -> None:
    assert collector.collect_less_often({collector.ENV: "10"}) == 10
    assert gc.get_threshold()[2] == 10


@pytest.mark.parametrize("raw", ["often", "0", "-3", "2.5"])
def test_a_bad_setting_names_the_variable_and_what_it_expects(raw: str) -> None:
    with pytest.raises(SystemExit, match=f"AUTHZ_GC_FULL_EVERY='{raw}': expected a whole"):
        collector.full_every({collector.ENV: raw})
