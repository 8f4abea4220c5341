"""engine.query: permissioned SELECT over a real refiner SQLite file.

A realistic refiner database is built once per module; after every test its
sha256 must be unchanged (the source is opened read-only).
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
from pathlib import Path

import pytest

import engine.query as query_pkg
from engine.errors import QueryFailure
from engine.query import AccessReport, Permission, QueryLimits, run_query
from engine.query.pricing import active_permissions, price_reads
from engine.query.results import declared_type, dedupe_names

ALICE = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BOB = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
USERS = [  # id, name, email, age, locale_id, score, avatar
    (1, "Alice Liddell", "alice@wonder.example", 31, 1, 9.5, b"\x89PNG1"),
    (2, "Bob Builder", "bob@site.example", 45, 2, 7.25, None),
    (3, "Carol Danvers", "carol@sky.example", 28, 1, None, b"\x89PNG3"),
    (4, "Dan Brown", "dan@books.example", 52, 3, 6.0, None),
]
SECRET_VALUES = [v for u in USERS for v in u[1:3]]
USER_COLUMNS = ["id", "name", "email", "age", "locale_id", "score", "avatar"]
ALL = [Permission(1, None, 1, "", "", 0, True)]
LIMITS = QueryLimits(max_rows=1000, timeout_s=10, max_result_bytes=8 * 1024 * 1024)

SCHEMA = """
CREATE TABLE locales (locale_id INTEGER PRIMARY KEY, code TEXT NOT NULL, label TEXT);
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, email TEXT, age INTEGER,
                    locale_id INTEGER REFERENCES locales, score REAL, avatar BLOB);
CREATE TABLE activities (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, kind TEXT,
                         minutes INTEGER, at TEXT);
CREATE INDEX activities_user_kind ON activities (user_id, kind);
CREATE TABLE tags (user_id INTEGER, tag TEXT);
CREATE INDEX tags_user ON tags (user_id);
CREATE VIEW v_public_users AS SELECT id, name FROM users;
CREATE VIEW v_user_minutes AS
  SELECT u.name AS name, sum(a.minutes) AS minutes
  FROM users u JOIN activities a ON a.user_id = u.id GROUP BY u.id;
"""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def refiner_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("refiner") / "refiner.db"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.executemany("INSERT INTO locales VALUES (?, ?, ?)",
                     [(1, "en", "English"), (2, "fr", "French"), (3, "de", "German")])
    conn.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?)", USERS)
    kinds = ["run", "walk", "swim"]
    conn.executemany("INSERT INTO activities VALUES (?, ?, ?, ?, ?)",
                     [(i, 1 + i % 4, kinds[i % 3], 10 + i, f"2024-01-{1 + i % 28:02d}")
                      for i in range(1, 41)])
    conn.executemany("INSERT INTO tags VALUES (?, ?)", [(1, "vip"), (2, "new"), (1, "beta")])
    conn.commit()
    conn.close()
    return path


@pytest.fixture(autouse=True)
def source_unchanged(refiner_db: Path):
    before = _sha256(refiner_db)
    yield
    assert _sha256(refiner_db) == before, "the source database was modified"
    leftovers = [p.name for p in refiner_db.parent.iterdir() if p.name != "refiner.db"]
    assert leftovers == [], f"files appeared next to the source: {leftovers}"


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "query_results.db"


def _results(path: Path) -> tuple[list[tuple[str, str]], list[tuple]]:
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
        assert tables == ["results"]
        cols = [(r[1], r[2]) for r in conn.execute("PRAGMA table_info(results)")]
        rows = conn.execute("SELECT * FROM results ORDER BY rowid").fetchall()
        return cols, rows
    finally:
        conn.close()


def _direct(db: Path, sql: str, params=()) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _fail(refiner_db: Path, out: Path, sql: str, params=None, perms=ALL, limits=LIMITS,
          **kw) -> QueryFailure:
    with pytest.raises(QueryFailure) as info:
        run_query(refiner_db, sql, params, perms, out, limits, **kw)
    assert not out.exists(), "no output file may exist after a refusal"
    assert list(out.parent.iterdir()) == [], "no temporary file may be left behind"
    for value in SECRET_VALUES:
        assert value not in info.value.message
    return info.value


# --- refused statements --------------------------------------------------------

REFUSED = [
    ("INSERT INTO users (name) VALUES ('x')", "INSERT is not allowed"),
    ("REPLACE INTO users (id, name) VALUES (1, 'x')", "REPLACE is not allowed"),
    ("UPDATE users SET name = 'x'", "UPDATE is not allowed"),
    ("DELETE FROM users", "DELETE is not allowed"),
    ("CREATE TABLE t (a)", "CREATE is not allowed"),
    ("CREATE TEMP TABLE t AS SELECT * FROM users", "CREATE is not allowed"),
    ("CREATE TEMP VIEW v AS SELECT 1", "CREATE is not allowed"),
    ("DROP TABLE users", "DROP is not allowed"),
    ("ALTER TABLE users ADD COLUMN x", "ALTER is not allowed"),
    ("ATTACH DATABASE '/tmp/x.db' AS x", "ATTACH is not allowed"),
    ("DETACH DATABASE main", "DETACH is not allowed"),
    ("PRAGMA table_info(users)", "PRAGMA is not allowed"),
    ("PRAGMA writable_schema = ON", "PRAGMA is not allowed"),
    ("BEGIN", "BEGIN is not allowed"),
    ("VACUUM", "VACUUM is not allowed"),
    ("EXPLAIN SELECT 1", "EXPLAIN is not allowed"),
    ("WITH x AS (SELECT 1) INSERT INTO users (id) SELECT * FROM x", "INSERT is not allowed"),
    ("SELECT load_extension('/tmp/evil.so')", "function load_extension() is not allowed"),
    ("SELECT randomblob(1000000000)", "function randomblob() is not allowed"),
    ("SELECT sqlite_version()", "function sqlite_version() is not allowed"),
    ("SELECT name FROM users WHERE name REGEXP 'a'", "SQLite refused the query"),
    ("SELECT * FROM sqlite_master", "internal table sqlite_master is not allowed"),
    ("SELECT sql FROM sqlite_schema", "internal table sqlite_master is not allowed"),
    ("SELECT * FROM temp.sqlite_master", "not allowed"),
    ("SELECT * FROM pragma_table_info('users')", "table-valued functions are not allowed"),
    ("SELECT value FROM json_each('[1,2]')", "table-valued functions are not allowed"),
    ("SELECT 1; SELECT 2", "only one statement is allowed"),
    ("SELECT 1; DROP TABLE users", "only one statement is allowed"),
    ("", "the query is empty"),
    ("  ;  ", "the query is empty"),
    ("-- just a comment", "the query is empty"),
    ("SELEC name FROM users", "syntax error"),
    ("SELECT nope FROM users", "no such column: nope"),
    ("SELECT * FROM no_such_table", "no such table: no_such_table"),
]


@pytest.mark.parametrize("sql, fragment", REFUSED, ids=[r[0][:40] or "empty" for r in REFUSED])
def test_refused_statements(refiner_db: Path, out: Path, sql: str, fragment: str) -> None:
    err = _fail(refiner_db, out, sql)
    assert err.code == "QUERY_INVALID"
    assert fragment in err.message
    assert str(err).startswith("QUERY_INVALID: ")


def test_trailing_semicolon_and_comment_are_accepted(refiner_db: Path, out: Path) -> None:
    report = run_query(refiner_db, "SELECT id FROM users WHERE id < 3; -- done\n", None, ALL,
                       out, LIMITS)
    assert report.row_count == 2
    assert _results(out)[1] == [(1,), (2,)]


# --- reads come from SQLite itself ----------------------------------------------

READS = [
    ("SELECT * FROM users", {("users", c) for c in USER_COLUMNS}),
    ("SELECT count(*) FROM users", {("users", "")}),
    ("SELECT name FROM users WHERE email LIKE '%example'", {("users", "name"), ("users", "email")}),
    ("SELECT 1 FROM users WHERE age > 40", {("users", "age")}),
    ("SELECT name FROM users WHERE id IN (SELECT user_id FROM activities WHERE kind = 'run')",
     {("users", "name"), ("users", "id"), ("activities", "user_id"), ("activities", "kind")}),
    ("WITH r AS (SELECT user_id, minutes FROM activities) SELECT sum(minutes) FROM r",
     {("activities", "user_id"), ("activities", "minutes")}),
    ("SELECT u.name FROM users u JOIN locales USING (locale_id)",
     {("users", "name"), ("users", "locale_id"), ("locales", "locale_id")}),
    ("SELECT kind FROM activities JOIN tags USING (user_id)",
     {("activities", "kind"), ("activities", "user_id"), ("tags", "user_id")}),
    ("SELECT tag FROM tags NATURAL JOIN activities",
     {("tags", "tag"), ("tags", "user_id"), ("activities", "user_id")}),
    ("SELECT name FROM v_public_users", {("users", "id"), ("users", "name")}),
    ("SELECT name FROM v_user_minutes WHERE minutes > 100",
     {("users", "name"), ("users", "id"), ("activities", "minutes"), ("activities", "user_id")}),
    ("SELECT kind FROM activities GROUP BY kind ORDER BY max(minutes)",
     {("activities", "kind"), ("activities", "minutes")}),
    ("SELECT id FROM users ORDER BY score", {("users", "id"), ("users", "score")}),
    ("SELECT count(*) FROM activities WHERE user_id = 3", {("activities", "user_id")}),
    ("SELECT rowid FROM tags", {("tags", "rowid")}),
    ("SELECT code FROM locales UNION SELECT tag FROM tags",
     {("locales", "code"), ("tags", "tag")}),
    ("SELECT (SELECT count(*) FROM tags) AS n", {("tags", "")}),
    ("SELECT 1 + 1 AS two", set()),
    # a CTE is not a table: counting its rows reads no data
    ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<10) SELECT count(*) FROM c",
     set()),
    ("WITH n AS (SELECT 1 AS one) SELECT count(*) FROM n", set()),
    ("WITH c AS (SELECT code FROM locales) SELECT count(*) FROM c", {("locales", "code")}),
    ("SELECT count(*) FROM (SELECT id FROM users WHERE age > 40)", {("users", "id"), ("users", "age")}),
    ("SELECT count(*) FROM (SELECT 1 FROM users)", {("users", "")}),
    # a CTE named like a real table reads what its body reads, not the namesake
    ("WITH locales AS (SELECT * FROM users) SELECT count(*) FROM locales",
     {("users", c) for c in USER_COLUMNS}),
    ("WITH users AS (SELECT code FROM locales) SELECT * FROM users", {("locales", "code")}),
]


@pytest.mark.parametrize("sql, expected", READS, ids=[r[0][:50] for r in READS])
def test_columns_read(refiner_db: Path, out: Path, sql: str, expected: set) -> None:
    report = run_query(refiner_db, sql, None, ALL, out, LIMITS)
    assert set(report.columns) == expected
    assert list(report.columns) == sorted(report.columns)
    assert sorted(_results(out)[1]) == sorted(_direct(refiner_db, sql))


def test_cte_counted_needs_no_permission(refiner_db: Path, out: Path) -> None:
    sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<10) SELECT count(*) FROM c"
    report = run_query(refiner_db, sql, None, [], out, LIMITS)
    assert report.columns == () and report.price == 0
    assert _results(out)[1] == [(10,)]


@pytest.mark.parametrize("sql", [
    "WITH locales AS (SELECT * FROM users) SELECT count(*) FROM locales",
    "WITH locales AS (SELECT email AS code FROM users) SELECT code FROM locales",
    ("WITH RECURSIVE locales(code) AS (SELECT email FROM users UNION SELECT code FROM locales) "
     "SELECT count(*) FROM locales"),
])
def test_cte_shadowing_a_table_cannot_read_another_uncovered(refiner_db: Path, out: Path, sql: str) -> None:
    err = _fail(refiner_db, out, sql, perms=[Permission(1, None, 1, "locales", "", 0, True)])
    assert err.code == "PERMISSION_DENIED"
    assert "users." in err.message


# --- the permission matrix ------------------------------------------------------

def P(pid: int, table: str, column: str, *, grantee: str | None = None, price: int = 0,
      approved: bool = True, refiner: int = 1) -> Permission:
    return Permission(pid, grantee, refiner, table, column, price, approved)


ALLOWED = [
    ("generic column", [P(1, "users", "name")]),
    ("grantee's own", [P(1, "users", "name", grantee=ALICE)]),
    ("grantee, other case", [P(1, "users", "name", grantee=ALICE.lower())]),
    ("zero-address grantee is anyone", [P(1, "users", "name", grantee="0x" + "0" * 40)]),
    ("table-wide", [P(1, "users", "")]),
    ("every table", [P(1, "", "")]),
    ("names compare case-insensitively", [P(1, "USERS", "Name")]),
    ("one good among bad", [P(1, "users", "email"), P(2, "users", "name", approved=False),
                            P(3, "users", "name", refiner=2), P(4, "users", "name")]),
]


@pytest.mark.parametrize("perms", [a[1] for a in ALLOWED], ids=[a[0] for a in ALLOWED])
def test_permission_allows(refiner_db: Path, out: Path, perms: list[Permission]) -> None:
    report = run_query(refiner_db, "SELECT name FROM users", None, perms, out, LIMITS,
                       refiner_id=1, grantee=ALICE)
    assert report.columns == (("users", "name"),)
    assert report.row_count == len(USERS)


DENIED = [
    ("no permissions", []),
    ("another column", [P(1, "users", "email")]),
    ("another table", [P(1, "activities", "")]),
    ("unapproved", [P(1, "users", "name", approved=False)]),
    ("another grantee's", [P(1, "users", "name", grantee=BOB)]),
    ("another refiner's", [P(1, "users", "name", refiner=2)]),
    ("another refiner's, table-wide", [P(1, "", "", refiner=7)]),
    ("a view grants nothing", [P(1, "v_public_users", "")]),
]


@pytest.mark.parametrize("perms", [d[1] for d in DENIED], ids=[d[0] for d in DENIED])
def test_permission_denies(refiner_db: Path, out: Path, perms: list[Permission]) -> None:
    err = _fail(refiner_db, out, "SELECT name FROM users WHERE email = 'alice@wonder.example'",
                perms=perms, refiner_id=1, grantee=ALICE)
    assert err.code == "PERMISSION_DENIED"
    assert "users.name" in err.message or "users.email" in err.message
    assert str(err).startswith("PERMISSION_DENIED: no permission covers users.")


def test_denial_names_every_uncovered_column(refiner_db: Path, out: Path) -> None:
    err = _fail(refiner_db, out, "SELECT name, email, age FROM users",
                perms=[P(1, "users", "name")])
    assert err.message == "no permission covers users.age, users.email"


def test_column_only_in_where_needs_permission(refiner_db: Path, out: Path) -> None:
    err = _fail(refiner_db, out, "SELECT name FROM users WHERE age > 40",
                perms=[P(1, "users", "name")])
    assert err.message == "no permission covers users.age"


def test_using_join_needs_both_columns(refiner_db: Path, out: Path) -> None:
    # The authorizer alone never reports locales here; the bytecode does.
    err = _fail(refiner_db, out, "SELECT u.name FROM users u JOIN locales USING (locale_id)",
                perms=[P(1, "users", "")])
    assert err.message == "no permission covers locales.locale_id"


def test_view_needs_the_underlying_columns(refiner_db: Path, out: Path) -> None:
    err = _fail(refiner_db, out, "SELECT name FROM v_user_minutes",
                perms=[P(1, "users", ""), P(2, "v_user_minutes", "")])
    assert err.message == "no permission covers activities.minutes, activities.user_id"


@pytest.mark.parametrize("perms, ok", [
    ([P(1, "users", "email")], True),        # any column of the table covers count(*)
    ([P(1, "users", "")], True),
    ([P(1, "", "")], True),
    ([P(1, "activities", "")], False),
    ([P(1, "users", "email", approved=False)], False),
])
def test_count_star_needs_any_permission_on_the_table(refiner_db: Path, out: Path, perms,
                                                      ok: bool) -> None:
    sql = "SELECT count(*) FROM users"
    if ok:
        assert run_query(refiner_db, sql, None, perms, out, LIMITS).columns == (("users", ""),)
        assert _results(out)[1] == [(len(USERS),)]
    else:
        assert _fail(refiner_db, out, sql, perms=perms).message == "no permission covers users (table)"


def test_without_filters_every_given_permission_counts(refiner_db: Path, out: Path) -> None:
    # The caller (the job service) passes the job owner's permissions already filtered.
    report = run_query(refiner_db, "SELECT name FROM users", None,
                       [P(1, "users", "name", grantee=BOB)], out, LIMITS)
    assert report.permissions_used == (1,)


# --- price -----------------------------------------------------------------------

PRICES = [
    ("cheapest per column",
     "SELECT name, email FROM users",
     [P(1, "users", "name", price=5), P(2, "users", "", price=3), P(3, "", "", price=100),
      P(4, "users", "email", price=1)], (2, 4), 4),
    ("one permission is paid once",
     "SELECT name, age, score FROM users", [P(1, "users", "", price=3)], (1,), 3),
    ("tie goes to the lowest id",
     "SELECT name FROM users", [P(9, "users", "name", price=2), P(4, "users", "", price=2)], (4,), 2),
    ("count(*) takes the cheapest permission on the table",
     "SELECT count(*) FROM users", [P(1, "users", "name", price=5), P(2, "users", "email", price=1)],
     (2,), 1),
    ("table-level read reuses a permission already paid",
     "SELECT name, (SELECT count(*) FROM tags) FROM users",
     [P(1, "users", "name", price=5), P(2, "tags", "tag", price=1), P(3, "", "", price=9)], (1, 2), 6),
    ("unapproved cheaper permission is ignored",
     "SELECT name FROM users", [P(1, "users", "name", price=0, approved=False),
                                P(2, "users", "name", price=7)], (2,), 7),
    ("wei-sized prices add up exactly",
     "SELECT name, email FROM users",
     [P(1, "users", "name", price=10**18), P(2, "users", "email", price=10**18 + 1)], (1, 2),
     2 * 10**18 + 1),
]


@pytest.mark.parametrize("sql, perms, used, price", [p[1:] for p in PRICES],
                         ids=[p[0] for p in PRICES])
def test_price_rule(refiner_db: Path, out: Path, sql: str, perms, used, price) -> None:
    report = run_query(refiner_db, sql, None, perms, out, LIMITS)
    assert report.permissions_used == used
    assert report.price == price


def test_price_reads_unit() -> None:
    perms = active_permissions([P(1, "a", "x", price=3), P(2, "a", "", price=2, grantee=BOB),
                                P(3, "a", "x", price=1, refiner=5)], refiner_id=1, grantee=ALICE)
    assert [p.id for p in perms] == [1]
    assert price_reads({("a", "x")}, perms) == ((1,), 3)
    with pytest.raises(QueryFailure, match="no permission covers a.y"):
        price_reads({("a", "x"), ("a", "y")}, perms)


# --- params -----------------------------------------------------------------------

@pytest.mark.parametrize("sql, params", [
    ("SELECT name FROM users WHERE age > ? AND locale_id = ? ORDER BY id", [30, 1]),
    ("SELECT name FROM users WHERE age > :min_age AND locale_id = :loc ORDER BY id",
     {"min_age": 30, "loc": 1}),
    ("SELECT name FROM users WHERE age > ?1 AND locale_id = ?2 ORDER BY id", [30, 1]),
    ("SELECT name FROM users WHERE name = ? OR score > ? OR avatar = ? OR email IS ?",
     ["Bob Builder", 9.0, b"\x89PNG3", None]),
])
def test_params(refiner_db: Path, out: Path, sql: str, params) -> None:
    report = run_query(refiner_db, sql, params, ALL, out, LIMITS)
    expected = _direct(refiner_db, sql, params)
    assert expected and _results(out)[1] == expected
    assert report.row_count == len(expected)


@pytest.mark.parametrize("params, fragment", [
    ([1, 2], "Incorrect number of bindings"),
    ([], "Incorrect number of bindings"),
    ([[1]], "parameter 1 must be a number, string or null"),
    ({"x": {"y": 1}}, "parameter :x must be a number, string or null"),
    ([2**70], "parameter 1 is an integer outside SQLite's 64-bit range"),
    ({"n": -(2**63) - 1}, "parameter :n is an integer outside SQLite's 64-bit range"),
    ("[30]", "params must be a JSON list"),
    ({"other": 1}, "You did not supply a value for binding"),
])
def test_bad_params(refiner_db: Path, out: Path, params, fragment: str) -> None:
    sql = "SELECT name FROM users WHERE age > ?" if not isinstance(params, dict) else \
        "SELECT name FROM users WHERE age > :x"
    err = _fail(refiner_db, out, sql, params=params)
    assert err.code == "QUERY_INVALID"
    assert fragment in err.message


# --- limits ----------------------------------------------------------------------

def test_row_limit_is_an_error_never_a_truncation(refiner_db: Path, out: Path) -> None:
    err = _fail(refiner_db, out, "SELECT id FROM activities", limits=QueryLimits(max_rows=39))
    assert err.code == "ROW_LIMIT"
    assert err.message == "the query returned more than 39 rows"


def test_row_limit_exactly_met(refiner_db: Path, out: Path) -> None:
    report = run_query(refiner_db, "SELECT id FROM activities", None, ALL, out,
                       QueryLimits(max_rows=40))
    assert report.row_count == 40
    assert len(_results(out)[1]) == 40


def test_results_are_written_in_16k_pages(refiner_db: Path, out: Path) -> None:
    """Larger pages: fewer page writes for a big CTAS (bench/query.py measures it)."""
    run_query(refiner_db, "SELECT id FROM activities", None, ALL, out, LIMITS)
    assert _direct(out, "PRAGMA page_size") == [(16384,)]


ROWID_SHADOWS = [
    "SELECT id, 1000 AS rowid FROM activities",
    "SELECT id, 1000 AS rowid, 1000 AS oid FROM activities",
    "SELECT 1 AS rowid, 2 AS _rowid_, 3 AS oid FROM activities",
    "SELECT 1 AS ROWID, 2 AS _RowId_, 3 AS Oid FROM activities",
]


@pytest.mark.parametrize("sql", ROWID_SHADOWS)
def test_row_count_holds_when_columns_are_named_like_rowid(refiner_db: Path, out: Path, sql: str) -> None:
    """The count reads the largest rowid (no scan): a column named rowid/oid/_rowid_ cannot fake it."""
    report = run_query(refiner_db, sql, None, ALL, out, QueryLimits(max_rows=40))
    assert report.row_count == 40 == len(_results(out)[1])


@pytest.mark.parametrize("sql", ROWID_SHADOWS)
def test_row_limit_holds_when_columns_are_named_like_rowid(refiner_db: Path, out: Path, sql: str) -> None:
    err = _fail(refiner_db, out, sql, limits=QueryLimits(max_rows=39))
    assert err.code == "ROW_LIMIT"


def test_zero_rows_allowed_with_zero_limit(refiner_db: Path, out: Path) -> None:
    report = run_query(refiner_db, "SELECT id, name FROM users WHERE id < 0", None, ALL, out,
                       QueryLimits(max_rows=0))
    assert report.row_count == 0
    assert _results(out) == ([("id", "INTEGER"), ("name", "TEXT")], [])


def test_timeout(refiner_db: Path, out: Path) -> None:
    sql = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
           "SELECT count(*) FROM n")
    err = _fail(refiner_db, out, sql, limits=QueryLimits(timeout_s=0.3))
    assert err.code == "QUERY_TIMEOUT"


def test_cancel(refiner_db: Path, out: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    sql = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    err = _fail(refiner_db, out, sql, cancel=cancel)
    assert err.code == "CANCELLED"


def test_result_too_large(refiner_db: Path, out: Path) -> None:
    err = _fail(refiner_db, out, "SELECT printf('%.*c', 3000, 'x') FROM activities",
                limits=QueryLimits(max_result_bytes=32 * 1024))
    assert err.code == "RESULT_TOO_LARGE"
    assert "32768" in err.message


def test_single_value_over_the_size_limit(refiner_db: Path, out: Path) -> None:
    err = _fail(refiner_db, out, "SELECT replace(printf('%.*c', 40000, 'x'), 'x', 'yy')",
                limits=QueryLimits(max_result_bytes=64 * 1024))
    assert err.code == "RESULT_TOO_LARGE"


@pytest.mark.parametrize("kwargs", [{"max_rows": -1}, {"timeout_s": 0}, {"max_result_bytes": 0}])
def test_limits_validate(kwargs) -> None:
    with pytest.raises(ValueError):
        QueryLimits(**kwargs)


# --- the results table -------------------------------------------------------------

def test_results_columns_types_and_rows(refiner_db: Path, out: Path) -> None:
    sql = ("SELECT id, id, name, score, avatar, count(*) OVER () AS n, 1.5 AS f, x'00' AS b, "
           "NULL AS z, upper(name), age * 2 AS twice FROM users ORDER BY id DESC")
    report = run_query(refiner_db, sql, None, ALL, out, LIMITS)
    cols, rows = _results(out)
    assert cols == [("id", "INTEGER"), ("id_1", "INTEGER"), ("name", "TEXT"), ("score", "REAL"),
                    ("avatar", "BLOB"), ("n", "INTEGER"), ("f", "REAL"), ("b", "BLOB"),
                    ("z", ""), ("upper(name)", "TEXT"), ("twice", "INTEGER")]
    assert rows == _direct(refiner_db, sql)
    assert [r[0] for r in rows] == [4, 3, 2, 1]  # ORDER BY survives
    assert report == AccessReport(
        (("users", "age"), ("users", "avatar"), ("users", "id"), ("users", "name"),
         ("users", "score")), (1,), 0, 4)


def test_results_file_is_plain_sqlite(refiner_db: Path, out: Path) -> None:
    run_query(refiner_db, "SELECT name AS \"we\"\"ird name\" FROM users", None, ALL, out, LIMITS)
    conn = sqlite3.connect(out)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT \"we\"\"ird name\" FROM results LIMIT 1").fetchone() == ("Alice Liddell",)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    conn.close()


@pytest.mark.parametrize("names, expected", [
    (["a", "b"], ["a", "b"]),
    (["a", "a:1", "a:2"], ["a", "a_1", "a_2"]),
    (["a", "a:1", "a_1"], ["a", "a_2", "a_1"]),
    (["x:1"], ["x:1"]),  # a real name with a colon stays
])
def test_dedupe_names(names, expected) -> None:
    assert dedupe_names(names) == expected


@pytest.mark.parametrize("affinity, first, expected", [
    ("INT", "text", "INTEGER"), ("NUM", None, "NUMERIC"), ("REAL", None, "REAL"),
    ("TEXT", None, "TEXT"), ("", "integer", "INTEGER"), ("", "blob", "BLOB"), ("", None, ""),
])
def test_declared_type(affinity, first, expected) -> None:
    assert declared_type(affinity, first) == expected


def test_output_must_not_exist(refiner_db: Path, out: Path) -> None:
    out.write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        run_query(refiner_db, "SELECT 1", None, ALL, out, LIMITS)
    assert out.read_bytes() == b"keep me"


def test_missing_source(tmp_path: Path, out: Path) -> None:
    with pytest.raises(QueryFailure) as info:
        run_query(tmp_path / "nope.db", "SELECT 1", None, ALL, out, LIMITS)
    assert info.value.code == "DATA_NOT_FOUND"
    assert not out.exists()


def test_runtime_error_messages_carry_no_values(refiner_db: Path, out: Path) -> None:
    err = _fail(refiner_db, out, "SELECT json_extract(name, '$.a') FROM users")
    assert err.code == "QUERY_INVALID"


def test_public_surface() -> None:
    assert set(query_pkg.__all__) == {"run_query", "analyse_query", "Permission", "QueryLimits",
                                      "AccessReport", "ALLOWED_FUNCTIONS"}
    assert "load_extension" not in query_pkg.ALLOWED_FUNCTIONS


def test_output_directory_must_exist(refiner_db: Path, tmp_path: Path) -> None:
    with pytest.raises(QueryFailure) as info:
        run_query(refiner_db, "SELECT 1", None, ALL, tmp_path / "no" / "out.db", LIMITS)
    assert info.value.code == "INTERNAL_ERROR"


def test_docs_list_every_allowed_function() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "query.md").read_text()
    section = doc.split("### Function allowlist", 1)[1].split("## Permissions", 1)[0]
    documented = set(re.findall(r"`([a-z0-9_>\-]+)`", section))
    assert documented == set(query_pkg.ALLOWED_FUNCTIONS)


# --- analyse (the quote) ----------------------------------------------------------

@pytest.mark.parametrize("sql, perms, used, price", [p[1:] for p in PRICES],
                         ids=[p[0] for p in PRICES])
def test_analyse_prices_exactly_as_the_run(refiner_db: Path, out: Path, sql: str, perms, used, price) -> None:
    """The quote is the run's access report without the run: same columns, permissions, price."""
    quoted = query_pkg.analyse_query(refiner_db, sql, None, perms, LIMITS)
    assert not out.exists()  # nothing written, nothing run
    ran = run_query(refiner_db, sql, None, perms, out, LIMITS)
    assert (quoted.columns, quoted.permissions_used, quoted.price) == (ran.columns, ran.permissions_used, price)
    assert quoted.permissions_used == used and quoted.row_count == 0


@pytest.mark.parametrize("sql, params, perms, fragment", [
    ("PRAGMA table_info(users)", None, ALL, "PRAGMA is not allowed"),
    ("SELECT name FROM sqlite_master", None, ALL, "sqlite_master"),
    ("SELECT name FROM users WHERE age > ?", [1, 2], ALL, "Incorrect number of bindings"),
    ("SELEC name FROM users", None, ALL, "syntax error"),
    ("SELECT email FROM users", None, [P(1, "users", "name")], "no permission covers users.email"),
])
def test_analyse_refuses_as_the_run_does(refiner_db: Path, out: Path, sql: str, params, perms,
                                         fragment: str) -> None:
    with pytest.raises(QueryFailure) as quoted:
        query_pkg.analyse_query(refiner_db, sql, params, perms, LIMITS)
    ran = _fail(refiner_db, out, sql, params=params, perms=perms)
    assert (quoted.value.code, quoted.value.message) == (ran.code, ran.message)
    assert fragment in quoted.value.message


def test_a_spares_warm_up_query_runs_in_memory_and_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    """The spare's throwaway query really runs (else its point, the copy-on-write faults
    taken before a job's query, is lost silently) and writes nothing but its own output,
    which it removes: no database file of its own on disk."""
    from engine.query import child

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    opened: list[str] = []
    real_connect = sqlite3.connect
    monkeypatch.setattr(child.sqlite3, "connect",
                        lambda target, *a, **kw: opened.append(str(target)) or real_connect(target, *a, **kw))
    assert child._prefault() is True
    assert opened == [":memory:"]
    assert list(tmp_path.iterdir()) == []
