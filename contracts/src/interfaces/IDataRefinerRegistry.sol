// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IManaged} from "./IManaged.sol";

/**
 * @title IDataRefinerRegistry
 * @notice Refiners (a DLP's published data set), the schemas they follow and the
 * DLP's refinement services, with Vana's `DataRefinerRegistry` ABI. Jobs name a
 * refiner; the refiner names the DLP whose owner decides who may compute on it.
 *
 * Additions of this project (nothing a Vana client decodes changes): names and
 * schema URLs must not be empty; {refinerDlpId} reverts for an unknown refiner;
 * {RefinerSchemaUpdated} and {RefinerOwnerUpdated} events; {DlpRegistryUpdated}.
 */
interface IDataRefinerRegistry is IManaged {
    /// @notice A schema as {schemas} returns it (Vana's `Schema`).
    struct Schema {
        string name;
        string dialect;
        string definitionUrl;
    }

    /// @notice A refiner as {refiners} returns it (Vana's `RefinerInfo`, one tuple).
    struct RefinerInfo {
        uint256 dlpId;
        address owner;
        string name;
        string schemaDefinitionUrl;
        string refinementInstructionUrl;
        uint256 schemaId;
    }

    /// @dev The caller is not the DLP's owner (an unknown DLP has no owner; Vana's name).
    error NotDlpOwner();
    /// @dev `schemaId` was never added (Vana's name).
    error InvalidSchemaId(uint256 schemaId);
    /// @dev `refinerId` was never added.
    error RefinerNotFound(uint256 refinerId);
    /// @dev A name must not be empty.
    error EmptyName();
    /// @dev A schema definition URL must not be empty.
    error EmptySchemaUrl();

    /// @notice A refiner was added to a DLP (Vana signature; `schemaId` 0 for {addRefiner}).
    event RefinerAdded(
        uint256 indexed refinerId,
        uint256 indexed dlpId,
        string name,
        uint256 indexed schemaId,
        string schemaDefinitionUrl,
        string refinementInstructionUrl
    );
    /// @notice A schema was added (Vana signature).
    event SchemaAdded(uint256 indexed schemaId, string name, string dialect, string definitionUrl);
    /// @notice A refiner now follows another schema.
    event RefinerSchemaUpdated(uint256 indexed refinerId, uint256 indexed schemaId);
    /// @notice A refiner's owner was reset to its DLP's current owner.
    event RefinerOwnerUpdated(uint256 indexed refinerId, address indexed owner);
    /// @notice The linked DLP registry changed.
    event DlpRegistryUpdated(address indexed dlpRegistry);

    /**
     * @notice Adds a refiner with its own schema URL (schema id 0). Ids start at 1;
     * the caller is recorded as owner.
     * @return The new refiner's id.
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
    ) external returns (uint256);

    /**
     * @notice Adds a refiner following schema `schemaId` (its URL comes from the schema).
     * @return The new refiner's id.
     *
     * Requirements: as {addRefiner}, and `schemaId` exists (`InvalidSchemaId`).
     *
     * Emits a {RefinerAdded} event.
     */
    function addRefinerWithSchemaId(
        uint256 dlpId,
        string calldata name,
        uint256 schemaId,
        string calldata refinementInstructionUrl
    ) external returns (uint256);

    /**
     * @notice Points a refiner at another schema.
     *
     * Requirements:
     * - the caller owns the refiner's DLP (`NotDlpOwner`, also for an unknown refiner);
     * - the contract is not paused;
     * - `newSchemaId` exists (`InvalidSchemaId`).
     *
     * Emits a {RefinerSchemaUpdated} event.
     */
    function updateSchemaId(uint256 refinerId, uint256 newSchemaId) external;

    /**
     * @notice Makes the caller, the DLP's current owner, the refiner's owner (after
     * a DLP changed hands).
     *
     * Requirements:
     * - the contract is not paused;
     * - the caller owns the refiner's DLP (`NotDlpOwner`).
     *
     * Emits a {RefinerOwnerUpdated} event.
     */
    function updateRefinerOwner(uint256 refinerId) external;

    /// @notice {updateRefinerOwner} for every refiner of `dlpId`.
    function updateDlpRefinersOwner(uint256 dlpId) external;

    /**
     * @notice Adds or removes an address the DLP trusts to run its refinements.
     *
     * Requirements:
     * - the caller owns the DLP (`NotDlpOwner`);
     * - the contract is not paused.
     */
    function addRefinementService(uint256 dlpId, address refinementService) external;

    /// @notice See {addRefinementService}.
    function removeRefinementService(uint256 dlpId, address refinementService) external;

    /**
     * @notice Adds a schema anyone may use. Ids start at 1.
     * @return The new schema's id.
     *
     * Requirements:
     * - the contract is not paused;
     * - `name` and `definitionUrl` are not empty (`EmptyName`, `EmptySchemaUrl`).
     *
     * Emits a {SchemaAdded} event.
     */
    function addSchema(string calldata name, string calldata dialect, string calldata definitionUrl)
        external
        returns (uint256);

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

    /// @notice A refiner's record (schema URL from its schema when it has one); zero tuple when unknown.
    function refiners(uint256 refinerId) external view returns (RefinerInfo memory);

    /// @notice A schema; reverts `InvalidSchemaId` when unknown (as Vana's).
    function schemas(uint256 schemaId) external view returns (Schema memory);

    /// @notice Whether `schemaId` exists.
    function isValidSchemaId(uint256 schemaId) external view returns (bool);

    /// @notice How many schemas were added (the highest id).
    function schemasCount() external view returns (uint256);

    /**
     * @notice The DLP a refiner belongs to.
     *
     * Requirements:
     * - `refinerId` exists (`RefinerNotFound`).
     */
    function refinerDlpId(uint256 refinerId) external view returns (uint256);

    /// @notice Every refiner id of a DLP, in creation order.
    function dlpRefiners(uint256 dlpId) external view returns (uint256[] memory);

    /// @notice The DLP's refinement services, in no particular order.
    function dlpRefinementServices(uint256 dlpId) external view returns (address[] memory);

    /// @notice Whether `refinementService` serves the refiner's DLP.
    function isRefinementService(uint256 refinerId, address refinementService) external view returns (bool);

    /// @notice How many refiners were added (the highest id).
    function refinersCount() external view returns (uint256);

    /// @notice The DLP registry that owns DLP ids and owners.
    function dlpRegistry() external view returns (address);
}
