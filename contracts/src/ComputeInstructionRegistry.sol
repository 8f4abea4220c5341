// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ManagedUpgradeable} from "./utils/ManagedUpgradeable.sol";
import {IManaged} from "./interfaces/IManaged.sol";
import {IDLPRegistry} from "./interfaces/IDLPRegistry.sol";
import {IComputeInstructionRegistry} from "./interfaces/IComputeInstructionRegistry.sol";

/**
 * @title ComputeInstructionRegistry
 * @notice Vana-compatible registry of compute instructions (image URL + sha256)
 * and of each DLP owner's approval of them.
 */
contract ComputeInstructionRegistry is ManagedUpgradeable, IComputeInstructionRegistry {
    uint256 private constant VERSION = 1;

    struct Instruction {
        bytes32 hash;
        address owner;
        string url;
    }

    /// @custom:storage-location erc7201:computetodata.storage.ComputeInstructionRegistry
    struct ComputeInstructionRegistryStorage {
        IDLPRegistry dlpRegistry;
        uint256 instructionsCount;
        mapping(uint256 instructionId => Instruction) instructions;
        mapping(uint256 instructionId => mapping(uint256 dlpId => bool)) approvals;
    }

    // keccak256(abi.encode(uint256(keccak256("computetodata.storage.ComputeInstructionRegistry")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 private constant STORAGE_LOCATION = 0xeea272c9387af5a0ced5c59ddc6b9da90bd64bea457c19011bafdc11bd4aa700;

    /// @dev Vana's order: the owner check comes first, and an unknown DLP (no owner) fails it.
    modifier onlyDlpOwner(uint256 dlpId) {
        if (_storage().dlpRegistry.dlps(dlpId).ownerAddress != msg.sender) revert NotDlpOwner();
        _;
    }

    /**
     * @notice Sets up the proxy: `admin` gets `DEFAULT_ADMIN_ROLE` and
     * `MAINTAINER_ROLE`; DLP owners come from `dlpRegistry_`.
     *
     * Requirements:
     * - not initialized yet;
     * - `admin` is not zero and `dlpRegistry_` is a contract (`InvalidAccount`).
     *
     * Emits {RoleGranted} and {DlpRegistryUpdated} events.
     */
    function initialize(address admin, address dlpRegistry_) external initializer {
        __Managed_init(admin);
        _setDlpRegistry(dlpRegistry_);
    }

    /// @inheritdoc IComputeInstructionRegistry
    function addComputeInstruction(bytes32 hash, string calldata url) external whenNotPaused returns (uint256) {
        if (hash == bytes32(0)) revert ZeroHash();
        if (bytes(url).length == 0) revert EmptyUrl();
        ComputeInstructionRegistryStorage storage $ = _storage();
        uint256 instructionId = ++$.instructionsCount;
        $.instructions[instructionId] = Instruction({hash: hash, owner: msg.sender, url: url});
        emit ComputeInstructionAdded(instructionId, msg.sender, url, hash);
        return instructionId;
    }

    /// @inheritdoc IComputeInstructionRegistry
    function updateComputeInstruction(uint256 instructionId, uint256 dlpId, bool approved)
        external
        onlyDlpOwner(dlpId)
        whenNotPaused
    {
        ComputeInstructionRegistryStorage storage $ = _storage();
        if (!_isValid($, instructionId)) revert ComputeInstructionNotFound(instructionId);
        mapping(uint256 => bool) storage approvals = $.approvals[instructionId];
        // No write and no event for a no-op: indexers see only real changes.
        if (approvals[dlpId] == approved) return;
        approvals[dlpId] = approved;
        emit ComputeInstructionUpdated(instructionId, dlpId, approved);
    }

    /// @inheritdoc IComputeInstructionRegistry
    function updateDlpRegistry(address newDlpRegistry) external onlyRole(MAINTAINER_ROLE) {
        _setDlpRegistry(newDlpRegistry);
    }

    /// @inheritdoc IComputeInstructionRegistry
    function isApproved(uint256 instructionId, uint256 dlpId) external view returns (bool) {
        return _storage().approvals[instructionId][dlpId];
    }

    /// @inheritdoc IComputeInstructionRegistry
    function isValidInstructionId(uint256 instructionId) external view returns (bool) {
        return _isValid(_storage(), instructionId);
    }

    /// @inheritdoc IComputeInstructionRegistry
    function instructions(uint256 instructionId) external view returns (ComputeInstructionInfo memory) {
        Instruction storage instruction = _storage().instructions[instructionId];
        return ComputeInstructionInfo({hash: instruction.hash, owner: instruction.owner, url: instruction.url});
    }

    /// @inheritdoc IComputeInstructionRegistry
    function instructionsCount() external view returns (uint256) {
        return _storage().instructionsCount;
    }

    /// @inheritdoc IComputeInstructionRegistry
    function dlpRegistry() external view returns (address) {
        return address(_storage().dlpRegistry);
    }

    /// @inheritdoc IManaged
    function version() external pure virtual returns (uint256) {
        return VERSION;
    }

    function _isValid(ComputeInstructionRegistryStorage storage $, uint256 instructionId)
        private
        view
        returns (bool)
    {
        return instructionId != 0 && instructionId <= $.instructionsCount;
    }

    function _setDlpRegistry(address newDlpRegistry) private {
        _requireContract(newDlpRegistry);
        _storage().dlpRegistry = IDLPRegistry(newDlpRegistry);
        emit DlpRegistryUpdated(newDlpRegistry);
    }

    function _storage() private pure returns (ComputeInstructionRegistryStorage storage $) {
        assembly {
            $.slot := STORAGE_LOCATION
        }
    }
}
