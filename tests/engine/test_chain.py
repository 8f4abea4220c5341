"""engine.chain: on-chain verification of a job at one pinned block (real anvil)."""

from __future__ import annotations

import pytest

from engine.chain import ChainCheck, ChainVerifier, RetryPolicy
from engine.errors import ChainCheckFailure
from engine.query import Permission
from registry_client.contracts import Registries, make_web3

pytestmark = pytest.mark.chain
HASH = "5e" * 32


@pytest.fixture
def world(registries, accounts):
    """DLP 1 with refiner 1, instruction 1 approved for it, three permissions."""
    owner, builder = registries(accounts.dlp_owner), registries(accounts.builder)
    dlp_id = owner.register_dlp("Health")
    refiner_id = owner.add_refiner(dlp_id, "users", "https://schema")
    ins_id = builder.add_instruction(HASH, "https://example.org/job.tar.gz")
    owner.update_instruction(ins_id, dlp_id, True)
    generic = owner.add_permission(refiner_id, table="users")
    own = owner.add_permission(refiner_id, accounts.builder.address, "users", "email", 7)
    owner.add_permission(refiner_id, accounts.stranger.address, price=1)  # someone else's
    return owner, dlp_id, refiner_id, ins_id, generic, own


def test_verify_happy_path(world, registries, accounts):
    owner, dlp_id, refiner_id, ins_id, generic, own = world
    verifier = ChainVerifier(registries())
    check = verifier.verify(ins_id, refiner_id, accounts.builder.address)
    assert isinstance(check, ChainCheck)
    assert check.block_number == owner.block_number()
    assert check.dlp_id == dlp_id
    assert check.instruction_hash == HASH and not check.instruction_hash.startswith("0x")
    assert check.instruction_url == "https://example.org/job.tar.gz"
    assert sorted(check.permissions, key=lambda p: p.id) == [
        Permission(id=generic, grantee=None, refiner_id=refiner_id, table="users", column="", price=0,
                   approved=True),
        Permission(id=own, grantee=accounts.builder.address, refiner_id=refiner_id, table="users",
                   column="email", price=7, approved=True),
    ]
    assert all(isinstance(p, Permission) for p in check.permissions)


def test_revoked_permission_is_not_passed_on(world, registries, accounts):
    owner, _, refiner_id, ins_id, generic, own = world
    owner.update_permission_approval(own, False)
    check = ChainVerifier(registries()).verify(ins_id, refiner_id, accounts.builder.address)
    assert [p.id for p in check.permissions] == [generic]


def test_reads_are_pinned_to_one_block(world, registries, accounts, monkeypatch):
    _, _, refiner_id, ins_id, _, _ = world
    reg = registries()
    blocks: list = []
    for name in ("paused", "refiner", "instruction", "is_approved", "get_permissions"):
        original = getattr(reg, name)

        def spy(*args, _original=original, block="latest", **kw):
            blocks.append(block)
            return _original(*args, block=block, **kw)

        monkeypatch.setattr(reg, name, spy)
    check = ChainVerifier(reg).verify(ins_id, refiner_id, accounts.builder.address)
    assert blocks == [check.block_number] * 5


@pytest.mark.parametrize("instruction_id, refiner_id, code", [
    (1, 9, "REFINER_NOT_FOUND"),
    (9, 1, "INSTRUCTION_NOT_FOUND"),
])
def test_not_found(world, registries, accounts, instruction_id, refiner_id, code):
    with pytest.raises(ChainCheckFailure) as info:
        ChainVerifier(registries()).verify(instruction_id, refiner_id, accounts.builder.address)
    assert info.value.code == code
    assert str(instruction_id if code == "INSTRUCTION_NOT_FOUND" else refiner_id) in info.value.message


def test_not_approved_and_recheck(world, registries, accounts):
    owner, dlp_id, refiner_id, ins_id, _, _ = world
    verifier = ChainVerifier(registries())
    assert verifier.is_approved(ins_id, dlp_id) is True
    owner.update_instruction(ins_id, dlp_id, False)
    assert verifier.is_approved(ins_id, dlp_id) is False
    with pytest.raises(ChainCheckFailure) as info:
        verifier.verify(ins_id, refiner_id, accounts.builder.address)
    assert info.value.code == "NOT_APPROVED"
    assert f"not approved for DLP {dlp_id}" in info.value.message


def test_approval_for_another_dlp_does_not_count(world, registries, accounts):
    owner, _dlp_id, _refiner_id, ins_id, _, _ = world
    other = owner.register_dlp("other")
    other_refiner = owner.add_refiner(other, "r", "https://s")
    with pytest.raises(ChainCheckFailure) as info:
        ChainVerifier(registries()).verify(ins_id, other_refiner, accounts.builder.address)
    assert info.value.code == "NOT_APPROVED"


def test_paused_registry_approves_nothing(world, registries, accounts):
    _owner, dlp_id, refiner_id, ins_id, _, _ = world
    admin = registries(accounts.deployer)
    verifier = ChainVerifier(registries())
    admin.pause("compute_instruction_registry")
    for check in (lambda: verifier.verify(ins_id, refiner_id, accounts.builder.address),
                  lambda: verifier.is_approved(ins_id, dlp_id)):
        with pytest.raises(ChainCheckFailure) as info:
            check()
        assert info.value.code == "NOT_APPROVED"
        assert "ComputeInstructionRegistry is paused" in info.value.message
    admin.unpause("compute_instruction_registry")
    assert verifier.verify(ins_id, refiner_id, accounts.builder.address).dlp_id == dlp_id
    assert verifier.is_approved(ins_id, dlp_id) is True


def test_chain_unavailable(deployment):
    dead = Registries(make_web3("http://127.0.0.1:9", timeout=2), deployment)
    sleeps: list[float] = []
    verifier = ChainVerifier(dead, retry=RetryPolicy(window_s=0.5, base_s=0.1, cap_s=0.2), sleep=sleeps.append)
    with pytest.raises(ChainCheckFailure) as info:
        verifier.verify(1, 1, "0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
    assert info.value.code == "CHAIN_UNAVAILABLE"
    assert sleeps, "a refused connection is transient: retried before failing"
    assert all(0 < s <= 0.5 for s in sleeps)
    with pytest.raises(ChainCheckFailure) as info:
        verifier.is_approved(1, 1)
    assert info.value.code == "CHAIN_UNAVAILABLE"


def test_backoff_is_capped_exponential_with_jitter():
    policy = RetryPolicy(window_s=30, base_s=0.25, cap_s=4.0)
    for attempt in range(12):
        step = min(4.0, 0.25 * 2 ** attempt)
        delays = {policy.delay(attempt) for _ in range(20)}
        assert all(step / 2 <= d <= step for d in delays)
        assert len(delays) > 1  # jittered
    # However many attempts a window allows, a delay stays a number within the cap.
    assert all(2.0 <= policy.delay(attempt) <= 4.0 for attempt in (64, 1024, 10**6))


def _rpc_methods(reg) -> list[str]:
    """Every JSON-RPC method the registries' web3 sends from now on."""
    sent: list[str] = []
    provider = reg.w3.provider
    original = provider.make_request

    def recording(method, params):
        sent.append(str(method))
        return original(method, params)

    provider.make_request = recording
    return sent


def test_the_engines_connection_sends_only_the_reads_a_job_needs(world, registries, accounts):
    """No eth_chainId before every eth_call (web3's validation middleware doubled the RPCs)."""
    from engine.wiring import read_only_web3

    _, dlp_id, refiner_id, ins_id, _, _ = world
    reg = registries()
    read_only_web3(reg.w3)
    read_only_web3(reg.w3)  # idempotent
    sent = _rpc_methods(reg)
    verifier = ChainVerifier(reg)
    verifier.verify(ins_id, refiner_id, accounts.builder.address)
    assert verifier.is_approved(ins_id, dlp_id) is True
    assert "eth_chainId" not in sent
    assert sorted(sent) == sorted(["eth_blockNumber"] * 2 + ["eth_call"] * 7)
