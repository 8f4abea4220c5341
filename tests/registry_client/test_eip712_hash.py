"""registry_client/eip712_hash.py gives eth_account's own SignableMessage for every document this project signs."""

from __future__ import annotations

import random

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from registry_client.eip712 import (
    JobRequest,
    JobResult,
    job_request_typed_data,
    job_result_typed_data,
    read_typed_data,
)
from registry_client.eip712_hash import signable
from tests.conftest import ANVIL_KEYS

UINTS = (0, 1, 255, 2**64, 2**255, 2**256 - 1)
TEXTS = ("x", "SELECT 1", "naïve 名前 🚀", "a" * 1000, '{"k": [1, 2]}', "\x00\n\t")


def _documents(rng: random.Random):
    contract = Account.create().address
    chain = rng.choice(UINTS[1:])
    recipient = Account.from_key(ANVIL_KEYS[1])
    key = "0x" + recipient._key_obj.public_key.to_bytes().hex()
    for _ in range(8):
        yield job_request_typed_data(chain, contract, JobRequest.create(
            rng.choice(UINTS), rng.choice(UINTS), rng.choice(TEXTS), [rng.choice(TEXTS)],
            rng.choice(UINTS), rng.choice(UINTS), compute_job_id=rng.choice(UINTS)))
        yield job_request_typed_data(chain, contract, JobRequest(
            1, 2, rng.choice(TEXTS), "{}", 3, 4, 0, recipient=recipient.address, recipient_public_key=key))
        yield read_typed_data(chain, contract, rng.choice(("get", "POST")), rng.choice(("", "/x", *TEXTS)),
                              rng.choice(UINTS))
        yield job_result_typed_data(chain, contract, JobResult(
            job_id=rng.choice(TEXTS), owner=Account.create().address,
            instruction_id=rng.choice(UINTS), refiner_id=rng.choice(UINTS),
            image_sha256=rng.randbytes(32).hex(), block_number=rng.choice(UINTS),
            artifacts_digest="0x" + rng.randbytes(32).hex(), finished_at=rng.choice(UINTS),
            recipient=rng.choice((Account.create().address, "0x" + "00" * 20)),
            sealed_digest="0x" + rng.randbytes(32).hex()))


def test_every_document_hashes_as_eth_account_hashes_it():
    rng = random.Random(712)
    count = 0
    for _ in range(4):  # four domains
        for typed in _documents(rng):
            assert signable(typed) == encode_typed_data(full_message=typed), typed["primaryType"]
            count += 1
    assert count == 4 * 8 * 4


def test_a_document_with_nested_types_is_left_to_eth_account():
    typed = read_typed_data(1, Account.create().address, "GET", "/x", 5)
    typed["types"]["Inner"] = [{"name": "n", "type": "uint256"}]
    typed["types"]["EngineRead"] = [*typed["types"]["EngineRead"], {"name": "inner", "type": "Inner"}]
    typed["message"]["inner"] = {"n": 3}
    assert signable(typed) == encode_typed_data(full_message=typed)


@pytest.mark.parametrize(("field", "value"), [
    ("timestamp", -1), ("timestamp", 2**256), ("timestamp", True), ("timestamp", "5"),
])
def test_a_value_out_of_its_type_is_refused(field, value):
    typed = read_typed_data(1, Account.create().address, "GET", "/x", 5)
    typed["message"][field] = value
    with pytest.raises(ValueError):
        signable(typed)
