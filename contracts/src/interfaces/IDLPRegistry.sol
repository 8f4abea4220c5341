// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IManaged} from "./IManaged.sol";

/**
 * @title IDLPRegistry
 * @notice Data Liquidity Pools: an id, an owner and a name. The owner is the
 * one account that may add refiners and approve compute instructions for it.
 */
interface IDLPRegistry is IManaged {
    /// @dev `dlpId` was never registered.
    error DlpNotFound(uint256 dlpId);
    /// @dev The caller is not the DLP's owner (name fixed by Vana compatibility).
    error NotDlpOwner();
    /// @dev `owner` cannot own a DLP (the zero address).
    error InvalidOwner(address owner);
    /// @dev A name must not be empty.
    error EmptyName();

    /// @notice A DLP was registered.
    event DlpRegistered(uint256 indexed dlpId, address indexed owner, string name);
    /// @notice A DLP changed hands.
    event DlpOwnershipTransferred(uint256 indexed dlpId, address indexed previousOwner, address indexed newOwner);

    /**
     * @notice Registers a DLP. Ids start at 1.
     * @param name Human-readable name, not empty.
     * @param owner The DLP's owner; `address(0)` means the caller.
     * @return dlpId The new DLP's id.
     *
     * Requirements:
     * - the contract is not paused;
     * - `name` is not empty (`EmptyName`).
     *
     * Emits a {DlpRegistered} event.
     */
    function registerDlp(string calldata name, address owner) external returns (uint256 dlpId);

    /**
     * @notice Hands a DLP to `newOwner`.
     *
     * Requirements:
     * - the contract is not paused;
     * - `dlpId` exists (`DlpNotFound`);
     * - the caller owns it (`NotDlpOwner`);
     * - `newOwner` is not the zero address (`InvalidOwner`).
     *
     * Emits a {DlpOwnershipTransferred} event.
     */
    function transferDlpOwnership(uint256 dlpId, address newOwner) external;

    /**
     * @notice A DLP's record; the zero tuple for an unknown id.
     *
     * Requirements: none.
     *
     * Emits nothing.
     */
    function dlps(uint256 dlpId)
        external
        view
        returns (uint256 id, address owner, string memory name, uint256 registeredAt);

    /**
     * @notice A DLP's owner.
     *
     * Requirements:
     * - `dlpId` exists (`DlpNotFound`).
     *
     * Emits nothing.
     */
    function dlpOwner(uint256 dlpId) external view returns (address);

    /**
     * @notice How many DLPs were registered (the highest id).
     *
     * Requirements: none.
     *
     * Emits nothing.
     */
    function dlpsCount() external view returns (uint256);
}
