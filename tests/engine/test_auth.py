"""engine/auth: signed job submissions and signed reads (pure functions, clock passed in)."""

from __future__ import annotations

import pytest
from eth_account import Account

from engine import auth
from engine.auth import verify_job_submission, verify_read
from engine.errors import AuthError, RequestError
from registry_client.eip712 import JobRequest, job_request_digest, read_headers, sign_job_request
from tests.conftest import ANVIL_KEYS

CHAIN = 31337
REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
OTHER_REGISTRY = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
ALICE = Account.from_key(ANVIL_KEYS[0])
BOB = Account.from_key(ANVIL_KEYS[1])
NOW = 1_750_000_000


def body(account=ALICE, *, chain=CHAIN, contract=REGISTRY, deadline=NOW + 600, **extra):
    req = JobRequest.create(1, 2, "SELECT x FROM t", [1], 42, deadline)
    out = {"request": req.to_message(), "signature": sign_job_request(account, chain, contract, req)}
    out.update(extra)
    return out


def verify(b, **kw):
    return verify_job_submission(b, CHAIN, REGISTRY, **kw)


def code_of(fn, *args, **kw) -> tuple[type, str]:
    with pytest.raises(RequestError) as info:
        fn(*args, **kw)
    return type(info.value), info.value.code


def test_public_surface():
    assert set(auth.__all__) == {"verify_job_submission", "verify_read"}


def test_good_signature():
    req, signer, digest = verify(body(signer=ALICE.address))
    assert signer == ALICE.address
    assert req.query == "SELECT x FROM t" and req.params == [1] and req.nonce == 42
    assert digest == job_request_digest(CHAIN, REGISTRY, req)
    # Stating the engine's own domain is fine, in any address case.
    verify(body(chainId=CHAIN, verifyingContract=REGISTRY.lower()))


@pytest.mark.parametrize("field", ["instructionId", "refinerId", "nonce", "deadline", "query", "params"])
def test_tampered_field_is_bad_signature(field):
    b = body(signer=ALICE.address)
    new = {"query": "SELECT y FROM t", "params": "[2]"}
    b["request"][field] = new[field] if field in new else b["request"][field] + 1
    assert code_of(verify, b) == (AuthError, "BAD_SIGNATURE")


def test_tampered_without_stated_signer_recovers_someone_else():
    b = body()
    b["request"]["refinerId"] = 3
    _, signer, _ = verify(b)
    assert signer != ALICE.address  # the service then finds no permission for that wallet


def test_the_deadline_is_not_judged_here():
    # One rule in one place: engine.submission.check_deadline (tests/engine/test_submission.py),
    # applied by the service to every submit; the signature check knows no clock.
    assert not hasattr(auth, "DEFAULT_MAX_DEADLINE_S") and not hasattr(auth, "_check_deadline")
    for deadline in (1, NOW + 10 * 365 * 24 * 3600):
        req, signer, _ = verify(body(deadline=deadline, signer=ALICE.address))
        assert (req.deadline, signer) == (deadline, ALICE.address)


def test_wrong_chain_id():
    assert code_of(verify, body(chainId=1)) == (AuthError, "WRONG_DOMAIN")
    # Signed for chain 1 without saying so: caught through the stated signer.
    t, code = code_of(verify, body(chain=1), claimed_signer=ALICE.address)
    assert (t, code) == (AuthError, "BAD_SIGNATURE")
    with pytest.raises(AuthError, match=f"chain {CHAIN}"):
        verify(body(chain=1, signer=ALICE.address))


def test_wrong_contract():
    assert code_of(verify, body(verifyingContract=OTHER_REGISTRY)) == (AuthError, "WRONG_DOMAIN")
    assert code_of(verify, body(contract=OTHER_REGISTRY, signer=ALICE.address)) == (AuthError, "BAD_SIGNATURE")


def test_signer_mismatch_and_malformed():
    assert code_of(verify, body(signer=BOB.address)) == (AuthError, "BAD_SIGNATURE")
    assert code_of(verify, body(signer="0xnot")) == (AuthError, "BAD_SIGNATURE")
    assert code_of(verify, body(signature="0x00")) == (AuthError, "BAD_SIGNATURE")
    assert code_of(verify, {"request": body()["request"]}) == (AuthError, "BAD_SIGNATURE")
    assert code_of(verify, {"signature": "0x"}) == (RequestError, "INVALID_REQUEST")
    b = body()
    b["request"]["params"] = "{nope"
    assert code_of(verify, b) == (RequestError, "INVALID_REQUEST")


# ---- signed reads ------------------------------------------------------------

PATH = "/jobs/abc"


def read(headers, *, method="GET", path=PATH, now=NOW, contract=REGISTRY, chain=CHAIN):
    return verify_read(headers, method, path, chain, contract, now, 60)


def test_read_good_and_case_insensitive_plain_dict():
    headers = read_headers(BOB, CHAIN, REGISTRY, "GET", PATH, NOW - 30)
    assert read(headers) == BOB.address
    assert read({k.lower(): v for k, v in headers.items()}) == BOB.address


def test_read_missing_headers():
    headers = read_headers(BOB, CHAIN, REGISTRY, "GET", PATH, NOW)
    for name in headers:
        partial = {k: v for k, v in headers.items() if k != name}
        assert code_of(read, partial) == (AuthError, "AUTH_REQUIRED")


@pytest.mark.parametrize("ts", [NOW - 61, NOW + 61])
def test_read_stale_timestamp(ts):
    assert code_of(read, read_headers(BOB, CHAIN, REGISTRY, "GET", PATH, ts)) == (AuthError, "STALE_TIMESTAMP")
    garbage = {**read_headers(BOB, CHAIN, REGISTRY, "GET", PATH, NOW), "X-Wallet-Timestamp": "yesterday"}
    assert code_of(read, garbage) == (AuthError, "STALE_TIMESTAMP")


def test_read_wrong_reader_path_method_domain():
    good = read_headers(BOB, CHAIN, REGISTRY, "GET", PATH, NOW)
    claims_alice = {**good, "X-Wallet-Address": ALICE.address}
    assert code_of(read, claims_alice) == (AuthError, "BAD_SIGNATURE")
    assert code_of(read, good, path="/jobs/other") == (AuthError, "BAD_SIGNATURE")
    assert code_of(read, good, method="POST") == (AuthError, "BAD_SIGNATURE")
    assert code_of(read, good, contract=OTHER_REGISTRY) == (AuthError, "BAD_SIGNATURE")
    assert code_of(read, good, chain=1) == (AuthError, "BAD_SIGNATURE")
    assert code_of(read, {**good, "X-Wallet-Signature": "0xzz"}) == (AuthError, "BAD_SIGNATURE")
