"""`deploy` from the shipped artifacts: proxies, implementations, admin (real anvil)."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from registry_client.contracts import connect, load_artifact
from registry_client.manifest import CONTRACT_KEYS

pytestmark = pytest.mark.chain

# ERC-1967 implementation slot: keccak256("eip1967.proxy.implementation") - 1
IMPL_SLOT = int.from_bytes(keccak(text="eip1967.proxy.implementation"), "big") - 1


def test_deployment_manifest(deployment, accounts):
    assert deployment.chain_id == 31337
    assert set(deployment.addresses) == set(CONTRACT_KEYS) == set(deployment.implementations)
    everything = [*deployment.addresses.values(), *deployment.implementations.values()]
    assert len(set(everything)) == 2 * len(CONTRACT_KEYS)
    assert deployment.deployer == accounts.deployer.address
    assert deployment.deploy_block >= 1


def test_proxies_point_at_implementations_and_are_wired(chain, deployment, accounts):
    reg = connect(chain.url, deployment)
    for key, proxy in deployment.addresses.items():
        slot = reg.w3.eth.get_storage_at(proxy, IMPL_SLOT)
        assert "0x" + slot[-20:].hex() == deployment.implementations[key].lower()
        assert reg.version(key)
    assert reg.refiner_registry.functions.dlpRegistry().call() == deployment.addresses["dlp_registry"]
    assert reg.instruction_registry.functions.dlpRegistry().call() == deployment.addresses["dlp_registry"]
    assert (reg.query_engine.functions.refinerRegistry().call()
            == deployment.addresses["data_refiner_registry"])
    assert reg.compute_engine.functions.queryEngine().call() == deployment.addresses["query_engine"]
    assert reg.query_engine.functions.computeEngine().call() == deployment.addresses["compute_engine"]
    assert reg.query_engine.functions.vanaTreasury().call() == accounts.deployer.address
    assert reg.query_engine.functions.dlpPaymentPercentage().call() == 80 * 10**18
    admin_role = b"\x00" * 32
    for contract in (reg.dlp_registry, reg.instruction_registry):
        assert contract.functions.hasRole(admin_role, accounts.deployer.address).call()
        assert not contract.functions.hasRole(admin_role, accounts.builder.address).call()


def test_artifacts_ship_abi_and_bytecode():
    for name in ("DLPRegistry", "DataRefinerRegistry", "ComputeInstructionRegistry", "QueryEngine",
                 "ComputeEngine", "DataAccessTreasury", "ERC1967Proxy"):
        artifact = load_artifact(name)
        assert artifact["contractName"] == name
        assert artifact["bytecode"].startswith("0x") and len(artifact["bytecode"]) > 100
