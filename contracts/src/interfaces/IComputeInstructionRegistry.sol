// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IManaged} from "./IManaged.sol";

/**
 * @title IComputeInstructionRegistry
 * @notice Compute instructions (a Docker image archive URL and its sha256) and
 * each DLP owner's approval of them. The ABI of the Vana functions, events and
 * errors is kept byte-for-byte: tests decode every call through Vana's own ABI.
 */
interface IComputeInstructionRegistry is IManaged {
    /// @notice An instruction as {instructions} returns it (Vana's `ComputeInstructionInfo`, one tuple).
    struct ComputeInstructionInfo {
        bytes32 hash;
        address owner;
        string url;
    }

    /// @dev The caller is not the DLP's owner (name fixed by Vana compatibility).
    error NotDlpOwner();
    /// @dev `computeInstructionId` was never added (name fixed by Vana compatibility).
    error ComputeInstructionNotFound(uint256 computeInstructionId);
    /// @dev The instruction hash must not be zero.
    error ZeroHash();
    /// @dev The instruction URL must not be empty.
    error EmptyUrl();

    /// @notice A compute instruction was added (Vana signature).
    event ComputeInstructionAdded(
        uint256 indexed computeInstructionId,
        address indexed owner,
        string computeInstructionUrl,
        bytes32 computeInstructionHash
    );
    /// @notice A DLP owner approved or revoked an instruction (Vana signature).
    event ComputeInstructionUpdated(uint256 indexed computeInstructionId, uint256 indexed dlpId, bool approved);
    /// @notice The linked DLP registry changed.
    event DlpRegistryUpdated(address indexed dlpRegistry);

    /**
     * @notice Adds an instruction; the caller becomes its owner. Ids start at 1.
     * @param hash sha256 of the image archive.
     * @param url Where the image archive is fetched from.
     * @return The new instruction's id.
     *
     * Requirements:
     * - the contract is not paused;
     * - `hash` is not zero (`ZeroHash`);
     * - `url` is not empty (`EmptyUrl`).
     *
     * Emits a {ComputeInstructionAdded} event.
     */
    function addComputeInstruction(bytes32 hash, string calldata url) external returns (uint256);

    /**
     * @notice Approves or revokes `instructionId` for `dlpId`. A call that does not
     * change the stored value writes nothing and emits nothing.
     *
     * Requirements, checked in Vana's order:
     * - the caller owns the DLP, read from the DLP registry's `dlps` (`NotDlpOwner`,
     *   also for an unknown DLP);
     * - the contract is not paused;
     * - `instructionId` exists (`ComputeInstructionNotFound`).
     *
     * Emits a {ComputeInstructionUpdated} event when the approval changes.
     */
    function updateComputeInstruction(uint256 instructionId, uint256 dlpId, bool approved) external;

    /**
     * @notice Points this registry at another DLP registry.
     *
     * Requirements:
     * - the caller has `MAINTAINER_ROLE`;
     * - `newDlpRegistry` is a contract (`InvalidAccount`).
     *
     * Emits a {DlpRegistryUpdated} event.
     */
    function updateDlpRegistry(address newDlpRegistry) external;

    /**
     * @notice Whether `dlpId`'s owner approved `instructionId` (false for unknown ids).
     *
     * Requirements: none.
     *
     * Emits nothing.
     */
    function isApproved(uint256 instructionId, uint256 dlpId) external view returns (bool);

    /**
     * @notice Whether `instructionId` was added.
     *
     * Requirements: none.
     *
     * Emits nothing.
     */
    function isValidInstructionId(uint256 instructionId) external view returns (bool);

    /**
     * @notice An instruction's record; the zero tuple for an unknown id.
     *
     * Requirements: none.
     *
     * Emits nothing.
     */
    function instructions(uint256 instructionId) external view returns (ComputeInstructionInfo memory);

    /**
     * @notice How many instructions were added (the highest id).
     *
     * Requirements: none.
     *
     * Emits nothing.
     */
    function instructionsCount() external view returns (uint256);

    /**
     * @notice The DLP registry that owns DLP ids and owners.
     *
     * Requirements: none.
     *
     * Emits nothing.
     */
    function dlpRegistry() external view returns (address);
}
