"""engine.preflight: the image-free checks of a request, with a fake chain over a real refiner file.

The query analysis is the real one (a capped query process over a real SQLite
file); the chain is faked so each refusal can be forced. The whole story on a
real engine and anvil is in tests/integration/test_engine_builder_story.py.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

import pytest

from engine.data import DataCatalog
from engine.data_keys import read_kek_file
from engine.errors import ChainCheckFailure, JobFailure, RequestError
from engine.payment import Charger
from engine.preflight import Preflight
from engine.query.isolate import read_schema
from engine.query.model import Permission
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


def make(data_dir, chain, charger=None) -> Preflight:
    settings = load_settings(data_dir=data_dir)
    return Preflight(settings, JobStore(data_dir / "jobs.db"), chain, _catalog(data_dir), charger,
                     clock=time.time)


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
