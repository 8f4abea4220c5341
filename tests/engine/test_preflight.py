"""engine.preflight: the image-free checks of a request, with a fake chain over a real refiner file.

The query analysis is the real one (a capped query process over a real SQLite
file); the chain is faked so each refusal can be forced. The whole story on a
real engine and anvil is in tests/integration/test_engine_builder_story.py.
"""

from __future__ import annotations

import os
import pickle
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.data import DataCatalog
from engine.data_keys import read_kek_file
from engine.errors import ChainCheckFailure, JobFailure, RequestError
from engine.payment import Charger
from engine.preflight import Preflight
from engine.preflight_memo import MEMO_MAX_TEXT_CHARS, AnalysisMemo
from engine.query import isolate
from engine.query.isolate import read_schema
from engine.query.model import AccessReport, Permission, SealedSource
from engine.refiner_schema import schema_for
from engine.settings import load_settings
from engine.store import JobStore
from registry_client.eip712 import JobRequest
from tests.conftest import make_kek_file

OWNER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
OTHER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
REFINER = 3


@dataclass(frozen=True)
class Check:
    block_number: int
    dlp_id: int
    instruction_hash: str
    instruction_url: str
    permissions: tuple


class FakeChain:
    def __init__(self) -> None:
        self.error: Exception | None = None
        self.permissions = (Permission(5, OWNER, REFINER, "users", "locale", 7),
                            Permission(6, None, REFINER, "users", "id", 0),
                            Permission(8, OTHER, REFINER, "users", "", 1))  # someone else's
        self.calls = 0

    def verify(self, instruction_id, refiner_id, owner, *, cancel=None, once=False):
        assert once, "the preflight reads the chain once: no retry window in an HTTP request"
        self.calls += 1
        if self.error is not None:
            raise self.error
        return Check(42, 9, "ab" * 32, "http://example.test/x.tar", self.permissions)


@pytest.fixture
def data_dir(tmp_path):
    src = tmp_path / "src.db"
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, locale TEXT, email TEXT NOT NULL)")
        conn.execute("CREATE VIEW v AS SELECT id FROM users")
        conn.execute("INSERT INTO users VALUES (1, 'en', 'alice@example.com')")
    conn.close()
    DataCatalog(tmp_path / "data", make_kek_file(tmp_path / "kek")).add(REFINER, src)  # sealed at rest
    return tmp_path / "data"


@pytest.fixture
def chain():
    return FakeChain()


def make(data_dir, chain, charger=None, *, data=None, analyse=None) -> Preflight:
    settings = load_settings(data_dir=data_dir)
    return Preflight(settings, JobStore(data_dir / "jobs.db"), chain, data or _catalog(data_dir), charger,
                     clock=time.time, analyse=analyse)


def _catalog(data_dir) -> DataCatalog:
    return DataCatalog(data_dir, read_kek_file(data_dir.parent / "kek"))


def req(query="SELECT locale FROM users", params=None, compute_job_id=0, refiner=REFINER) -> JobRequest:
    return JobRequest.create(1, refiner, query, params, 1, int(time.time()) + 300, compute_job_id=compute_job_id)


def test_quote_reports_what_the_query_reads_and_costs(data_dir, chain) -> None:
    quote = make(data_dir, chain).quote(req("SELECT id, locale FROM users"), OWNER)
    assert quote.public() == {
        "price_wei": "7", "token": None, "compute_job_id_required": False, "instruction_approved": True,
        "refiner_id": REFINER, "dlp_id": 9, "block_number": 42,
        "access_report": {"columns": [["users", "id"], ["users", "locale"]], "permissions_used": [5, 6],
                          "price": "7", "row_count": None},
    }


@pytest.mark.parametrize("query, params, code", [
    ("SELECT email FROM users", None, "PERMISSION_DENIED"),  # only OTHER's permission covers it
    ("PRAGMA table_info(users)", None, "QUERY_INVALID"),
    ("SELECT locale FROM users WHERE id = ?", [1, 2], "QUERY_INVALID"),  # wrong parameter count
    ("SELEC locale FROM users", None, "QUERY_INVALID"),
])
def test_quote_refuses_as_the_query_step_would(data_dir, chain, query, params, code) -> None:
    with pytest.raises(JobFailure) as info:
        make(data_dir, chain).quote(req(query, params), OWNER)
    assert info.value.code == code
    assert "alice@example.com" not in info.value.message


def test_chain_refusals_and_missing_data(data_dir, chain) -> None:
    chain.error = ChainCheckFailure("not approved", code="NOT_APPROVED")
    with pytest.raises(ChainCheckFailure, match="not approved"):
        make(data_dir, chain).quote(req(), OWNER)
    chain.error = None
    with pytest.raises(JobFailure) as info:
        make(data_dir, chain).quote(req(refiner=REFINER + 1), OWNER)
    assert info.value.code == "DATA_NOT_FOUND"


@pytest.mark.parametrize("overrides, queued", [({}, False), ({"role": "api"}, True),
                                               ({"store_url": "postgresql://engine@db/jobs"}, True)])
def test_data_held_elsewhere_lets_submit_queue(data_dir, chain, overrides, queued) -> None:
    """One engine refuses a refiner it has no data for; an API engine or a fleet's engine queues it."""
    settings = load_settings(data_dir=data_dir, **overrides)
    flight = Preflight(settings, JobStore(data_dir / "jobs.db"), chain, _catalog(data_dir), None, clock=time.time)
    with pytest.raises(JobFailure) as info:
        flight.quote(req(refiner=REFINER + 1), OWNER)  # the quote always needs the data
    assert info.value.code == "DATA_NOT_FOUND"
    if queued:
        flight.check(req(refiner=REFINER + 1), OWNER)  # no raise: the engine holding the data checks it
    else:
        with pytest.raises(JobFailure, match="no data"):
            flight.check(req(refiner=REFINER + 1), OWNER)


def test_request_rules_come_first(data_dir, chain) -> None:
    with pytest.raises(RequestError) as info:
        make(data_dir, chain).quote(req("SELECT 1 " + " " * 200_000), OWNER)
    assert info.value.code == "QUERY_TOO_LONG" and chain.calls == 0


def test_payment_preconditions_without_sending(data_dir, chain) -> None:
    """A priced query on a charging engine needs a compute job; an engine without a key cannot charge."""
    flight = make(data_dir, chain, Charger(None))
    quoted = flight.quote(req(), OWNER)  # the quote says so; submit (strict) refuses
    assert quoted.price_wei == 7 and quoted.compute_job_id_required is True
    with pytest.raises(JobFailure) as info:
        flight.check(req(), OWNER)
    assert info.value.code == "PAYMENT_REQUIRED"
    with pytest.raises(JobFailure) as info:
        flight.quote(req(compute_job_id=5), OWNER)
    assert info.value.code == "PAYMENT_UNAVAILABLE"
    free = flight.quote(req("SELECT id FROM users"), OWNER)  # price 0, no compute job: free
    assert free.price_wei == 0 and free.compute_job_id_required is False


def test_submit_check_lets_a_chain_outage_queue(data_dir, chain) -> None:
    """The story retries the chain for its window; submit must not refuse what an outage only delays."""
    chain.error = ChainCheckFailure("rpc down", code="CHAIN_UNAVAILABLE")
    flight = make(data_dir, chain)
    flight.check(req(), OWNER)  # no raise
    with pytest.raises(ChainCheckFailure):
        flight.quote(req(), OWNER)


def test_schema_lists_tables_columns_types_and_coverage(data_dir) -> None:
    # Read in a query process, where the sealed database opens in memory (never a plaintext file).
    db = read_schema(_catalog(data_dir).source(REFINER))
    assert db == [("users", [("id", "INTEGER"), ("locale", "TEXT"), ("email", "TEXT")])]
    perms = FakeChain().permissions
    assert schema_for(db, REFINER, perms, OWNER) == {"refiner_id": REFINER, "tables": [{"name": "users", "columns": [
        {"name": "id", "type": "INTEGER", "covered": True, "price_wei": "0"},
        {"name": "locale", "type": "TEXT", "covered": True, "price_wei": "7"},
        {"name": "email", "type": "TEXT", "covered": False, "price_wei": None},
    ]}]}
    # OTHER holds a table-wide permission: every column, at its price; the owner's are not theirs.
    cols = schema_for(db, REFINER, perms, OTHER)["tables"][0]["columns"]
    assert [(c["covered"], c["price_wei"]) for c in cols] == [(True, "0"), (True, "1"), (True, "1")]


def test_preflights_at_once_are_bounded(data_dir, chain, monkeypatch) -> None:
    """Each may hold a query process: past the bound a caller waits, then gets PREFLIGHT_BUSY."""
    import engine.preflight as preflight_mod

    monkeypatch.setattr(preflight_mod, "BUSY_WAIT_S", 0.05)
    flight = make(data_dir, chain)
    for _ in range(2):  # max(2, max_concurrent_jobs = 2): both turns taken by others
        assert flight._turns.acquire(timeout=0)
    with pytest.raises(RequestError) as info:
        flight.quote(req(), OWNER)
    assert (info.value.code, info.value.http_status) == ("PREFLIGHT_BUSY", 503)
    flight._turns.release()
    assert flight.quote(req(), OWNER).price_wei == 7


# --- the memo of compiled queries (engine/preflight_memo.py) ---------------------------------

REPORT = AccessReport(columns=(("users", "locale"),), permissions_used=(5,), price=7, row_count=0)


class CountingAnalyse:
    """Stands in for engine.query.analyse_query: counts the query processes a real one would start."""

    def __init__(self) -> None:
        self.calls = 0
        self.error: Exception | None = None
        self.meanwhile: Callable[[], None] | None = None  # what happens while it compiles

    def __call__(self, source, sql, params, permissions, limits, *, refiner_id, grantee) -> AccessReport:
        self.calls += 1
        if self.meanwhile is not None:
            self.meanwhile()
        if self.error is not None:
            raise self.error
        return REPORT


class OneFile:
    """A catalog serving one data file for every refiner (plain, or as a sealed source)."""

    def __init__(self, path: Path, sealed: bool) -> None:
        self.path = path
        self.sealed = sealed

    def source(self, refiner_id: int) -> Path | SealedSource:
        return SealedSource(self.path, b"k" * 32) if self.sealed else self.path


@pytest.fixture
def analyse():
    return CountingAnalyse()


@pytest.fixture(params=[False, True], ids=["plain", "sealed"])
def one_file(request, tmp_path) -> OneFile:
    path = tmp_path / "refiner.db"
    path.write_bytes(b"first version")
    return OneFile(path, request.param)


QUERY = "SELECT locale FROM users WHERE id = ?"


def test_the_same_request_again_is_compiled_once(data_dir, chain, analyse, one_file) -> None:
    """Only the compile is remembered: the chain is read again, and its refusal still refuses."""
    flight = make(data_dir, chain, data=one_file, analyse=analyse)
    first = flight.quote(req(QUERY, [1]), OWNER)
    assert flight.quote(req(QUERY, [1]), OWNER) == first  # a new nonce and deadline: the same compile
    assert (analyse.calls, chain.calls) == (1, 2)
    chain.error = ChainCheckFailure("not approved", code="NOT_APPROVED")
    with pytest.raises(ChainCheckFailure, match="not approved"):
        flight.quote(req(QUERY, [1]), OWNER)


def _fewer_permissions(chain: FakeChain) -> None:
    chain.permissions = chain.permissions[1:]


def _another_price(chain: FakeChain) -> None:
    first = chain.permissions[0]
    chain.permissions = (Permission(first.id, first.grantee, first.refiner_id, first.table, first.column, 8),
                         *chain.permissions[1:])


@pytest.mark.parametrize("request_, signer, change_chain", [
    pytest.param(req("SELECT id FROM users WHERE id = ?", [1]), OWNER, None, id="sql"),
    pytest.param(req(QUERY, [2]), OWNER, None, id="params"),
    pytest.param(req(QUERY, ["1"]), OWNER, None, id="params-a-string"),
    pytest.param(req(QUERY, [1.0]), OWNER, None, id="params-a-float"),
    pytest.param(req(QUERY, [True]), OWNER, None, id="params-a-bool"),
    pytest.param(req(QUERY, {"1": 1}), OWNER, None, id="params-named"),
    pytest.param(req(QUERY, [1]), OTHER, None, id="grantee"),
    pytest.param(req(QUERY, [1], refiner=REFINER + 1), OWNER, None, id="refiner"),
    pytest.param(req(QUERY, [1]), OWNER, _fewer_permissions, id="permission-set"),
    pytest.param(req(QUERY, [1]), OWNER, _another_price, id="permission-price"),
])
def test_anything_the_report_depends_on_compiles_again(data_dir, chain, analyse, one_file, request_, signer,
                                                       change_chain) -> None:
    flight = make(data_dir, chain, data=one_file, analyse=analyse)
    flight.quote(req(QUERY, [1]), OWNER)
    if change_chain is not None:
        change_chain(chain)
    flight.quote(request_, signer)
    assert analyse.calls == 2
    flight.quote(request_, signer)  # and that one is remembered in turn
    assert analyse.calls == 2


def test_other_query_limits_compile_again(data_dir, chain, analyse, one_file) -> None:
    flight = make(data_dir, chain, data=one_file, analyse=analyse)
    flight.quote(req(QUERY, [1]), OWNER)
    flight.settings = load_settings(data_dir=data_dir, query_timeout_s=5)
    flight.quote(req(QUERY, [1]), OWNER)
    assert analyse.calls == 2


def _rewritten(path: Path) -> None:
    path.write_bytes(b"the second version")  # another size


def _touched(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def _swapped(path: Path) -> None:
    # Another file (inode) of the same size and mtime in its place, as an atomic re-attach leaves it.
    st = path.stat()
    new = path.with_name("new.db")
    new.write_bytes(b"other version")
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(new, path)


@pytest.mark.parametrize("replace", [_rewritten, _touched, _swapped])
def test_a_replaced_data_file_compiles_again(data_dir, chain, analyse, one_file, replace) -> None:
    flight = make(data_dir, chain, data=one_file, analyse=analyse)
    flight.quote(req(QUERY, [1]), OWNER)
    replace(one_file.path)
    flight.quote(req(QUERY, [1]), OWNER)
    assert analyse.calls == 2


def test_a_data_file_replaced_while_it_compiles_is_not_remembered(data_dir, chain, analyse, one_file) -> None:
    flight = make(data_dir, chain, data=one_file, analyse=analyse)
    analyse.meanwhile = lambda: _swapped(one_file.path)  # compiled over either file: not known which
    flight.quote(req(QUERY, [1]), OWNER)
    analyse.meanwhile = None
    flight.quote(req(QUERY, [1]), OWNER)
    flight.quote(req(QUERY, [1]), OWNER)
    assert analyse.calls == 2


def test_a_missing_data_file_is_never_remembered(data_dir, chain, analyse, one_file) -> None:
    # A real analysis refuses it; a file without a stat has no identity to key a report on.
    one_file.path.unlink()
    flight = make(data_dir, chain, data=one_file, analyse=analyse)
    for _ in range(2):
        flight.quote(req(QUERY, [1]), OWNER)
    assert analyse.calls == 2


def test_a_refusal_is_never_remembered(data_dir, chain, analyse, one_file) -> None:
    flight = make(data_dir, chain, data=one_file, analyse=analyse)
    analyse.error = JobFailure("users.email is not covered", code="PERMISSION_DENIED")
    for calls in (1, 2):
        with pytest.raises(JobFailure, match="not covered"):
            flight.quote(req(QUERY, [1]), OWNER)
        assert analyse.calls == calls
    analyse.error = None  # e.g. the permission was granted meanwhile
    flight.quote(req(QUERY, [1]), OWNER)
    flight.quote(req(QUERY, [1]), OWNER)
    assert analyse.calls == 3


def test_the_memo_drops_the_least_recently_used(data_dir, chain, analyse, one_file) -> None:
    flight = make(data_dir, chain, data=one_file, analyse=analyse)
    flight._memo = AnalysisMemo(entries=2)
    for params, calls in [([1], 1), ([2], 2), ([1], 2),  # [1] used last: [2] is the oldest
                          ([3], 3),  # evicts [2]
                          ([1], 3), ([3], 3), ([2], 4)]:
        flight.quote(req(QUERY, params), OWNER)
        assert analyse.calls == calls, params
    assert len(flight._memo) == 2


@pytest.mark.parametrize("query, params", [
    pytest.param("SELECT locale FROM users" + " " * MEMO_MAX_TEXT_CHARS, None, id="sql"),
    pytest.param(QUERY, ["x" * MEMO_MAX_TEXT_CHARS], id="params"),
    pytest.param("SELECT locale FROM users WHERE id IN (" + ",".join("?" * 300) + ")", [1] * 300,
                 id="many-params"),
])
def test_an_over_long_query_is_never_remembered(data_dir, chain, analyse, one_file, query, params) -> None:
    flight = make(data_dir, chain, data=one_file, analyse=analyse)
    for _ in range(2):
        flight.quote(req(query, params), OWNER)
    assert analyse.calls == 2 and len(flight._memo) == 0


def test_a_repeated_quote_starts_no_second_query_process(data_dir, chain, monkeypatch) -> None:
    """Through the real analysis of the real sealed file; the memo never holds its data key."""
    forks = []
    real_fork = isolate._ZYGOTE.fork

    def counting_fork():
        forks.append(1)
        return real_fork()

    monkeypatch.setattr(isolate._ZYGOTE, "fork", counting_fork)
    flight = make(data_dir, chain)
    first = flight.quote(req("SELECT id, locale FROM users"), OWNER)
    second = flight.quote(req("SELECT id, locale FROM users"), OWNER)
    assert second == first and first.price_wei == 7
    assert len(forks) == 1
    with pytest.raises(JobFailure) as info:  # a refusal is compiled each time, in its own process
        flight.quote(req("SELECT email FROM users"), OWNER)
    assert info.value.code == "PERMISSION_DENIED" and len(forks) == 2
    key = _catalog(data_dir).source(REFINER).key
    assert key not in pickle.dumps(flight._memo.keys())
