"""The preflight's memo of compiled queries: what one analysis depends on, and a bounded LRU of them.

Compiling and pricing a query (engine.query.analyse_query) costs a fresh
query process; builders resubmit the same query (a dashboard, an app with a
fixed query), so ``Preflight`` remembers each successful ``AccessReport``
under an ``AnalysisKey`` of everything that report depends on: the data
file's identity (never its key), the SQL text, the params' exact values, the
permissions, the query limits, the refiner and the grantee. Pure: the caller
reads the file's identity (engine/preflight.py) and decides what to remember.

Bounded: ``MEMO_ENTRIES`` reports, and a call whose SQL plus params is over
``MEMO_MAX_TEXT_CHARS`` is never remembered, so the memo holds at most
``MEMO_ENTRIES * MEMO_MAX_TEXT_CHARS`` characters of SQL and params (4 Mi
characters) plus, per entry, the owner's few permissions on one refiner and
one report.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

from engine.lru import BoundedLRU
from engine.query.model import AccessReport, QueryLimits

__all__ = ["MEMO_ENTRIES", "MEMO_MAX_TEXT_CHARS", "AnalysisKey", "AnalysisMemo", "DataIdentity", "analysis_key"]

MEMO_ENTRIES = 256
MEMO_MAX_TEXT_CHARS = 16 * 1024
# What a number or null counts for against MEMO_MAX_TEXT_CHARS: its objects in
# the key cost far more than its JSON characters, so [1,1,1,...] cannot fill the memo.
_VALUE_CHARS = 64

# ("plain" | "sealed", resolved path, st_dev, st_ino, st_size, st_mtime_ns)
DataIdentity = tuple[str, str, int, int, int, int]


@dataclass(frozen=True)
class AnalysisKey:
    """Everything an analysis's report depends on; equal keys mean the same report."""

    data: DataIdentity
    sql: str
    params: tuple[Hashable, ...]  # _params_form: tagged, so 1, 1.0 and true differ
    permissions: tuple[Hashable, ...]  # in the order the analysis was given them
    limits: QueryLimits
    refiner_id: int
    grantee: str | None


def analysis_key(data: DataIdentity | None, sql: str, params: object, permissions: Sequence[object],
                 limits: QueryLimits, *, refiner_id: int, grantee: str | None) -> AnalysisKey | None:
    """The key of one analysis, or None when it must not be remembered.

    None: the data's identity is unknown, the SQL plus params is over
    ``MEMO_MAX_TEXT_CHARS``, the params are not a list/object of JSON scalars,
    or any part is not hashable (the analysis then runs as if there were no memo).
    """
    if data is None or not isinstance(sql, str):
        return None
    form = _params_form(params)
    if form is None:
        return None
    values, chars = form
    if len(sql) + chars > MEMO_MAX_TEXT_CHARS:
        return None
    key = AnalysisKey(data, sql, values, tuple(permissions), limits, refiner_id, grantee)
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _params_form(params: object) -> tuple[tuple[Hashable, ...], int] | None:
    """(a hashable form of `params`, its size in characters), None for anything but JSON scalars."""
    if params is None:
        return ("none",), 0
    if isinstance(params, Mapping):
        named: list[tuple[str, tuple]] = []
        chars = 0
        for name, value in params.items():
            tagged = _tagged(value)
            if not isinstance(name, str) or tagged is None:
                return None
            named.append((name, tagged))
            chars += len(name) + _chars(value)
        # Names are distinct, so the sort never compares two values.
        return ("named", *sorted(named)), chars
    if isinstance(params, (list, tuple)):
        tagged_values = [_tagged(value) for value in params]
        if any(t is None for t in tagged_values):
            return None
        return ("positional", *tagged_values), sum(_chars(value) for value in params)
    return None


def _tagged(value: object) -> tuple | None:
    # The type is part of the value: 1 == 1.0 == True in Python, not as SQLite binds them.
    if value is None:
        return ("null",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("float", value.hex())  # exact, and -0.0 and nan are themselves
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, bytes):
        return ("bytes", value)
    return None


def _chars(value: object) -> int:
    return _VALUE_CHARS + (len(value) if isinstance(value, (str, bytes)) else 0)


class AnalysisMemo(BoundedLRU[AnalysisKey, AccessReport]):
    """Successful reports by key, the least recently used dropped past `entries`; thread-safe."""

    def __init__(self, entries: int = MEMO_ENTRIES):
        super().__init__(entries)
