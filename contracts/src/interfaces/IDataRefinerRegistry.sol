// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IManaged} from "./IManaged.sol";

/**
 * @title IDataRefinerRegistry
 * @notice Refiners: a DLP's published data set, with its schema URL. Jobs name a
 * refiner; the refiner names the DLP whose owner decides who may compute on it.
 */
interface IDataRefinerRegistry is IManaged {
    /// @dev The caller is not the DLP's owner (name fixed by Vana compatibility).
    error NotDlpOwner();
    /// @dev `refinerId` was never added.
    error RefinerNotFound(uint256 refinerId);
    /// @dev A name must not be empty.
    error EmptyName();
    /// @dev A schema definition URL must not be empty.
    error EmptySchemaUrl();

    /// @notice A refiner was added to a DLP.
    event RefinerAdded(
        uint256 indexed refinerId,
        uint256 indexed dlpId,
        string name,
        string schemaDefinitionUrl,
        string refinementInstructionUrl
    );
    /// @notice The linked DLP registry changed.
    event DlpRegistryUpdated(address indexed dlpRegistry);

    /**
     * @notice Adds a refiner to `dlpId`. Ids start at 1; the caller is recorded as owner.
     * @return refinerId The new refiner's id.
     *
     * Requirements, checked in Vana's order:
     * - the caller owns the DLP, read from the DLP registry's `dlps` (`NotDlpOwner`,
     *   also for an unknown DLP);
     * - the contract is not paused;
     * - `name` and `schemaDefinitionUrl` are not empty (`EmptyName`, `EmptySchemaUrl`).
     *
     * Emits a {RefinerAdded} event.
     */
    function addRefiner(
        uint256 dlpId,
        string calldata name,
        string calldata schemaDefinitionUrl,
        string calldata refinementInstructionUrl
    ) external returns (uint256 refinerId);

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
     * @notice A refiner's record; the zero tuple for an unknown id.
     *
     * Requirements: none.
     *
     * Emits nothing.
     */
    function refiners(uint256 refinerId)
        external
        view
        returns (
            uint256 dlpId,
            address owner,
            string memory name,
            string memory schemaDefinitionUrl,
            string memory refinementInstructionUrl
        );

    /**
     * @notice The DLP a refiner belongs to.
     *
     * Requirements:
     * - `refinerId` exists (`RefinerNotFound`).
     *
     * Emits nothing.
     */
    function refinerDlpId(uint256 refinerId) external view returns (uint256);

    /**
     * @notice Every refiner id of a DLP, in creation order.
     *
     * Requirements: none.
     *
     * Emits nothing.
     */
    function dlpRefinerIds(uint256 dlpId) external view returns (uint256[] memory);

    /**
     * @notice How many refiners were added (the highest id).
     *
     * Requirements: none.
     *
     * Emits nothing.
     */
    function refinersCount() external view returns (uint256);

    /**
     * @notice The DLP registry that owns DLP ids and owners.
     *
     * Requirements: none.
     *
     * Emits nothing.
     */
    function dlpRegistry() external view returns (address);
}
