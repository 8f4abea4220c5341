// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC1967Proxy} from "@openzeppelin/contracts/proxy/ERC1967/ERC1967Proxy.sol";
import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {PausableUpgradeable} from "@openzeppelin/contracts-upgradeable/utils/PausableUpgradeable.sol";

import {DLPRegistry} from "../../src/DLPRegistry.sol";
import {IDLPRegistry} from "../../src/interfaces/IDLPRegistry.sol";
import {DataRefinerRegistry} from "../../src/DataRefinerRegistry.sol";
import {ComputeInstructionRegistry} from "../../src/ComputeInstructionRegistry.sol";
import {QueryEngine} from "../../src/QueryEngine.sol";
import {DataAccessTreasury} from "../../src/DataAccessTreasury.sol";
import {ComputeEngine} from "../../src/ComputeEngine.sol";
import {TestBase} from "./TestBase.sol";

/**
 * @title Deployments
 * @notice Deploys the registries the way production does (implementation +
 * ERC1967Proxy + initialize in one call), plus the revert payloads of the
 * OpenZeppelin errors the tests expect.
 */
abstract contract Deployments is TestBase {
    bytes32 internal constant ERC1967_IMPLEMENTATION_SLOT =
        0x360894a13ba1a3210667c828492db98dca3e2076cc3735a920a3ca505d382bbc;

    function _proxy(address implementation, bytes memory initCall) internal returns (address) {
        return address(new ERC1967Proxy(implementation, initCall));
    }

    function _deployDlpRegistry(address admin) internal returns (DLPRegistry) {
        return DLPRegistry(_proxy(address(new DLPRegistry()), abi.encodeCall(DLPRegistry.initialize, (admin))));
    }

    function _deployRefinerRegistry(address admin, address dlpRegistry) internal returns (DataRefinerRegistry) {
        bytes memory init = abi.encodeCall(DataRefinerRegistry.initialize, (admin, dlpRegistry));
        return DataRefinerRegistry(_proxy(address(new DataRefinerRegistry()), init));
    }

    function _deployInstructionRegistry(address admin, address dlpRegistry)
        internal
        returns (ComputeInstructionRegistry)
    {
        bytes memory init = abi.encodeCall(ComputeInstructionRegistry.initialize, (admin, dlpRegistry));
        return ComputeInstructionRegistry(_proxy(address(new ComputeInstructionRegistry()), init));
    }

    function _deployQueryEngine(address admin, address refinerRegistry) internal returns (QueryEngine) {
        address treasury = address(new DataAccessTreasury());
        bytes memory init = abi.encodeCall(QueryEngine.initialize, (admin, refinerRegistry, treasury));
        return QueryEngine(payable(_proxy(address(new QueryEngine()), init)));
    }

    /// @dev Registers `name` owned by `owner` (also its treasury) with no DLP contract; returns the id.
    function _registerDlp(DLPRegistry registry, address owner, string memory name) internal returns (uint256) {
        vm.prank(owner);
        registry.registerDlp(_registration(owner, name));
        return registry.dlpsCount();
    }

    function _registration(address owner, string memory name)
        internal
        pure
        returns (IDLPRegistry.DlpRegistration memory)
    {
        return IDLPRegistry.DlpRegistration({
            dlpAddress: address(0),
            ownerAddress: owner,
            treasuryAddress: payable(owner),
            name: name,
            iconUrl: "",
            website: "",
            metadata: ""
        });
    }

    function _deployComputeEngine(address admin, address queryEngine, address instructionRegistry)
        internal
        returns (ComputeEngine)
    {
        address treasury = address(new DataAccessTreasury());
        bytes memory init = abi.encodeCall(ComputeEngine.initialize, (admin, queryEngine, instructionRegistry, treasury));
        return ComputeEngine(_proxy(address(new ComputeEngine()), init));
    }

    function _implementationOf(address proxy) internal view returns (address) {
        return address(uint160(uint256(vm.load(proxy, ERC1967_IMPLEMENTATION_SLOT))));
    }

    /// @dev The ERC-7201 slot for a namespace id, computed the way the contracts document it.
    function _erc7201(string memory id) internal pure returns (bytes32) {
        return keccak256(abi.encode(uint256(keccak256(bytes(id))) - 1)) & ~bytes32(uint256(0xff));
    }

    function _unauthorized(address account, bytes32 role) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, account, role);
    }

    function _enforcedPause() internal pure returns (bytes4) {
        return PausableUpgradeable.EnforcedPause.selector;
    }
}
