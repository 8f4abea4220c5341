"""engine.preflight_memo: which analyses have a key, which keys differ, and the LRU's bound."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from engine.preflight_memo import MEMO_MAX_TEXT_CHARS, AnalysisMemo, analysis_key
from engine.query.model import AccessReport, Permission, QueryLimits

DATA = ("sealed", "/data/refiners/3-ab.sealed", 1, 2, 3, 4)
PERMS = (Permission(5, "0xabc", 3, "users", "locale", 7),)
LIMITS = QueryLimits()
REPORT = AccessReport((("users", "locale"),), (5,), 7, 0)


def key(data=DATA, sql="SELECT locale FROM users WHERE id = ?", params=(1,), permissions=PERMS,
        limits=LIMITS, refiner_id=3, grantee="0xabc"):
    return analysis_key(data, sql, params, permissions, limits, refiner_id=refiner_id, grantee=grantee)


@dataclass
class Unhashable:  # not frozen: eq without hash
    refiner_id: int


@pytest.mark.parametrize("kwargs", [
    pytest.param({"data": None}, id="no-data-identity"),
    pytest.param({"params": [[1]]}, id="nested-params"),
    pytest.param({"params": {"a": {"b": 1}}}, id="nested-named-params"),
    pytest.param({"params": {1: 1}}, id="a-name-not-a-string"),
    pytest.param({"params": "1"}, id="params-a-string"),
    pytest.param({"permissions": [Unhashable(3)]}, id="unhashable-permission"),
    pytest.param({"sql": "x" * (MEMO_MAX_TEXT_CHARS + 1)}, id="sql-too-long"),
])
def test_what_is_never_remembered(kwargs) -> None:
    assert key(**kwargs) is None


@pytest.mark.parametrize("a, b", [
    ([1], [1.0]), ([1], [True]), ([0.0], [-0.0]), ([1], ["1"]), (["x"], [b"x"]), (None, []),
    ([1, 2], [2, 1]), ({"a": 1}, [1]),
])
def test_params_differ_by_type_and_order(a, b) -> None:
    assert key(params=a) != key(params=b)


def test_named_params_are_one_key_in_any_order_and_nan_is_itself() -> None:
    assert key(params={"a": 1, "b": "x"}) == key(params={"b": "x", "a": 1})
    assert key(params=[float("nan")]) == key(params=[float("nan")])


def test_the_lru_keeps_the_most_recently_used() -> None:
    memo = AnalysisMemo(entries=2)
    a, b, c = key(params=[1]), key(params=[2]), key(params=[3])
    memo.put(a, REPORT)
    memo.put(b, REPORT)
    assert memo.get(a) is REPORT  # a used: b is now the oldest
    memo.put(c, REPORT)
    assert memo.keys() == [a, c] and memo.get(b) is None


def test_a_memo_holds_at_least_one_entry() -> None:
    with pytest.raises(ValueError):
        AnalysisMemo(entries=0)
