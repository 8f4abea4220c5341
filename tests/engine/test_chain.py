"""engine.chain: on-chain verification of a job at one pinned block (real anvil)."""

from __future__ import annotations

import json

import pytest

from engine.chain import ChainCheck, ChainVerifier, RetryPolicy
from engine.errors import ChainCheckFailure
from engine.query import Permission
from registry_client.contracts import Registries
from registry_client.rpc import make_web3

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


def test_reads_are_pinned_to_one_block(world, registries, accounts):
    _, _, refiner_id, ins_id, _, _ = world
    reg = registries()
    sent = _rpc_requests(reg)
    verifier = ChainVerifier(reg)
    for _ in range(2):  # the first check, then one with the refiner's DLP known
        _mine(reg)  # a new block: nothing reused
        sent.clear()
        check = verifier.verify(ins_id, refiner_id, accounts.builder.address)
        calls = [params for request in sent for method, params in request if method == "eth_call"]
        assert len(calls) == 5
        assert all(params[1] == hex(check.block_number) for params in calls)


def _mine(reg) -> None:
    reg.w3.provider.make_request("evm_mine", [])


def test_a_check_is_reused_only_while_the_chain_is_at_its_block(world, registries, accounts):
    owner, _, refiner_id, ins_id, generic, own = world
    reg = registries()
    sent = _rpc_requests(reg)
    verifier = ChainVerifier(reg)
    first = verifier.verify(ins_id, refiner_id, accounts.builder.address)
    sent.clear()
    assert verifier.verify(ins_id, refiner_id, accounts.builder.address) == first
    assert [[m for m, _ in r] for r in sent] == [["eth_blockNumber"]]  # the same block answers the same
    owner.update_permission_approval(own, False)  # a transaction: a new block
    again = verifier.verify(ins_id, refiner_id, accounts.builder.address)
    assert again.block_number > first.block_number
    assert [p.id for p in again.permissions] == [generic]
    # Another owner at the same block is a check of its own.
    assert verifier.verify(ins_id, refiner_id, accounts.stranger.address).permissions != again.permissions


def test_a_stale_dlp_guess_never_approves(world, registries, accounts):
    """The batch asks for the approval of the DLP the refiner had before: when the refiner
    names another DLP now, the approval of the refiner's own DLP decides, read again."""
    owner, dlp_id, refiner_id, ins_id, _, _ = world
    other = owner.register_dlp("Other")
    owner.update_instruction(ins_id, other, True)
    owner.update_instruction(ins_id, dlp_id, False)
    verifier = ChainVerifier(registries())
    verifier._dlp_of[refiner_id] = other  # as if the refiner had been in DLP `other`
    with pytest.raises(ChainCheckFailure) as info:
        verifier.verify(ins_id, refiner_id, accounts.builder.address)
    assert info.value.code == "NOT_APPROVED"
    assert verifier._dlp_of[refiner_id] == dlp_id  # corrected: the next batch asks the right DLP
    owner.update_instruction(ins_id, dlp_id, True)
    assert verifier.verify(ins_id, refiner_id, accounts.builder.address).dlp_id == dlp_id


def test_a_node_without_batches_gets_the_reads_one_by_one(world, registries, accounts):
    _, dlp_id, refiner_id, ins_id, _, _ = world
    reg = registries()
    reg.w3.provider.make_batch_request = lambda calls: {
        "jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "batches not supported"}}
    verifier = ChainVerifier(reg)
    for _ in range(2):
        assert verifier.verify(ins_id, refiner_id, accounts.builder.address).dlp_id == dlp_id
    assert verifier.is_approved(ins_id, dlp_id) is True


def test_a_revert_inside_a_batch_is_decoded_like_a_single_call(world, registries):
    _, _, refiner_id, _, _, _ = world
    reg = registries()
    # DLP 99 does not exist: dlpOwner reverts (a custom error), once alone and once in a batch.
    from registry_client.batch import Read

    with pytest.raises(Exception) as alone:
        reg.dlp_owner(99, block="latest")
    read = Read(reg.dlp_registry.functions.dlpOwner(99))
    ok, reverted = reg.read_together([reg.refiner_read(refiner_id), read], "latest")
    assert ok().id == refiner_id
    with pytest.raises(type(alone.value)) as batched:
        reverted()
    assert str(batched.value) == str(alone.value)


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


def _rpc_requests(reg) -> list[list[tuple[str, list]]]:
    """Every HTTP request the registries' web3 sends from now on: its (method, params) pairs."""
    sent: list[list[tuple[str, list]]] = []
    session = reg.w3.provider._request_session_manager
    post = session.make_post_request

    def recording(uri, data, **kwargs):
        body = json.loads(data)
        sent.append([(str(c["method"]), list(c["params"])) for c in (body if isinstance(body, list) else [body])])
        return post(uri, data, **kwargs)

    session.make_post_request = recording
    return sent


def test_the_engines_connection_sends_only_the_reads_a_job_needs(world, registries, accounts):
    """No eth_chainId before every eth_call (web3's validation middleware doubled the RPCs);
    one batch for a check's reads, one for the re-check."""
    from engine.wiring import read_only_web3

    _, dlp_id, refiner_id, ins_id, _, _ = world
    reg = registries()
    read_only_web3(reg.w3)
    read_only_web3(reg.w3)  # idempotent
    sent = _rpc_requests(reg)
    verifier = ChainVerifier(reg)
    verifier.verify(ins_id, refiner_id, accounts.builder.address)
    assert verifier.is_approved(ins_id, dlp_id) is True
    _mine(reg)
    verifier.verify(ins_id, refiner_id, accounts.builder.address)
    verifier.verify(ins_id, refiner_id, accounts.builder.address)
    shapes = [[method for method, _ in request] for request in sent if request[0][0] != "evm_mine"]
    assert shapes == [
        ["eth_blockNumber"], ["eth_call"] * 4, ["eth_call"],  # the first check: the DLP not known yet
        ["eth_call"] * 2,  # the re-check: pause flag and approval, at the latest block
        ["eth_blockNumber"], ["eth_call"] * 5,  # at a new block: two round trips
        ["eth_blockNumber"],  # at the same block again: the check just made
    ]
