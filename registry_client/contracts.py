"""Typed bindings for the five contracts, behind one `Registries` facade.

`connect(rpc_url, deployment, account)` checks the chain id and that code
exists at every manifest address, then returns `Registries`. Reads take an
optional `block` (a number pins every read of a check to one block).
Transactions are pre-flighted with eth_call (a revert is decoded into a
`ContractRevert` subclass and nothing is sent), signed locally, sent raw and
awaited; `progress("sent", tx_hash)` and `progress("mined", block)` report
them. Ids are parsed from the events in the receipt. Every web3/requests
exception is translated into a `RegistryError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import requests
from eth_utils import to_checksum_address
from web3 import Web3
from web3.exceptions import (
    ContractLogicError,
    TimeExhausted,
    Web3Exception,
    Web3RPCError,
)
from web3.logs import DISCARD
from web3.types import RPCEndpoint

from registry_client.addresses import parse_address
from registry_client.batch import Outcome, Read, read_together
from registry_client.errors import (
    ComputeInstructionNotFound,
    DlpNotFound,
    ErrorTable,
    InputError,
    ManifestError,
    NotDlpOwner,
    NotRefinerOwner,
    PermissionNotFound,
    RefinerNotFound,
    RegistryError,
    RpcUnavailable,
    TransactionFailed,
    WalletError,
    WrongChain,
    decode_revert,
)
from registry_client.manifest import CONTRACT_KEYS, Deployment
from registry_client.records import (
    Dlp,
    Instruction,
    PermissionRecord,
    Refiner,
    Schema,
    permission_record,
)
from registry_client.rpc import make_web3

__all__ = [
    "CONTRACT_NAMES",
    "ZERO_ADDRESS",
    "Dlp",
    "Instruction",
    "PermissionRecord",
    "Progress",
    "Read",
    "Refiner",
    "Registries",
    "Schema",
    "connect",
    "error_table",
    "load_artifact",
    "parse_address",
    "parse_sha256",
    "sha256_file",
]

# manifest key -> contract name of the shipped artifact
CONTRACT_NAMES: dict[str, str] = {
    "dlp_registry": "DLPRegistry",
    "data_refiner_registry": "DataRefinerRegistry",
    "compute_instruction_registry": "ComputeInstructionRegistry",
    "query_engine": "QueryEngine",
    "compute_engine": "ComputeEngine",
}
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
# Vana's DlpStatus enum, by value.
_DLP_STATUSES = ("None", "Registered", "Eligible", "Deregistered")
_ALL_ARTIFACTS = (*CONTRACT_NAMES.values(), "DataAccessTreasury", "ERC1967Proxy")

Progress = Callable[[str, Any], None]
T = TypeVar("T")


# ---------------------------------------------------------------- artifacts


@cache
def load_artifact(name: str) -> dict[str, Any]:
    """The shipped {"contractName", "abi", "bytecode"} of contract `name`."""
    try:
        text = resources.files("registry_client").joinpath("abi", f"{name}.json").read_text("utf-8")
    except FileNotFoundError as exc:
        raise ManifestError(f"the package ships no ABI for {name} (run `make abi`)") from exc
    return json.loads(text)


@lru_cache(maxsize=1)
def error_table() -> ErrorTable:
    """Selector table over the error entries of every shipped ABI."""
    abis = []
    for name in _ALL_ARTIFACTS:
        with contextlib.suppress(ManifestError):
            abis.append(load_artifact(name)["abi"])
    return ErrorTable(abis)


# ---------------------------------------------------------------- input helpers

_HEX64 = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")


def parse_sha256(text: str) -> bytes:
    """64 hex digits (0x optional) -> 32 bytes; InputError naming the problem."""
    value = text.strip()
    if not _HEX64.match(value):
        digits = len(value[2:] if value.lower().startswith("0x") else value)
        raise InputError(f"sha256 must be 64 hex digits, got {digits} characters: {value[:80]!r}")
    return bytes.fromhex(value[2:] if value.lower().startswith("0x") else value)




def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Stream a file through sha256; lowercase hex digest."""
    p = Path(path)
    digest = hashlib.sha256()
    try:
        with p.open("rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
    except FileNotFoundError as exc:
        raise InputError(f"image file {p} not found") from exc
    except IsADirectoryError as exc:
        raise InputError(f"image path {p} is a directory, not a file") from exc
    except OSError as exc:
        raise InputError(f"cannot read image file {p}: {exc.strerror}") from exc
    return digest.hexdigest()


# ---------------------------------------------------------------- connection


@contextlib.contextmanager
def _rpc_errors(rpc: str) -> Iterator[None]:
    """Translate transport failures into RpcUnavailable."""
    try:
        yield
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise RpcUnavailable(f"cannot reach the RPC endpoint {rpc}") from exc
    except requests.exceptions.RequestException as exc:
        raise RpcUnavailable(f"the RPC endpoint {rpc} failed: {exc.__class__.__name__}") from exc


def connect(
    rpc_url: str,
    deployment: Deployment,
    account: Any | None = None,
    *,
    progress: Progress | None = None,
    timeout: float = 10.0,
) -> Registries:
    """Registries for `deployment` at `rpc_url`, after checking chain id and code."""
    w3 = make_web3(rpc_url, timeout)
    with _rpc_errors(rpc_url):
        chain_id = w3.eth.chain_id
        if chain_id != deployment.chain_id:
            raise WrongChain(
                f"the deployment manifest is for chain {deployment.chain_id} "
                f"but {rpc_url} serves chain {chain_id}"
            )
        for key in CONTRACT_KEYS:
            address = deployment.address(key)
            if not w3.eth.get_code(address):
                raise ManifestError(
                    f"no contract at {key} {address} on chain {chain_id}: "
                    "the manifest does not match this chain (redeployed?)"
                )
    return Registries(w3, deployment, account, progress=progress)


def _hex(value: Any) -> str:
    return value.to_0x_hex() if hasattr(value, "to_0x_hex") else Web3.to_hex(value)


class Registries:
    """The contracts of one deployment, read and written as one account."""

    def __init__(
        self,
        w3: Web3,
        deployment: Deployment,
        account: Any | None = None,
        *,
        progress: Progress | None = None,
        tx_timeout: float = 120.0,
    ):
        self.w3 = w3
        self.deployment = deployment
        self.account = account
        self.progress = progress
        self.tx_timeout = tx_timeout
        self.rpc_url = str(getattr(w3.provider, "endpoint_uri", "the RPC endpoint"))
        self._contracts = {
            key: w3.eth.contract(address=deployment.address(key), abi=load_artifact(name)["abi"])
            for key, name in CONTRACT_NAMES.items()
        }
        self.dlp_registry = self._contracts["dlp_registry"]
        self.refiner_registry = self._contracts["data_refiner_registry"]
        self.instruction_registry = self._contracts["compute_instruction_registry"]
        self.query_engine = self._contracts["query_engine"]
        self.compute_engine = self._contracts["compute_engine"]

    @property
    def chain_id(self) -> int:
        return self.deployment.chain_id

    # ------------------------------------------------------------ plumbing

    @contextlib.contextmanager
    def _translate(self, context: Mapping[str, Any] | None = None) -> Iterator[None]:
        try:
            with _rpc_errors(self.rpc_url):
                yield
        except ContractLogicError as exc:
            data = exc.data if isinstance(exc.data, str) else None
            raise decode_revert(data, error_table(), self._resolve(context)) from exc
        except TimeExhausted as exc:
            raise TransactionFailed(f"the transaction was not mined within {self.tx_timeout:.0f} s") from exc
        except Web3RPCError as exc:
            raise TransactionFailed(f"the node refused the call: {_rpc_message(exc)}") from exc
        except Web3Exception as exc:
            raise RegistryError(f"web3 error: {exc}") from exc

    @staticmethod
    def _resolve(context: Mapping[str, Any] | None) -> dict[str, Any]:
        """Evaluate lazy context values (callables), dropping those that fail."""
        out: dict[str, Any] = {}
        for key, value in (context or {}).items():
            if callable(value):
                try:
                    value = value()
                except Exception:  # noqa: BLE001, S112 - context is best effort, for the message only
                    continue
            if value is not None:
                out[key] = value
        return out

    def _call(self, fn: Any, block: int | str = "latest", context: Mapping[str, Any] | None = None) -> Any:
        with self._translate(context):
            return fn.call(block_identifier=block)

    def read(self, read: Read[T], block: int | str = "latest") -> T:
        """One Read on its own (one eth_call)."""
        return read.finish(self._call(read.fn, block))

    def read_together(self, reads: Sequence[Read[Any]], block: int | str) -> list[Outcome]:
        """Several Reads at ``block`` in one JSON-RPC batch (registry_client/batch.py)."""
        return read_together(self, reads, block)

    def _transact(self, fn: Any, context: Mapping[str, Any] | None = None, *, value: int = 0) -> Any:
        """Pre-flight, sign, send, await; return the receipt. `value` wei go with the call."""
        account = self.account
        if account is None:
            raise WalletError("this operation sends a transaction: a wallet is needed")
        sender = account.address
        ctx = {"wallet": sender, **(context or {})}
        with self._translate(ctx):
            fn.call({"from": sender, "value": value})  # a revert is decoded here and nothing is sent
            tx = fn.build_transaction({
                "from": sender,
                "value": value,
                "nonce": self.w3.eth.get_transaction_count(sender, "pending"),
                "chainId": self.chain_id,
            })
            signed = account.sign_transaction(tx)
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            self._report("sent", _hex(tx_hash))
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.tx_timeout)
        if receipt["status"] != 1:
            raise TransactionFailed(f"transaction {_hex(tx_hash)} reverted in block {receipt['blockNumber']}")
        self._report("mined", receipt["blockNumber"])
        return receipt

    def _transact_as_dlp_owner(self, fn: Any, dlp_id: int, context: Mapping[str, Any]) -> Any:
        """`_transact` for a call only `dlp_id`'s owner may make.

        Vana's registries answer NotDlpOwner() for an unknown DLP too (it has no
        owner); the client tells the two apart so the message names the real problem.
        """
        try:
            return self._transact(fn, context)
        except NotDlpOwner:
            self.dlp(dlp_id)  # raises DlpNotFound for an unknown DLP
            raise

    def _transact_as_refiner_owner(self, fn: Any, refiner_id: int, context: Mapping[str, Any]) -> Any:
        """`_transact` for a call only the refiner's owner may make; an unknown refiner says so."""
        try:
            return self._transact(fn, context)
        except NotRefinerOwner:
            self.refiner(refiner_id)  # raises RefinerNotFound for an unknown refiner
            raise

    def _sender(self) -> str:
        if self.account is None:
            raise WalletError("this operation sends a transaction: a wallet is needed")
        return str(self.account.address)

    def _report(self, event: str, value: Any) -> None:
        if self.progress is not None:
            self.progress(event, value)

    @staticmethod
    def _event_arg(contract: Any, event: str, receipt: Any, arg: str) -> Any:
        logs = getattr(contract.events, event)().process_receipt(receipt, errors=DISCARD)
        if not logs:
            return None
        return logs[0]["args"][arg]

    def block_number(self) -> int:
        """The chain's head: one ``eth_blockNumber`` straight to the provider (its retry
        included). web3's request manager around it cost ~1 ms of CPU a call, three times
        the request; the engine asks twice a job."""
        with self._translate():
            answer = self.w3.provider.make_request(RPCEndpoint("eth_blockNumber"), [])
        result = answer.get("result") if isinstance(answer, dict) else None
        if isinstance(result, str) and result.startswith("0x"):
            with contextlib.suppress(ValueError):
                return int(result, 16)
        error = answer.get("error") if isinstance(answer, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        raise TransactionFailed(f"the node refused the call: {message or 'no block number in its answer'}")

    # ------------------------------------------------------------ DLPs

    def register_dlp(self, name: str, owner: str | None = None, *, treasury: str | None = None,
                     dlp_address: str | None = None, deposit: int = 0) -> int:
        """Register a DLP owned by `owner` (default: the sender); return its id.

        `treasury` (default: the owner) receives the DLP's query earnings when
        claimed; `dlp_address` is the DLP's own contract, if it has one.
        `deposit` wei is sent (the registry's registration deposit, 0 by default).
        """
        owner_addr = parse_address(owner, "owner") if owner else self._sender()
        treasury_addr = parse_address(treasury, "treasury") if treasury else owner_addr
        dlp_addr = parse_address(dlp_address, "DLP address") if dlp_address else ZERO_ADDRESS
        info = (dlp_addr, owner_addr, treasury_addr, name, "", "", "")
        receipt = self._transact(self.dlp_registry.functions.registerDlp(info), value=deposit)
        return int(self._event_arg(self.dlp_registry, "DlpRegistered", receipt, "dlpId"))

    def dlp(self, dlp_id: int, block: int | str = "latest") -> Dlp:
        info = self._call(self.dlp_registry.functions.dlps(dlp_id), block)
        if info[0] == 0:
            raise DlpNotFound(f"no DLP with id {dlp_id}", name="DlpNotFound", args=(dlp_id,))
        dlp_address = None if int(info[1], 16) == 0 else to_checksum_address(info[1])
        status = _DLP_STATUSES[info[11]] if info[11] < len(_DLP_STATUSES) else str(info[11])
        return Dlp(int(info[0]), to_checksum_address(info[2]), info[5], int(info[9]),
                   to_checksum_address(info[4]), dlp_address, status)

    def dlp_owner(self, dlp_id: int, block: int | str = "latest") -> str:
        return self._call(self.dlp_registry.functions.dlpOwner(dlp_id), block)

    def dlps_count(self, block: int | str = "latest") -> int:
        return int(self._call(self.dlp_registry.functions.dlpsCount(), block))

    def transfer_dlp(self, dlp_id: int, new_owner: str) -> None:
        to = parse_address(new_owner, "new owner")
        self._transact(self.dlp_registry.functions.transferDlpOwnership(dlp_id, to), {"dlp_id": dlp_id})

    # ------------------------------------------------------------ refiners

    def add_refiner(self, dlp_id: int, name: str, schema_url: str = "", instruction_url: str = "", *,
                    schema_id: int | None = None) -> int:
        """Add a refiner to `dlp_id` (its owner only) with its own `schema_url` or a registered `schema_id`."""
        if schema_id is not None:
            if schema_url:
                raise InputError("give a schema URL or a schema id, not both")
            fn = self.refiner_registry.functions.addRefinerWithSchemaId(dlp_id, name, schema_id, instruction_url)
        else:
            fn = self.refiner_registry.functions.addRefiner(dlp_id, name, schema_url, instruction_url)
        receipt = self._transact_as_dlp_owner(fn, dlp_id, {"dlp_id": dlp_id})
        return int(self._event_arg(self.refiner_registry, "RefinerAdded", receipt, "refinerId"))

    def refiner(self, refiner_id: int, block: int | str = "latest") -> Refiner:
        return self.read(self.refiner_read(refiner_id), block)

    def refiner_read(self, refiner_id: int) -> Read[Refiner]:
        def finish(raw: Any) -> Refiner:
            dlp_id, owner, name, schema, instr, schema_id = raw
            if dlp_id == 0:
                raise RefinerNotFound(f"no data refiner with id {refiner_id}", name="RefinerNotFound",
                                      args=(refiner_id,))
            return Refiner(refiner_id, int(dlp_id), owner, name, schema, instr, int(schema_id))

        return Read(self.refiner_registry.functions.refiners(refiner_id), finish)

    def dlp_refiner_ids(self, dlp_id: int, block: int | str = "latest") -> list[int]:
        return [int(i) for i in self._call(self.refiner_registry.functions.dlpRefiners(dlp_id), block)]

    # ------------------------------------------------------------ schemas

    def add_schema(self, name: str, dialect: str, definition_url: str) -> int:
        """Register a schema anyone may use; return its id."""
        receipt = self._transact(self.refiner_registry.functions.addSchema(name, dialect, definition_url))
        return int(self._event_arg(self.refiner_registry, "SchemaAdded", receipt, "schemaId"))

    def schema(self, schema_id: int, block: int | str = "latest") -> Schema:
        name, dialect, url = self._call(self.refiner_registry.functions.schemas(schema_id), block)
        return Schema(schema_id, name, dialect, url)

    def schemas_count(self, block: int | str = "latest") -> int:
        return int(self._call(self.refiner_registry.functions.schemasCount(), block))

    def refiners_count(self, block: int | str = "latest") -> int:
        return int(self._call(self.refiner_registry.functions.refinersCount(), block))

    def adopt_refiners(self, dlp_id: int) -> None:
        """Make the signer, the DLP's current owner, the owner of all its refiners (after a transfer)."""
        fn = self.refiner_registry.functions.updateDlpRefinersOwner(dlp_id)
        self._transact_as_dlp_owner(fn, dlp_id, {"dlp_id": dlp_id})

    # ------------------------------------------------------------ instructions

    def add_instruction(self, image_hash: bytes | str, url: str) -> int:
        """Publish an instruction (image sha256 + archive URL); the sender owns it."""
        digest = parse_sha256(image_hash) if isinstance(image_hash, str) else bytes(image_hash)
        if len(digest) != 32:
            raise InputError(f"sha256 must be 32 bytes, got {len(digest)}")
        fn = self.instruction_registry.functions.addComputeInstruction(digest, url)
        receipt = self._transact(fn)
        return int(self._event_arg(self.instruction_registry, "ComputeInstructionAdded", receipt,
                                   "computeInstructionId"))

    def update_instruction(self, instruction_id: int, dlp_id: int, approved: bool) -> bool:
        """Approve or revoke for a DLP (its owner only); True when the state changed."""
        fn = self.instruction_registry.functions.updateComputeInstruction(instruction_id, dlp_id, approved)
        receipt = self._transact_as_dlp_owner(fn, dlp_id, {"dlp_id": dlp_id, "instruction_id": instruction_id})
        logs = self.instruction_registry.events.ComputeInstructionUpdated().process_receipt(receipt, errors=DISCARD)
        return bool(logs)

    def is_approved(self, instruction_id: int, dlp_id: int, block: int | str = "latest") -> bool:
        return self.read(self.approval_read(instruction_id, dlp_id), block)

    def approval_read(self, instruction_id: int, dlp_id: int) -> Read[bool]:
        return Read(self.instruction_registry.functions.isApproved(instruction_id, dlp_id), bool)

    def instruction(self, instruction_id: int, block: int | str = "latest") -> Instruction:
        return self.read(self.instruction_read(instruction_id), block)

    def instruction_read(self, instruction_id: int) -> Read[Instruction]:
        def finish(raw: Any) -> Instruction:
            digest, owner, url = raw
            if int(owner, 16) == 0:
                raise ComputeInstructionNotFound(
                    f"no compute instruction with id {instruction_id}",
                    name="ComputeInstructionNotFound", args=(instruction_id,))
            return Instruction(instruction_id, bytes(digest).hex(), owner, url)

        return Read(self.instruction_registry.functions.instructions(instruction_id), finish)

    def instructions_count(self, block: int | str = "latest") -> int:
        return int(self._call(self.instruction_registry.functions.instructionsCount(), block))

    def is_valid_instruction_id(self, instruction_id: int, block: int | str = "latest") -> bool:
        return bool(self._call(self.instruction_registry.functions.isValidInstructionId(instruction_id), block))

    def instruction_approvals(self, instruction_id: int) -> dict[int, bool]:
        """DLP id -> current approval, for every DLP that ever updated this instruction."""
        event = self.instruction_registry.events.ComputeInstructionUpdated()
        with self._translate():
            block = self.w3.eth.block_number
            logs = event.get_logs(from_block=self.deployment.deploy_block, to_block=block,
                                  argument_filters={"computeInstructionId": instruction_id})
        dlp_ids = sorted({int(log["args"]["dlpId"]) for log in logs})
        return {d: self.is_approved(instruction_id, d, block) for d in dlp_ids}

    # ------------------------------------------------------------ permissions

    def add_permission(
        self,
        refiner_id: int,
        grantee: str | None = None,
        table: str = "",
        column: str = "",
        price: int = 0,
        token: str | None = None,
    ) -> int:
        """Grant `grantee` (None = anyone) a read of refiner/table/column at `price` of `token` (None = native)."""
        if price < 0:
            raise InputError(f"price must be >= 0, got {price}")
        token_addr = parse_address(token, "token") if token else ZERO_ADDRESS
        if grantee:
            who = parse_address(grantee, "grantee")
            fn = self.query_engine.functions.addPermission(who, refiner_id, table, column, token_addr, price)
        else:
            fn = self.query_engine.functions.addGenericPermission(refiner_id, table, column, token_addr, price)
        receipt = self._transact_as_refiner_owner(fn, refiner_id, {"refiner_id": refiner_id})
        return int(self._event_arg(self.query_engine, "PermissionAdded", receipt, "permissionId"))

    def update_permission_approval(self, permission_id: int, approved: bool) -> bool:
        """Approve or revoke a permission (the refiner's owner); True when the state changed."""
        fn = self.query_engine.functions.updatePermissionApproval(permission_id, approved)
        refiner = lambda: self.permission(permission_id).refiner_id
        receipt = self._transact(fn, {"permission_id": permission_id, "refiner_id": refiner})
        logs = self.query_engine.events.PermissionApprovalUpdated().process_receipt(receipt, errors=DISCARD)
        return bool(logs)

    def permission(self, permission_id: int, block: int | str = "latest") -> PermissionRecord:
        grantee, approved, refiner_id, table, column, price, token = self._call(
            self.query_engine.functions.permissions(permission_id), block)
        if refiner_id == 0:
            raise PermissionNotFound(f"no permission with id {permission_id}",
                                     name="PermissionNotFound", args=(permission_id,))
        return permission_record(permission_id, grantee, approved, refiner_id, table, column, price, token)

    def get_permissions(
        self, refiner_id: int, grantee: str | None = None, block: int | str = "latest"
    ) -> list[PermissionRecord]:
        """The APPROVED permissions that apply to `grantee`: the generic (anyone) ones first, then its own."""
        return self.read(self.permissions_read(refiner_id, grantee), block)

    def permissions_read(self, refiner_id: int, grantee: str | None = None) -> Read[list[PermissionRecord]]:
        who = parse_address(grantee, "grantee") if grantee else ZERO_ADDRESS
        return Read(self.query_engine.functions.getPermissions(refiner_id, who),
                    lambda rows: [permission_record(*row) for row in rows])

    def refiner_permission_ids(self, refiner_id: int, block: int | str = "latest") -> list[int]:
        return [int(i) for i in self._call(self.query_engine.functions.refinerPermissionIds(refiner_id), block)]

    def permissions_count(self, block: int | str = "latest") -> int:
        return int(self._call(self.query_engine.functions.permissionsCount(), block))

    # ------------------------------------------------------------ admin

    def _contract(self, key: str) -> Any:
        if key not in self._contracts:
            raise InputError(f"unknown registry {key!r}: one of {', '.join(CONTRACT_KEYS)}")
        return self._contracts[key]

    def pause(self, key: str) -> None:
        self._transact(self._contract(key).functions.pause())

    def unpause(self, key: str) -> None:
        self._transact(self._contract(key).functions.unpause())

    def paused(self, key: str, block: int | str = "latest") -> bool:
        return self.read(self.paused_read(key), block)

    def paused_read(self, key: str) -> Read[bool]:
        return Read(self._contract(key).functions.paused(), bool)

    def version(self, key: str) -> str:
        return str(self._call(self._contract(key).functions.version()))


def _rpc_message(exc: Web3RPCError) -> str:
    response = getattr(exc, "rpc_response", None) or {}
    error = response.get("error") if isinstance(response, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return str(exc.args[0]) if exc.args else exc.__class__.__name__
