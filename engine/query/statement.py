"""Statement-level checks before SQLite sees the SQL: one SELECT, sane params.

sqlglot gives the friendly refusals ("PRAGMA is not allowed"); SQLite's
authorizer (see `authorizer.py`) remains the enforcement, so SQL that sqlglot
cannot parse is handed on to SQLite rather than refused here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from engine.errors import QueryFailure

__all__ = ["Params", "check_params", "check_statement"]

Params = Sequence[object] | Mapping[str, object]

_SELECT_TYPES: tuple[type[exp.Expression], ...] = (exp.Select, exp.Union, exp.Except, exp.Intersect)

# sqlglot class -> the keyword named in the refusal.
_KINDS: dict[str, str] = {
    "Insert": "INSERT",
    "Update": "UPDATE",
    "Delete": "DELETE",
    "Merge": "MERGE",
    "Create": "CREATE",
    "Drop": "DROP",
    "Alter": "ALTER",
    "Pragma": "PRAGMA",
    "Attach": "ATTACH",
    "Detach": "DETACH",
    "Transaction": "BEGIN",
    "Commit": "COMMIT",
    "Rollback": "ROLLBACK",
    "Analyze": "ANALYZE",
    "Values": "VALUES",
}

_SCALARS = (int, float, str, bytes, type(None))
# SQLite integers are 64-bit: a bigger JSON number cannot be bound at all.
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


def _invalid(message: str) -> QueryFailure:
    return QueryFailure(message, code="QUERY_INVALID")


def check_statement(sql: str) -> str:
    """Return the statement's text without trailing `;` or comments.

    Raises QueryFailure(QUERY_INVALID) for empty input, several statements or
    a statement that is not a SELECT (WITH ... SELECT and compound SELECTs
    included).
    """
    if not isinstance(sql, str):
        raise _invalid("the query must be a string")
    try:
        tokens = sqlglot.Tokenizer(dialect="sqlite").tokenize(sql)
    except TokenError as exc:
        raise _invalid(f"the SQL could not be tokenized ({_first_line(exc)})") from exc
    while tokens and tokens[-1].token_type == TokenType.SEMICOLON:
        tokens.pop()
    if not tokens:
        raise _invalid("the query is empty")
    body = sql[: tokens[-1].end + 1]
    if any(t.token_type == TokenType.SEMICOLON for t in tokens):
        raise _invalid("only one statement is allowed")
    try:
        parsed = [e for e in sqlglot.parse(body, read="sqlite") if e is not None]
    except (ParseError, RecursionError):
        # Too odd or too deeply nested for sqlglot: SQLite parses it (or says
        # why not, e.g. its expression depth limit) under the authorizer.
        return body
    if len(parsed) != 1:
        raise _invalid("only one statement is allowed")
    stmt = parsed[0]
    while isinstance(stmt, exp.Subquery):
        stmt = stmt.this
    if not isinstance(stmt, _SELECT_TYPES):
        kind = _KINDS.get(type(stmt).__name__) or _first_keyword(body)
        raise _invalid(f"{kind} is not allowed; only a single SELECT statement is")
    return body


def check_params(params: Params | None) -> Sequence[object] | Mapping[str, object]:
    """Positional (JSON list) or named (JSON object) parameters of scalars only.

    Integers must fit SQLite's signed 64 bits. The job service checks this at
    submit (engine/submission.py), so a bad value is refused before it queues.
    """
    if params is None:
        return ()
    if isinstance(params, Mapping):
        for name, value in params.items():
            if not isinstance(name, str):
                raise _invalid("named parameters must have string names")
            _check_value(f":{name}", value)
        return dict(params)
    if isinstance(params, (str, bytes)) or not isinstance(params, Sequence):
        raise _invalid("params must be a JSON list (positional) or object (named)")
    for i, value in enumerate(params, start=1):
        _check_value(str(i), value)
    return list(params)


def _check_value(label: str, value: object) -> None:
    if not isinstance(value, _SCALARS):
        raise _invalid(f"parameter {label} must be a number, string or null")
    if isinstance(value, int) and not _INT_MIN <= value <= _INT_MAX:
        raise _invalid(f"parameter {label} is an integer outside SQLite's 64-bit range "
                       f"({_INT_MIN}..{_INT_MAX})")


def _first_keyword(sql: str) -> str:
    words = sql.split()
    return words[0].upper() if words else "this statement"


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
