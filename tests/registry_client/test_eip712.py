"""EIP-712 job requests and signed reads: encoding, known vectors, recovery, validation."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from eth_account import Account
from eth_utils import keccak

from registry_client import eip712
from registry_client.eip712 import (
    JobRequest,
    canonical_params,
    job_request_digest,
    job_request_typed_data,
    read_headers,
    recover_job_signer,
    recover_read_signer,
    sign_job_request,
    sign_read,
)
from registry_client.errors import InputError
from tests.conftest import ANVIL_KEYS, ROOT

CHAIN = 31337
REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
ALICE = Account.from_key(ANVIL_KEYS[0])  # 0xf39F...2266
BOB = Account.from_key(ANVIL_KEYS[1])

REQ = JobRequest.create(1, 2, "SELECT 1", [1, "a"], 7, 1790000000)
# Signed by `cast wallet sign --data` (Foundry, an independent EIP-712 implementation)
# over job_request_typed_data(31337, REGISTRY, REQ) with anvil key 0.
KNOWN_SIGNATURE = (
    "0x7c7b773f07c8d093717e51199c5c3269923eb1302d938307f4731f60fca93af9"
    "6a80e1c90c1bde03ef97067f13aae5e708b89bb154f03f3129a0a42bc811a2ca1b"
)
KNOWN_DIGEST = "0xa4d13775aae8edca60989ba87c55306acfdfa8abcaea4a4d1267ef180aabddc7"


def test_public_surface():
    assert set(eip712.__all__) == {n for n in eip712.__all__ if hasattr(eip712, n)}
    assert {"JobRequest", "sign_job_request", "recover_job_signer", "job_request_digest",
            "sign_read", "recover_read_signer", "domain"} <= set(eip712.__all__)


def test_known_vector():
    assert sign_job_request(ALICE, CHAIN, REGISTRY, REQ) == KNOWN_SIGNATURE
    assert recover_job_signer(CHAIN, REGISTRY, REQ, KNOWN_SIGNATURE) == ALICE.address
    assert job_request_digest(CHAIN, REGISTRY, REQ) == KNOWN_DIGEST


def test_compute_job_id_is_signed_and_defaults_to_free():
    paid = JobRequest.create(1, 2, "SELECT 1", [1, "a"], 7, 1790000000, compute_job_id=9)
    assert paid.to_message()["computeJobId"] == 9
    assert job_request_digest(CHAIN, REGISTRY, paid) != KNOWN_DIGEST
    # A signature over the free request does not cover the paid one.
    assert recover_job_signer(CHAIN, REGISTRY, paid, KNOWN_SIGNATURE) != ALICE.address
    message = REQ.to_message()
    del message["computeJobId"]
    assert JobRequest.from_message(message) == REQ  # absent = 0, a free job
    assert JobRequest.from_message(paid.to_message()) == paid
    with pytest.raises(InputError, match="compute_job_id"):
        JobRequest.create(1, 2, "SELECT 1", [], 7, 1790000000, compute_job_id=-1)


def _uint(n: int) -> bytes:
    return n.to_bytes(32, "big")


def test_digest_matches_hand_computed_eip712():
    """keccak(0x1901 ‖ domainSeparator ‖ hashStruct(JobRequest)) written out by hand."""
    domain_type = keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
    separator = keccak(domain_type + keccak(text="ComputeEngine") + keccak(text="1") + _uint(CHAIN)
                       + bytes(12) + bytes.fromhex(REGISTRY[2:]))
    job_type = keccak(text="JobRequest(uint256 instructionId,uint256 refinerId,string query,string params,"
                           "uint256 nonce,uint256 deadline,uint256 computeJobId)")
    struct = keccak(job_type + _uint(1) + _uint(2) + keccak(text="SELECT 1") + keccak(text='[1,"a"]')
                    + _uint(7) + _uint(1790000000) + _uint(0))
    assert "0x" + keccak(b"\x19\x01" + separator + struct).hex() == KNOWN_DIGEST


def test_cast_cross_check(tmp_path):
    cast = ROOT / "node_modules" / ".bin" / "cast"
    if not cast.exists() and not shutil.which("cast"):
        pytest.skip("cast not installed")
    req = JobRequest.create(3, 4, "SELECT name FROM users WHERE id = :id", {"id": 5}, 2**40, 1800000000)
    doc = tmp_path / "typed.json"
    doc.write_text(json.dumps(job_request_typed_data(CHAIN, REGISTRY, req)))
    out = subprocess.run(
        [str(cast if cast.exists() else "cast"), "wallet", "sign", "--data", "--from-file", str(doc),
         "--private-key", ANVIL_KEYS[2]],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()
    assert out.startswith("0x") and out == sign_job_request(Account.from_key(ANVIL_KEYS[2]), CHAIN, REGISTRY, req)


def test_canonical_params():
    assert canonical_params({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'
    assert canonical_params([1, "x", None]) == '[1,"x",null]'
    assert canonical_params(None) == "null"
    with pytest.raises(InputError):
        canonical_params("SELECT")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        canonical_params([float("nan")])


@pytest.mark.parametrize(
    "change",
    [
        {"instruction_id": 9}, {"refiner_id": 9}, {"query": "SELECT 2"}, {"params_json": "[2]"},
        {"nonce": 8}, {"deadline": 1790000001},
    ],
)
def test_every_field_is_signed(change):
    fields = {**REQ.__dict__, **change}
    tampered = JobRequest(**fields)
    assert recover_job_signer(CHAIN, REGISTRY, tampered, KNOWN_SIGNATURE) != ALICE.address
    assert job_request_digest(CHAIN, REGISTRY, tampered) != KNOWN_DIGEST


@pytest.mark.parametrize(("chain", "contract"), [(1, REGISTRY), (CHAIN, "0x" + "11" * 20)])
def test_domain_binds_chain_and_contract(chain, contract):
    assert recover_job_signer(chain, contract, REQ, KNOWN_SIGNATURE) != ALICE.address
    assert job_request_digest(chain, contract, REQ) != KNOWN_DIGEST


def test_message_roundtrip_and_validation():
    assert JobRequest.from_message(REQ.to_message()) == REQ
    assert REQ.params == [1, "a"]
    with pytest.raises(InputError, match="missing field"):
        JobRequest.from_message({"instructionId": 1})
    bad = [
        {"instructionId": -1}, {"nonce": 2**256}, {"deadline": True}, {"query": "  "},
        {"params": "{oops"}, {"params": "5"}, {"refinerId": "1"},
    ]
    for change in bad:
        with pytest.raises(InputError):
            JobRequest.from_message({**REQ.to_message(), **change})


@pytest.mark.parametrize("sig", ["0x1234", "nothex", "0x" + "00" * 65, 12])
def test_malformed_signature(sig):
    with pytest.raises(InputError):
        recover_job_signer(CHAIN, REGISTRY, REQ, sig)


def test_read_signature_roundtrip():
    sig = sign_read(BOB, CHAIN, REGISTRY, "get", "/jobs/abc", 1700000000)
    assert recover_read_signer(CHAIN, REGISTRY, "GET", "/jobs/abc", 1700000000, sig) == BOB.address
    assert recover_read_signer(CHAIN, REGISTRY, "GET", "/jobs/abd", 1700000000, sig) != BOB.address
    assert recover_read_signer(CHAIN, REGISTRY, "POST", "/jobs/abc", 1700000000, sig) != BOB.address
    assert recover_read_signer(CHAIN, REGISTRY, "GET", "/jobs/abc", 1700000001, sig) != BOB.address
    headers = read_headers(BOB, CHAIN, REGISTRY, "GET", "/jobs/abc", 1700000000)
    assert headers == {"X-Wallet-Address": BOB.address, "X-Wallet-Timestamp": "1700000000",
                       "X-Wallet-Signature": sig}


# ---------------------------------------------------------------- JobResult attestations

ENGINE = Account.from_key(ANVIL_KEYS[4])
ARTS = [("report.json", "cd" * 32), ("data/a.csv", "ab" * 32)]


def _result(**changes) -> eip712.JobResult:
    fields = {"job_id": "3f2a" * 8, "owner": ALICE.address, "instruction_id": 1, "refiner_id": 2,
                  "image_sha256": "ef" * 32, "block_number": 42, "artifacts_digest": eip712.artifacts_digest(ARTS),
                  "finished_at": 1790000000}
    fields.update(changes)
    return eip712.JobResult(**fields)


def test_artifacts_digest_is_sha256_of_sorted_name_tab_sha_lines():
    import hashlib

    text = f"data/a.csv\t{'ab' * 32}\nreport.json\t{'cd' * 32}\n"
    assert eip712.artifacts_digest(ARTS) == "0x" + hashlib.sha256(text.encode()).hexdigest()
    assert eip712.artifacts_digest(reversed(ARTS)) == eip712.artifacts_digest(ARTS)  # order-free
    assert eip712.artifacts_digest([]) == "0x" + hashlib.sha256(b"").hexdigest()
    assert eip712.artifacts_digest([("report.json", "0x" + "CD" * 32)]) == eip712.artifacts_digest(
        [("report.json", "cd" * 32)])
    assert eip712.artifacts_digest([("report.json", "cd" * 32)]) != eip712.artifacts_digest(
        [("report.json", "ce" * 32)])
    with pytest.raises(InputError):
        eip712.artifacts_digest([("a", "zz")])
    with pytest.raises(InputError):
        eip712.artifacts_digest([("a\tb", "ab" * 32)])


def test_job_result_roundtrip_and_every_field_is_signed():
    result = _result()
    sig = eip712.sign_job_result(ENGINE, CHAIN, REGISTRY, result)
    assert eip712.recover_job_result_signer(CHAIN, REGISTRY, result, sig) == ENGINE.address
    for change in [{"job_id": "other"}, {"owner": BOB.address}, {"instruction_id": 9}, {"refiner_id": 9},
                   {"image_sha256": "ee" * 32}, {"block_number": 43}, {"finished_at": 1790000001},
                   {"artifacts_digest": eip712.artifacts_digest(ARTS[:1])}]:
        assert eip712.recover_job_result_signer(CHAIN, REGISTRY, _result(**change), sig) != ENGINE.address
    assert eip712.recover_job_result_signer(CHAIN + 1, REGISTRY, result, sig) != ENGINE.address


def test_job_result_typed_data_shape():
    typed = eip712.job_result_typed_data(CHAIN, REGISTRY, _result())
    assert typed["primaryType"] == "JobResult"
    assert typed["domain"] == eip712.domain(CHAIN, REGISTRY)
    assert [f["name"] for f in typed["types"]["JobResult"]] == [
        "jobId", "owner", "instructionId", "refinerId", "imageSha256", "blockNumber", "artifactsDigest",
        "finishedAt", "recipient", "sealedDigest"]
    assert typed["message"]["imageSha256"] == "0x" + "ef" * 32


@pytest.mark.parametrize("change", [{"image_sha256": "ab"}, {"owner": "0x12"}, {"block_number": -1},
                                    {"job_id": ""}, {"artifacts_digest": "nothex"}, {"recipient": "0x12"},
                                    {"sealed_digest": "nothex"}])
def test_job_result_validation(change):
    with pytest.raises(InputError):
        _result(**change)


def test_job_result_cast_cross_check(tmp_path):
    cast = ROOT / "node_modules" / ".bin" / "cast"
    if not cast.exists() and not shutil.which("cast"):
        pytest.skip("cast not installed")
    doc = tmp_path / "typed.json"
    doc.write_text(json.dumps(eip712.job_result_typed_data(CHAIN, REGISTRY, _result())))
    out = subprocess.run(
        [str(cast if cast.exists() else "cast"), "wallet", "sign", "--data", "--from-file", str(doc),
         "--private-key", ANVIL_KEYS[4]],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()
    assert out == eip712.sign_job_result(ENGINE, CHAIN, REGISTRY, _result())


# ---------------------------------------------------------------- JobRequestTo (results for another wallet)


def _bob_key() -> str:
    from registry_client.sealing import public_key_of

    return public_key_of(bytes(BOB.key))


def test_a_request_to_another_wallet_is_a_second_struct_and_a_plain_one_is_unchanged():
    from dataclasses import replace

    to_bob = replace(REQ, recipient=BOB.address, recipient_public_key=_bob_key())
    typed = eip712.job_request_typed_data(CHAIN, REGISTRY, to_bob)
    assert typed["primaryType"] == "JobRequestTo"
    assert [f["name"] for f in typed["types"]["JobRequestTo"]][-2:] == ["recipient", "recipientPublicKey"]
    assert eip712.job_request_digest(CHAIN, REGISTRY, REQ) == KNOWN_DIGEST  # old clients: same digest
    assert eip712.job_request_digest(CHAIN, REGISTRY, to_bob) != KNOWN_DIGEST
    assert JobRequest.from_message(to_bob.to_message()) == to_bob
    assert "recipient" not in REQ.to_message()
    signature = sign_job_request(ALICE, CHAIN, REGISTRY, to_bob)
    assert recover_job_signer(CHAIN, REGISTRY, to_bob, signature) == ALICE.address


def test_the_signers_public_key_is_recovered_from_the_signature():
    from registry_client.sealing import address_of_public_key, public_key_of

    key = eip712.recover_job_signer_key(CHAIN, REGISTRY, REQ, KNOWN_SIGNATURE)
    assert key == public_key_of(bytes(ALICE.key)) and address_of_public_key(key) == ALICE.address
    with pytest.raises(InputError):
        eip712.recover_job_signer_key(CHAIN, REGISTRY, REQ, "0x1234")


@pytest.mark.parametrize("recipient,key", [
    (None, "0x" + "00" * 64),                       # a key without a recipient
    ("0x" + "12" * 20, None),                       # a recipient without a key
    ("0x12", "0x" + "00" * 64),                     # not an address
    ("0x" + "12" * 20, "0x1234"),                   # not 64 bytes
    (ALICE.address, "bob"),                         # not hex
    (ALICE.address, "BOB_KEY"),                     # placeholder
    (ALICE.address, None),
])
def test_bad_recipients_are_refused(recipient, key):
    from dataclasses import replace

    with pytest.raises(InputError):
        replace(REQ, recipient=recipient, recipient_public_key=key)


def test_a_recipient_key_of_another_wallet_is_refused():
    from dataclasses import replace

    with pytest.raises(InputError) as info:
        replace(REQ, recipient=ALICE.address, recipient_public_key=_bob_key())
    assert ALICE.address in info.value.message
