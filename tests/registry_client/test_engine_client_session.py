"""EngineClient.sign_in over real HTTP: one EIP-4361 signature, then reads carry the session token."""

from __future__ import annotations

import pytest
from eth_account import Account

from registry_client.engine_client import EngineClient
from registry_client.errors import EngineApiError
from tests.conftest import ANVIL_KEYS
from tests.engine.api_fakes import CHAIN_ID, REGISTRY

OWNER = Account.from_key(ANVIL_KEYS[0])
STRANGER = Account.from_key(ANVIL_KEYS[1])


class CountingAccount:
    """The owner's key, counting what it signs (typed data for reads, personal_sign for the sign-in)."""

    def __init__(self, account):
        self._account, self.address, self.signed = account, account.address, 0

    def sign_message(self, message):
        self.signed += 1
        return self._account.sign_message(message)


def test_sign_in_then_reads_need_no_signature(server, service):
    account = CountingAccount(OWNER)
    with EngineClient(server[0], account, CHAIN_ID, REGISTRY) as client:
        job = client.submit(1, 2, "SELECT locale FROM users", [])
        session = client.sign_in(lifetime_s=600)
        assert session["address"] == OWNER.address and session["token"].startswith("cs1.")
        signed = account.signed
        for _ in range(3):
            assert client.status(job["id"])["id"] == job["id"]
        assert client.cancel(job["id"])["status"] == "CANCELLED"
        assert account.signed == signed  # the token, not a signature per request


def test_another_wallets_session_sees_no_job(server, service):
    with EngineClient(server[0], OWNER, CHAIN_ID, REGISTRY) as owner, \
            EngineClient(server[0], STRANGER, CHAIN_ID, REGISTRY) as stranger:
        job = owner.submit(1, 2, "SELECT locale FROM users", [])
        stranger.sign_in()
        with pytest.raises(EngineApiError) as info:
            stranger.status(job["id"])
        assert info.value.code == "NOT_FOUND"
