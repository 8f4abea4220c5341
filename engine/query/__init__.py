"""Permissioned SQL: one read-only SELECT over a refiner's database into query_results.db.

No web or chain code here. `run_query` opens the refiner's SQLite file
read-only, refuses anything but a single SELECT (via sqlglot for the
message and SQLite's authorizer for enforcement), checks that the caller's
permissions cover every column SQLite reports read, and writes a new SQLite
file with exactly one table, `results`. The query runs in a child process (isolate.py) whose time and
memory are bounded even inside one SQLite step. See docs/query.md.
"""

from __future__ import annotations

from .authorizer import ALLOWED_FUNCTIONS
from .isolate import analyse_query, run_query
from .model import AccessReport, Permission, QueryLimits

__all__ = ["ALLOWED_FUNCTIONS", "AccessReport", "Permission", "QueryLimits", "analyse_query", "run_query"]
