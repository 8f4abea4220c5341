"""Deploy the five contracts (implementation + ERC1967 proxy each) from shipped bytecode.

Order, each proxy initialised in its constructor call so nobody can front-run
`initialize`:

1. DLPRegistry(admin)
2. DataRefinerRegistry(admin, dlpRegistry)
3. ComputeInstructionRegistry(admin, dlpRegistry)
4. QueryEngine(admin, dataRefinerRegistry, DataAccessTreasury implementation) — it
   creates its own DataAccessTreasury proxy (custodian: the QueryEngine), as Vana's does
5. ComputeEngine(admin, queryEngine, instructionRegistry, DataAccessTreasury implementation)
   — deposits and on-chain jobs, with its own treasury

Then the QueryEngine is wired for payments: its ComputeEngine, its protocol
("vana") treasury = the admin, and the DLPs' share (`dlp_share_percent`, 80 by default).

The deploying account becomes admin (DEFAULT_ADMIN_ROLE; the contracts grant
it MAINTAINER_ROLE too). `progress(step, value)` reports "sent"/"mined" per
transaction and "deployed" with (key, proxy address).
"""

from __future__ import annotations

from typing import Any

from web3 import Web3

from registry_client.contracts import (
    CONTRACT_NAMES,
    Progress,
    _hex,
    _rpc_errors,
    error_table,
    load_artifact,
)
from registry_client.errors import ManifestError, TransactionFailed, decode_revert
from registry_client.manifest import Deployment

__all__ = ["deploy"]


def _deploy_contract(
    w3: Web3, account: Any, name: str, args: list[Any], progress: Progress | None
) -> tuple[str, int]:
    """Deploy `name` with constructor `args`; return (address, block)."""
    from web3.exceptions import ContractLogicError, Web3RPCError

    artifact = load_artifact(name)
    bytecode = artifact.get("bytecode") or ""
    if len(bytecode) <= 2:
        raise ManifestError(f"the shipped artifact of {name} has no bytecode (run `make abi`)")
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=bytecode)
    try:
        tx = factory.constructor(*args).build_transaction({
            "from": account.address,
            "nonce": w3.eth.get_transaction_count(account.address, "pending"),
            "chainId": w3.eth.chain_id,
        })
        signed = account.sign_transaction(tx)
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
        if progress:
            progress("sent", _hex(tx_hash))
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
    except ContractLogicError as exc:
        data = exc.data if isinstance(exc.data, str) else None
        raise decode_revert(data, error_table(), {"wallet": account.address}) from exc
    except Web3RPCError as exc:
        raise TransactionFailed(f"deploying {name} failed: {exc}") from exc
    if receipt["status"] != 1 or not receipt.get("contractAddress"):
        raise TransactionFailed(f"deploying {name} reverted in block {receipt['blockNumber']}")
    if progress:
        progress("mined", receipt["blockNumber"])
    return receipt["contractAddress"], int(receipt["blockNumber"])


def _deploy_proxied(
    w3: Web3, account: Any, name: str, init_args: list[Any], progress: Progress | None
) -> tuple[str, str, int]:
    """Implementation, then ERC1967Proxy(impl, initialize(...)); (proxy, impl, first block)."""
    impl, block = _deploy_contract(w3, account, name, [], progress)
    logic = w3.eth.contract(address=impl, abi=load_artifact(name)["abi"])
    init = logic.encode_abi("initialize", args=init_args)
    proxy, _ = _deploy_contract(w3, account, "ERC1967Proxy", [impl, init], progress)
    return proxy, impl, block


def _send(w3: Web3, account: Any, fn: Any, progress: Progress | None) -> None:
    """One admin transaction during deployment, awaited."""
    tx = fn.build_transaction({
        "from": account.address,
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        "chainId": w3.eth.chain_id,
    })
    tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    if progress:
        progress("sent", _hex(tx_hash))
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
    if receipt["status"] != 1:
        raise TransactionFailed(f"a deployment step reverted in block {receipt['blockNumber']}")
    if progress:
        progress("mined", receipt["blockNumber"])


def _wire_payments(w3: Web3, account: Any, proxies: dict[str, str], dlp_share_percent: int,
                   progress: Progress | None) -> None:
    engine = w3.eth.contract(address=proxies["query_engine"], abi=load_artifact("QueryEngine")["abi"])
    for fn in (engine.functions.updateComputeEngine(proxies["compute_engine"]),
               engine.functions.updateVanaTreasury(account.address),
               engine.functions.updateDlpPaymentPercentage(dlp_share_percent * 10**18)):
        _send(w3, account, fn, progress)


def deploy(w3: Web3, account: Any, progress: Progress | None = None, *, dlp_share_percent: int = 80) -> Deployment:
    """Deploy every contract with `account` as admin; return the manifest."""
    if not 0 <= dlp_share_percent <= 100:
        raise ManifestError(f"the DLPs' share must be 0..100 percent, got {dlp_share_percent}")
    rpc = str(getattr(w3.provider, "endpoint_uri", "the RPC endpoint"))
    admin = account.address
    proxies: dict[str, str] = {}
    impls: dict[str, str] = {}
    with _rpc_errors(rpc):
        chain_id = w3.eth.chain_id
        first_block: int | None = None

        def treasury() -> str:  # each engine gets its own DataAccessTreasury (implementation here)
            return _deploy_contract(w3, account, "DataAccessTreasury", [], progress)[0]

        plan = [
            ("dlp_registry", lambda: [admin]),
            ("data_refiner_registry", lambda: [admin, proxies["dlp_registry"]]),
            ("compute_instruction_registry", lambda: [admin, proxies["dlp_registry"]]),
            ("query_engine", lambda: [admin, proxies["data_refiner_registry"], treasury()]),
            ("compute_engine", lambda: [admin, proxies["query_engine"], proxies["compute_instruction_registry"],
                                        treasury()]),
        ]
        for key, args in plan:
            proxy, impl, block = _deploy_proxied(w3, account, CONTRACT_NAMES[key], args(), progress)
            proxies[key], impls[key] = proxy, impl
            first_block = block if first_block is None else first_block
            if progress:
                progress("deployed", (key, proxy))
        _wire_payments(w3, account, proxies, dlp_share_percent, progress)
    return Deployment(chain_id, proxies, impls, first_block or 0, admin)
