"""`Registries` bindings against the deployed contracts on a real anvil."""

from __future__ import annotations

import pytest
from eth_utils import to_checksum_address

from registry_client.contracts import (
    Dlp,
    Instruction,
    PermissionRecord,
    Refiner,
    Registries,
    Schema,
    connect,
)
from registry_client.errors import (
    ComputeInstructionNotFound,
    DlpNotFound,
    InputError,
    InvalidArgument,
    ManifestError,
    NotDlpOwner,
    NotRefinerOwner,
    PermissionNotFound,
    RefinerNotFound,
    RegistryPaused,
    RpcUnavailable,
    SchemaNotFound,
    TransactionFailed,
    Unauthorized,
    WalletError,
    WrongChain,
)
from registry_client.manifest import Deployment
from registry_client.rpc import make_web3

pytestmark = pytest.mark.chain
HASH = "ab" * 32


@pytest.fixture
def owner(registries, accounts) -> Registries:
    return registries(accounts.dlp_owner)


@pytest.fixture
def builder(registries, accounts) -> Registries:
    return registries(accounts.builder)


@pytest.fixture
def stranger(registries, accounts) -> Registries:
    return registries(accounts.stranger)


@pytest.fixture
def world(owner, builder):
    """A DLP with a refiner and an instruction; returns (dlp_id, refiner_id, instruction_id)."""
    dlp_id = owner.register_dlp("Health")
    refiner_id = owner.add_refiner(dlp_id, "users", "https://s", "https://r")
    return dlp_id, refiner_id, builder.add_instruction(HASH, "https://img")


def test_dlp_records(owner, accounts):
    first = owner.register_dlp("first")
    second = owner.register_dlp("second", accounts.builder.address, treasury=accounts.stranger.address)
    assert (first, second) == (1, 2)
    dlp = owner.dlp(first)
    assert isinstance(dlp, Dlp) and dlp.owner == accounts.dlp_owner.address and dlp.name == "first"
    assert dlp.registration_block > 0 and dlp.status == "Registered" and dlp.dlp_address is None
    assert dlp.treasury == accounts.dlp_owner.address  # the owner by default
    assert owner.dlp(second).treasury == accounts.stranger.address
    assert owner.dlp_owner(second) == accounts.builder.address
    assert owner.dlps_count() == 2
    with pytest.raises(DlpNotFound, match="no DLP with id 9"):
        owner.dlp(9)
    with pytest.raises(DlpNotFound) as info:
        owner.dlp_owner(9)
    assert info.value.name == "DlpNotFound" and info.value.error_args == (9,)


def test_transfer_dlp(owner, stranger, accounts):
    dlp_id = owner.register_dlp("first")
    with pytest.raises(NotDlpOwner) as info:
        stranger.transfer_dlp(dlp_id, accounts.stranger.address)
    assert str(info.value) == f"wallet {accounts.stranger.address} is not the owner of DLP {dlp_id}"
    assert info.value.code == "NOT_DLP_OWNER"
    with pytest.raises(InputError):
        owner.transfer_dlp(dlp_id, "0xnot")
    owner.transfer_dlp(dlp_id, accounts.builder.address)
    assert owner.dlp_owner(dlp_id) == accounts.builder.address


@pytest.mark.parametrize("name", ["", "abc", " a b c "])
def test_short_dlp_name_refused(owner, name):
    with pytest.raises(InvalidArgument, match="fewer than 4 non-space characters"):
        owner.register_dlp(name)


def test_taken_dlp_name_refused(owner):
    owner.register_dlp("Health")
    with pytest.raises(InvalidArgument, match="name is taken"):
        owner.register_dlp("Health")


def test_refiners(world, owner, stranger, accounts):
    dlp_id, refiner_id, _ = world
    r = owner.refiner(refiner_id)
    assert r == Refiner(refiner_id, dlp_id, accounts.dlp_owner.address, "users", "https://s", "https://r")
    assert owner.dlp_refiner_ids(dlp_id) == [refiner_id]
    assert owner.refiners_count() == 1
    with pytest.raises(RefinerNotFound, match="no data refiner with id 5"):
        owner.refiner(5)
    with pytest.raises(NotDlpOwner, match=f"not the owner of DLP {dlp_id}"):
        stranger.add_refiner(dlp_id, "x", "https://s")
    with pytest.raises(DlpNotFound):
        owner.add_refiner(77, "x", "https://s")
    with pytest.raises(InvalidArgument, match="schema URL"):
        owner.add_refiner(dlp_id, "x", "")


def test_schemas_and_refiners_that_follow_them(world, owner, stranger, accounts):
    dlp_id, _, _ = world
    schema_id = stranger.add_schema("fitness", "sqlite", "https://example.org/fitness.sql")
    assert stranger.schema(schema_id) == Schema(schema_id, "fitness", "sqlite", "https://example.org/fitness.sql")
    assert owner.schemas_count() == 1
    refiner_id = owner.add_refiner(dlp_id, "daily", instruction_url="https://r", schema_id=schema_id)
    refiner = owner.refiner(refiner_id)
    assert (refiner.schema_id, refiner.schema_url) == (schema_id, "https://example.org/fitness.sql")
    with pytest.raises(SchemaNotFound, match="no schema with id 9"):
        owner.add_refiner(dlp_id, "daily", schema_id=9)
    with pytest.raises(SchemaNotFound, match="no schema with id 9"):
        owner.schema(9)
    with pytest.raises(InputError, match="not both"):
        owner.add_refiner(dlp_id, "daily", "https://s", schema_id=schema_id)


def test_instructions(world, builder, accounts):
    _, _, ins_id = world
    assert ins_id == 1
    assert builder.instruction(ins_id) == Instruction(1, HASH, accounts.builder.address, "https://img")
    assert builder.instructions_count() == 1
    assert builder.is_valid_instruction_id(1) and not builder.is_valid_instruction_id(2)
    assert builder.add_instruction(bytes(range(32)), "https://two") == 2
    assert builder.instruction(2).hash == bytes(range(32)).hex()
    with pytest.raises(ComputeInstructionNotFound, match="no compute instruction with id 5"):
        builder.instruction(5)
    with pytest.raises(InvalidArgument, match="must not be zero"):
        builder.add_instruction("00" * 32, "https://x")
    with pytest.raises(InvalidArgument, match="URL must not be empty"):
        builder.add_instruction(HASH, "")
    with pytest.raises(InputError, match="64 hex digits"):
        builder.add_instruction("abc", "https://x")


def test_approval_lifecycle(world, owner, builder, accounts):
    dlp_id, _, ins_id = world
    other_dlp = owner.register_dlp("other")
    assert owner.is_approved(ins_id, dlp_id) is False
    with pytest.raises(NotDlpOwner, match=f"wallet {accounts.builder.address} is not the owner of DLP {dlp_id}"):
        builder.update_instruction(ins_id, dlp_id, True)
    assert owner.update_instruction(ins_id, dlp_id, True) is True
    assert owner.update_instruction(ins_id, dlp_id, True) is False  # unchanged: no event
    assert owner.is_approved(ins_id, dlp_id) and not owner.is_approved(ins_id, other_dlp)
    assert owner.instruction_approvals(ins_id) == {dlp_id: True}
    approved_block = owner.block_number()
    assert owner.update_instruction(ins_id, dlp_id, False) is True
    assert owner.is_approved(ins_id, dlp_id) is False
    assert owner.is_approved(ins_id, dlp_id, block=approved_block) is True  # pinned read
    assert owner.instruction_approvals(ins_id) == {dlp_id: False}
    with pytest.raises(ComputeInstructionNotFound, match="id 9"):
        owner.update_instruction(9, dlp_id, True)
    with pytest.raises(DlpNotFound, match="id 99"):
        owner.update_instruction(ins_id, 99, True)


def test_permissions(world, owner, stranger, accounts):
    _dlp_id, refiner_id, _ = world
    generic = owner.add_permission(refiner_id, table="users")
    mine = owner.add_permission(refiner_id, accounts.grantee.address, "users", "email", 10)
    theirs = owner.add_permission(refiner_id, accounts.stranger.address, price=3)
    assert (generic, mine, theirs) == (1, 2, 3)
    assert owner.permission(mine) == PermissionRecord(2, accounts.grantee.address, True, refiner_id,
                                                      "users", "email", 10)
    assert owner.permission(generic).grantee is None
    assert sorted(p.id for p in owner.get_permissions(refiner_id, accounts.grantee.address)) == [1, 2]
    assert [p.id for p in owner.get_permissions(refiner_id)] == [1]
    assert owner.refiner_permission_ids(refiner_id) == [1, 2, 3]
    assert owner.permissions_count() == 3

    with pytest.raises(NotRefinerOwner,
                       match=f"wallet {accounts.stranger.address} is not the owner of refiner {refiner_id}"):
        stranger.add_permission(refiner_id, table="t")
    with pytest.raises(NotRefinerOwner, match=f"refiner {refiner_id}"):
        stranger.update_permission_approval(mine, False)
    with pytest.raises(InvalidArgument, match="needs a table") as info:
        owner.add_permission(refiner_id, column="email")
    assert info.value.name == "ColumnNameUnexpected"
    with pytest.raises(PermissionNotFound, match="no permission with id 42"):
        owner.update_permission_approval(42, False)
    with pytest.raises(PermissionNotFound):
        owner.permission(42)
    with pytest.raises(RefinerNotFound):
        owner.add_permission(42)

    assert owner.update_permission_approval(mine, False) is True
    assert owner.update_permission_approval(mine, False) is False
    assert owner.permission(mine).approved is False
    # As Vana's: a revoked permission is no longer listed for the grantee.
    assert [p.id for p in owner.get_permissions(refiner_id, accounts.grantee.address)] == [1]

    token = "0x" + "70" * 20
    priced = owner.add_permission(refiner_id, accounts.grantee.address, price=5, token=token)
    assert owner.permission(priced).token == to_checksum_address(token)
    assert owner.permission(mine).token is None


def test_pause_blocks_writes_and_sends_nothing(registries, world, builder, accounts):
    admin = registries(accounts.deployer)
    with pytest.raises(Unauthorized, match="lacks the role"):
        builder.pause("compute_instruction_registry")
    admin.pause("compute_instruction_registry")
    assert admin.paused("compute_instruction_registry")
    nonce = builder.w3.eth.get_transaction_count(accounts.builder.address)
    with pytest.raises(RegistryPaused, match="the registry is paused") as info:
        builder.add_instruction(HASH, "https://x")
    assert info.value.code == "REGISTRY_PAUSED"
    assert builder.w3.eth.get_transaction_count(accounts.builder.address) == nonce
    assert builder.instructions_count() == 1
    admin.unpause("compute_instruction_registry")
    assert builder.add_instruction(HASH, "https://x") == 2


def test_progress_reports_sent_and_mined(registries, accounts):
    events: list[tuple[str, object]] = []
    reg = registries(accounts.dlp_owner)
    reg.progress = lambda event, value: events.append((event, value))
    reg.register_dlp("pool")
    assert [e for e, _ in events] == ["sent", "mined"]
    assert str(events[0][1]).startswith("0x") and len(str(events[0][1])) == 66
    assert events[1][1] == reg.block_number()


def test_read_only_registries_refuse_transactions(registries):
    with pytest.raises(WalletError, match="a wallet is needed"):
        registries().register_dlp("pool")


def test_connect_checks(chain, deployment):
    with pytest.raises(RpcUnavailable, match="cannot reach the RPC endpoint http://127.0.0.1:9"):
        connect("http://127.0.0.1:9", deployment)
    other = Deployment(5, deployment.addresses, deployment.implementations, deployment.deploy_block)
    with pytest.raises(WrongChain, match="manifest is for chain 5 but"):
        connect(chain.url, other)
    empty = dict(deployment.addresses, query_engine="0x" + "12" * 20)
    with pytest.raises(ManifestError, match="no contract at query_engine"):
        connect(chain.url, Deployment(deployment.chain_id, empty))
    with pytest.raises(InputError, match="http"):
        connect("ftp://x", deployment)


def test_block_number_is_the_chains_head_read_straight_from_the_provider(owner, accounts):
    before = owner.block_number()
    assert before == owner.w3.eth.block_number
    owner.register_dlp("one-more-block")
    assert owner.block_number() == owner.w3.eth.block_number > before


def test_block_number_when_the_node_answers_an_error_or_nothing(owner, monkeypatch):
    answers = iter([{"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "header not found"}},
                    {"jsonrpc": "2.0", "id": 2, "result": "latest"}])
    monkeypatch.setattr(owner.w3.provider, "make_request", lambda method, params: next(answers))
    with pytest.raises(TransactionFailed, match="header not found"):
        owner.block_number()
    with pytest.raises(TransactionFailed, match="no block number"):
        owner.block_number()


def test_block_number_with_the_node_down_is_rpc_unavailable(owner):
    dead = Registries(make_web3("http://127.0.0.1:9", timeout=2), owner.deployment)
    with pytest.raises(RpcUnavailable):
        dead.block_number()
