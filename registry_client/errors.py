"""Errors of the registry client, each with a stable code; contract reverts decoded.

Hierarchy::

    RegistryError                    code, message
    ├── RpcUnavailable               RPC_UNAVAILABLE     the RPC endpoint does not answer
    ├── WrongChain                   WRONG_CHAIN         manifest chain id != RPC chain id
    ├── ManifestError                MANIFEST_INVALID    missing/invalid manifest, no code at an address
    ├── WalletError                  WALLET_ERROR        keystore missing, wrong password, bad env key
    ├── InputError                   INVALID_INPUT       malformed sha256, address, file...
    ├── TransactionFailed            TX_FAILED           a sent transaction reverted or was not mined
    ├── EngineApiError               ENGINE_ERROR        the engine API refused (its problem code), CLIENT_CODES
    │   └── EngineUnreachable        ENGINE_UNREACHABLE  nothing answers at the engine URL
    └── ContractRevert               CONTRACT_REVERT     a contract refused: decoded custom error
        ├── NotDlpOwner              NOT_DLP_OWNER
        ├── NotRefinerOwner          NOT_REFINER_OWNER   permissions are managed by the refiner's owner
        ├── DlpNotFound              DLP_NOT_FOUND
        ├── RefinerNotFound          REFINER_NOT_FOUND
        ├── ComputeInstructionNotFound  INSTRUCTION_NOT_FOUND
        ├── PermissionNotFound       PERMISSION_NOT_FOUND
        ├── SchemaNotFound           SCHEMA_NOT_FOUND    InvalidSchemaId
        ├── InvalidArgument          INVALID_ARGUMENT    ZeroHash, EmptyUrl, EmptyName,
        │                                                EmptySchemaUrl, ColumnNameUnexpected, InvalidOwner, InvalidAccount,
        │                                                InvalidAddress, InvalidName, InvalidDlpStatus,
        │                                                InvalidDepositAmount, DlpAddressCannotBeChanged, TransferFailed,
        │                                                PaymentNotReceived, InvalidDlpPaymentPercentage,
        │                                                InvalidDlpTreasuryAddress, ZeroAddress, ZeroAmount,
        │                                                InvalidPaymentToken, TokenAlreadyWhitelisted,
        │                                                InsufficientBalance, InvalidAmount, InvalidVanaAmount,
        │                                                UnexpectedVanaDeposit, JobNotFound, JobAlreadyPaid,
        │                                                NotJobOwner, JobLifeCycleEnded
        ├── RegistryPaused           REGISTRY_PAUSED     EnforcedPause
        └── Unauthorized             UNAUTHORIZED        AccessControlUnauthorizedAccount

`decode_revert(data, context)` turns raw revert data into the right class by
its 4-byte selector, looked up in a table built from every shipped ABI's error
entries. `context` holds what the caller knows (wallet, dlp_id, ...) so the
message can name it: NotDlpOwner() carries no arguments on chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "ERROR_CODES",
    "ComputeInstructionNotFound",
    "ContractRevert",
    "DlpNotFound",
    "ErrorTable",
    "InputError",
    "InvalidArgument",
    "ManifestError",
    "NotDlpOwner",
    "NotRefinerOwner",
    "PermissionNotFound",
    "RefinerNotFound",
    "RegistryError",
    "RegistryPaused",
    "RpcUnavailable",
    "SchemaNotFound",
    "TransactionFailed",
    "Unauthorized",
    "WalletError",
    "WrongChain",
    "decode_revert",
]


class RegistryError(Exception):
    """Base of every error the registry client raises on purpose."""

    code: str = "REGISTRY_ERROR"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class RpcUnavailable(RegistryError):
    code = "RPC_UNAVAILABLE"


class WrongChain(RegistryError):
    code = "WRONG_CHAIN"


class ManifestError(RegistryError):
    code = "MANIFEST_INVALID"


class WalletError(RegistryError):
    code = "WALLET_ERROR"


class InputError(RegistryError):
    code = "INVALID_INPUT"


class TransactionFailed(RegistryError):
    code = "TX_FAILED"


class ContractRevert(RegistryError):
    """A contract call reverted with a decoded error `name(error_args)`."""

    code = "CONTRACT_REVERT"

    def __init__(self, message: str, *, name: str = "", args: tuple = (), code: str | None = None):
        super().__init__(message, code=code)
        self.name = name
        self.error_args = tuple(args)


class NotDlpOwner(ContractRevert):
    code = "NOT_DLP_OWNER"


class NotRefinerOwner(ContractRevert):
    code = "NOT_REFINER_OWNER"


class DlpNotFound(ContractRevert):
    code = "DLP_NOT_FOUND"


class RefinerNotFound(ContractRevert):
    code = "REFINER_NOT_FOUND"


class ComputeInstructionNotFound(ContractRevert):
    code = "INSTRUCTION_NOT_FOUND"


class PermissionNotFound(ContractRevert):
    code = "PERMISSION_NOT_FOUND"


class SchemaNotFound(ContractRevert):
    code = "SCHEMA_NOT_FOUND"


class InvalidArgument(ContractRevert):
    code = "INVALID_ARGUMENT"


class RegistryPaused(ContractRevert):
    code = "REGISTRY_PAUSED"


class Unauthorized(ContractRevert):
    code = "UNAUTHORIZED"


# Every code the client can report; docs/cli.md is checked against this list.
ERROR_CODES: dict[str, str] = {
    cls.code: (cls.__doc__ or cls.__name__).strip().splitlines()[0]
    for cls in (
        RegistryError, RpcUnavailable, WrongChain, ManifestError, WalletError, InputError,
        TransactionFailed, ContractRevert, NotDlpOwner, NotRefinerOwner, DlpNotFound, RefinerNotFound,
        ComputeInstructionNotFound, PermissionNotFound, SchemaNotFound, InvalidArgument, RegistryPaused,
        Unauthorized,
    )
}

# name of the on-chain error -> (class, message template). Templates use the
# decoded args by name (arg0, arg1 ... when unnamed) and the call context.
_KNOWN: dict[str, tuple[type[ContractRevert], str]] = {
    "NotDlpOwner": (NotDlpOwner, "wallet {wallet} is not the owner of DLP {dlp_id}"),
    "DlpNotFound": (DlpNotFound, "no DLP with id {arg0}"),
    "RefinerNotFound": (RefinerNotFound, "no data refiner with id {arg0}"),
    "ComputeInstructionNotFound": (ComputeInstructionNotFound, "no compute instruction with id {arg0}"),
    "PermissionNotFound": (PermissionNotFound, "no permission with id {arg0}"),
    "InvalidSchemaId": (SchemaNotFound, "no schema with id {arg0}"),
    "ZeroHash": (InvalidArgument, "the image hash must not be zero"),
    "EmptyUrl": (InvalidArgument, "the URL must not be empty"),
    "EmptyName": (InvalidArgument, "the name must not be empty"),
    "EmptySchemaUrl": (InvalidArgument, "the schema URL must not be empty"),
    "NotRefinerOwner": (NotRefinerOwner, "wallet {wallet} is not the owner of refiner {refiner_id}"),
    "ColumnNameUnexpected": (InvalidArgument, "a column permission needs a table: pass a table name too"),
    "PaymentNotReceived": (InvalidArgument, "the ComputeEngine paid less than the requested amount"),
    "InvalidDlpPaymentPercentage": (InvalidArgument, "the DLP payment percentage is above 100% (100e18)"),
    "InvalidDlpTreasuryAddress": (InvalidArgument, "the DLP has no treasury address to claim to"),
    "ZeroAddress": (InvalidArgument, "an address must not be zero"),
    "ZeroAmount": (InvalidArgument, "nothing to transfer (the amount is zero)"),
    "InvalidPaymentToken": (InvalidArgument, "token {arg0} is not accepted for payment"),
    "TokenAlreadyWhitelisted": (InvalidArgument, "token {arg0} is the native token or already accepted"),
    "InsufficientBalance": (InvalidArgument, "the ComputeEngine deposit is smaller than the amount"),
    "InvalidAmount": (InvalidArgument, "the amount must not be zero"),
    "InvalidVanaAmount": (InvalidArgument, "the value sent differs from the native amount"),
    "UnexpectedVanaDeposit": (InvalidArgument, "no native value may be sent with an ERC-20 deposit"),
    "InstructionNotFound": (ComputeInstructionNotFound, "no compute instruction with id {arg0}"),
    "JobNotFound": (InvalidArgument, "no compute job with id {arg0}"),
    "JobAlreadyPaid": (InvalidArgument, "compute job {arg0} was already charged for DLP {arg1}"),
    "NotJobOwner": (InvalidArgument, "only the job's owner may cancel it"),
    "JobLifeCycleEnded": (InvalidArgument, "the job is completed, failed or canceled"),
    "InvalidOwner": (InvalidArgument, "{arg0} is not a valid owner address"),
    "InvalidAccount": (InvalidArgument, "{arg0} is not a valid account here (zero, or not a contract)"),
    "InvalidAddress": (InvalidArgument, "the owner and treasury addresses must not be zero"),
    "InvalidName": (InvalidArgument, "the DLP name is taken or has fewer than 4 non-space characters"),
    "InvalidDlpStatus": (InvalidArgument, "the DLP's status does not allow this, or its DLP address is registered"),
    "InvalidDepositAmount": (InvalidArgument, "the value sent is below the DLP registration deposit"),
    "DlpAddressCannotBeChanged": (InvalidArgument, "a DLP's dlpAddress cannot be changed"),
    "TransferFailed": (InvalidArgument, "the DLP registry's treasury refused the registration deposit"),
    "EnforcedPause": (RegistryPaused, "the registry is paused"),
    "ExpectedPause": (InvalidArgument, "the registry is not paused"),
    "AccessControlUnauthorizedAccount": (
        Unauthorized, "wallet {arg0} lacks the role {arg1} needed for this call"),
}


_ID_FROM_CONTEXT = {"PermissionNotFound": "permission_id", "RefinerNotFound": "refiner_id", "DlpNotFound": "dlp_id"}


def _selector(signature: str) -> str:
    from eth_utils import keccak

    return "0x" + keccak(text=signature)[:4].hex()


def _canonical_type(entry: Mapping[str, Any]) -> str:
    from eth_utils.abi import collapse_if_tuple

    return collapse_if_tuple(dict(entry))


class ErrorTable:
    """4-byte selector -> (name, input types, input names), from ABI error entries."""

    def __init__(self, abis: Iterable[list[dict[str, Any]]]):
        self._by_selector: dict[str, tuple[str, list[str], list[str]]] = {
            _selector("Error(string)"): ("Error", ["string"], ["reason"]),
            _selector("Panic(uint256)"): ("Panic", ["uint256"], ["code"]),
        }
        for abi in abis:
            for entry in abi:
                if entry.get("type") != "error":
                    continue
                types = [_canonical_type(i) for i in entry.get("inputs", [])]
                names = [i.get("name") or f"arg{n}" for n, i in enumerate(entry.get("inputs", []))]
                sig = f"{entry['name']}({','.join(types)})"
                self._by_selector[_selector(sig)] = (entry["name"], types, names)

    def __contains__(self, selector: str) -> bool:
        return selector.lower() in self._by_selector

    def decode(self, data: str | bytes) -> tuple[str, tuple, list[str]]:
        """Return (name, args, arg names); name "" when the selector is unknown."""
        from eth_abi import decode as abi_decode

        raw = bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else data
        if len(raw) < 4:
            return "", (), []
        entry = self._by_selector.get("0x" + raw[:4].hex())
        if entry is None:
            return "", (), []
        name, types, names = entry
        try:
            args = tuple(abi_decode(types, raw[4:]))
        except Exception:  # noqa: BLE001 - malformed payload: keep the name, drop args
            args = ()
        return name, args, names


def _fmt(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


def decode_revert(
    data: str | bytes | None, table: ErrorTable, context: Mapping[str, Any] | None = None
) -> ContractRevert:
    """Turn raw revert data into the matching ContractRevert with a human message."""
    context = dict(context or {})
    if not data or (isinstance(data, str) and data in ("0x", "")):
        return ContractRevert("the contract reverted without a reason", name="")
    name, args, names = table.decode(data)
    if not name:
        shown = data if isinstance(data, str) else "0x" + data.hex()
        return ContractRevert(f"the contract reverted with unknown error data {shown[:74]}")
    if name == "Error":
        return ContractRevert(f"the contract reverted: {args[0] if args else ''}", name=name, args=args)
    if name == "Panic":
        return ContractRevert(f"the contract panicked (code {args[0] if args else '?'})", name=name, args=args)
    values: dict[str, Any] = {f"arg{i}": _fmt(a) for i, a in enumerate(args)}
    # Vana's QueryEngine raises some "not found" errors without the id: take it from the context.
    if not args and name in _ID_FROM_CONTEXT and _ID_FROM_CONTEXT[name] in context:
        values["arg0"] = _fmt(context[_ID_FROM_CONTEXT[name]])
    values.update({n: _fmt(a) for n, a in zip(names, args)})
    for key, val in context.items():
        values.setdefault(key, _fmt(val))
    cls, template = _KNOWN.get(name, (ContractRevert, ""))
    if name == "NotDlpOwner" and "dlp_id" not in values:
        template = "wallet {wallet} is not the owner of the DLP"
    if name == "NotDlpOwner" and "wallet" not in values:
        template = template.replace("wallet {wallet}", "this wallet")
    if template:
        try:
            message = template.format(**values)
        except (KeyError, IndexError):
            message = f"the contract refused: {name}({', '.join(_fmt(a) for a in args)})"
    else:
        message = f"the contract refused: {name}({', '.join(_fmt(a) for a in args)})"
    return cls(message, name=name, args=args)


# ---- engine API errors (appended by the engine-client helper) ---------------


class EngineApiError(RegistryError):
    """The engine API refused a request: its problem `code`, HTTP `status` and `detail`."""

    code = "ENGINE_ERROR"

    def __init__(self, message: str, *, code: str | None = None, status: int = 0, detail: str | None = None):
        super().__init__(message, code=code)
        self.status = status
        self.detail = detail if detail is not None else message


class EngineUnreachable(EngineApiError):
    """The engine API does not answer at the given URL."""

    code = "ENGINE_UNREACHABLE"


__all__ += ["CLIENT_CODES", "EngineApiError", "EngineUnreachable"]
# An EngineApiError carries the engine's problem `code` (the engine's registry,
# engine.errors.registered_codes) or one of the client's own, registered here and
# documented in docs/api.md ("Client-side codes"), besides `HTTP_<status>`.
CLIENT_CODES: dict[str, str] = {
    EngineApiError.code: "generic engine API error (EngineApiError's default)",
    EngineUnreachable.code: "nothing answers at the engine URL",
    "WAIT_TIMEOUT": "`wait` gave up before the job ended",
    "CHECKSUM_MISMATCH": "a downloaded artifact's sha256 differs from the listed one",
    "UNSAFE_ARTIFACT_NAME": "an artifact name would land outside the download folder",
    "BAD_RESPONSE": "the engine answered something that is not JSON",
    "ATTESTATION_INVALID": "a job's attestation does not recover to its signer over the listed artifacts",
    "ATTESTATION_MISSING": "`verify_attestation` on a job without an attestation",
}

__all__ += ["CLI_CODES"]
# Codes only the CLIs print (registry_client/cli_output.py, artifact_files.py), documented in
# docs/cli.md; tests/engine/test_error_registry.py counts them as registered.
CLI_CODES: dict[str, str] = {
    "USAGE_ERROR": "a command line click cannot parse (exit 2)",
    "ABORTED": "Ctrl-C at a prompt",
    "CONFIRMATION_REQUIRED": "an irreversible step without --yes and no terminal to ask",
    "CANCELLED": "the confirmation was declined",
    "FILE_EXISTS": "a download would overwrite a file (use --force)",
    "NAME_TOO_LONG": "an artifact name too long for the local filesystem",
    "INTERNAL_ERROR": "an unexpected failure (REGISTRY_DEBUG=1 / ENGINE_DEBUG=1 shows the traceback)",
}
