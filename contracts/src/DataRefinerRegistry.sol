// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EnumerableSet} from "@openzeppelin/contracts/utils/structs/EnumerableSet.sol";

import {ManagedUpgradeable} from "./utils/ManagedUpgradeable.sol";
import {IManaged} from "./interfaces/IManaged.sol";
import {IDLPRegistry} from "./interfaces/IDLPRegistry.sol";
import {IDataRefinerRegistry} from "./interfaces/IDataRefinerRegistry.sol";

/**
 * @title DataRefinerRegistry
 * @notice Refiner id -> DLP, owner, name, schema and refinement URL; schema id
 * -> name, dialect and definition URL; DLP -> refinement services. Only a DLP's
 * owner (read from the linked DLP registry) may add refiners to it.
 */
contract DataRefinerRegistry is ManagedUpgradeable, IDataRefinerRegistry {
    using EnumerableSet for EnumerableSet.AddressSet;

    uint256 private constant VERSION = 1;

    struct Refiner {
        uint256 dlpId;
        address owner;
        string name;
        // Only for refiners without a schema id: Vana keeps the URL for those.
        string schemaDefinitionUrl;
        string refinementInstructionUrl;
        uint256 schemaId;
    }

    /// @custom:storage-location erc7201:computetodata.storage.DataRefinerRegistry
    struct DataRefinerRegistryStorage {
        IDLPRegistry dlpRegistry;
        uint256 refinersCount;
        mapping(uint256 refinerId => Refiner) refiners;
        mapping(uint256 dlpId => uint256[]) dlpRefiners;
        uint256 schemasCount;
        mapping(uint256 schemaId => Schema) schemas;
        mapping(uint256 dlpId => EnumerableSet.AddressSet) refinementServices;
    }

    // keccak256(abi.encode(uint256(keccak256("computetodata.storage.DataRefinerRegistry")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 private constant STORAGE_LOCATION = 0x659d4176fa27aacadb6da5f4d1c6366726ccb8f1ace8c0063b4e9fc9bef87100;

    /// @dev Vana's order: the owner check comes first, and an unknown DLP (no owner) fails it.
    modifier onlyDlpOwner(uint256 dlpId) {
        if (_storage().dlpRegistry.dlps(dlpId).ownerAddress != msg.sender) revert NotDlpOwner();
        _;
    }

    /**
     * @notice Sets up the proxy: `admin` gets `DEFAULT_ADMIN_ROLE` and
     * `MAINTAINER_ROLE`; DLP ids and owners come from `dlpRegistry_`.
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

    /// @inheritdoc IDataRefinerRegistry
    function addRefiner(
        uint256 dlpId,
        string calldata name,
        string calldata schemaDefinitionUrl,
        string calldata refinementInstructionUrl
    ) external onlyDlpOwner(dlpId) whenNotPaused returns (uint256 refinerId) {
        if (bytes(name).length == 0) revert EmptyName();
        if (bytes(schemaDefinitionUrl).length == 0) revert EmptySchemaUrl();
        refinerId = _add(dlpId, name, 0, refinementInstructionUrl);
        _storage().refiners[refinerId].schemaDefinitionUrl = schemaDefinitionUrl;
        emit RefinerAdded(refinerId, dlpId, name, 0, schemaDefinitionUrl, refinementInstructionUrl);
    }

    /// @inheritdoc IDataRefinerRegistry
    function addRefinerWithSchemaId(
        uint256 dlpId,
        string calldata name,
        uint256 schemaId,
        string calldata refinementInstructionUrl
    ) external onlyDlpOwner(dlpId) whenNotPaused returns (uint256 refinerId) {
        DataRefinerRegistryStorage storage $ = _storage();
        if (!_isValidSchema($, schemaId)) revert InvalidSchemaId(schemaId);
        if (bytes(name).length == 0) revert EmptyName();
        refinerId = _add(dlpId, name, schemaId, refinementInstructionUrl);
        emit RefinerAdded(
            refinerId, dlpId, name, schemaId, $.schemas[schemaId].definitionUrl, refinementInstructionUrl
        );
    }

    /// @inheritdoc IDataRefinerRegistry
    function updateSchemaId(uint256 refinerId, uint256 newSchemaId)
        external
        onlyDlpOwner(_storage().refiners[refinerId].dlpId)
        whenNotPaused
    {
        DataRefinerRegistryStorage storage $ = _storage();
        if (!_isValidSchema($, newSchemaId)) revert InvalidSchemaId(newSchemaId);
        $.refiners[refinerId].schemaId = newSchemaId;
        emit RefinerSchemaUpdated(refinerId, newSchemaId);
    }

    /// @inheritdoc IDataRefinerRegistry
    function updateRefinerOwner(uint256 refinerId)
        external
        whenNotPaused
        onlyDlpOwner(_storage().refiners[refinerId].dlpId)
    {
        _setOwner(refinerId);
    }

    /// @inheritdoc IDataRefinerRegistry
    function updateDlpRefinersOwner(uint256 dlpId) external onlyDlpOwner(dlpId) whenNotPaused {
        uint256[] storage refinerIds = _storage().dlpRefiners[dlpId];
        for (uint256 i = 0; i < refinerIds.length; ++i) {
            _setOwner(refinerIds[i]);
        }
    }

    /// @inheritdoc IDataRefinerRegistry
    function addRefinementService(uint256 dlpId, address refinementService)
        external
        onlyDlpOwner(dlpId)
        whenNotPaused
    {
        _storage().refinementServices[dlpId].add(refinementService);
    }

    /// @inheritdoc IDataRefinerRegistry
    function removeRefinementService(uint256 dlpId, address refinementService)
        external
        onlyDlpOwner(dlpId)
        whenNotPaused
    {
        _storage().refinementServices[dlpId].remove(refinementService);
    }

    /// @inheritdoc IDataRefinerRegistry
    function addSchema(string calldata name, string calldata dialect, string calldata definitionUrl)
        external
        whenNotPaused
        returns (uint256 schemaId)
    {
        if (bytes(name).length == 0) revert EmptyName();
        if (bytes(definitionUrl).length == 0) revert EmptySchemaUrl();
        DataRefinerRegistryStorage storage $ = _storage();
        schemaId = ++$.schemasCount;
        $.schemas[schemaId] = Schema({name: name, dialect: dialect, definitionUrl: definitionUrl});
        emit SchemaAdded(schemaId, name, dialect, definitionUrl);
    }

    /// @inheritdoc IDataRefinerRegistry
    function updateDlpRegistry(address newDlpRegistry) external onlyRole(MAINTAINER_ROLE) {
        _setDlpRegistry(newDlpRegistry);
    }

    /// @inheritdoc IDataRefinerRegistry
    function refiners(uint256 refinerId) external view returns (RefinerInfo memory) {
        DataRefinerRegistryStorage storage $ = _storage();
        Refiner storage r = $.refiners[refinerId];
        uint256 schemaId = r.schemaId;
        return RefinerInfo({
            dlpId: r.dlpId,
            owner: r.owner,
            name: r.name,
            schemaDefinitionUrl: schemaId == 0 ? r.schemaDefinitionUrl : $.schemas[schemaId].definitionUrl,
            refinementInstructionUrl: r.refinementInstructionUrl,
            schemaId: schemaId
        });
    }

    /// @inheritdoc IDataRefinerRegistry
    function schemas(uint256 schemaId) external view returns (Schema memory) {
        DataRefinerRegistryStorage storage $ = _storage();
        if (!_isValidSchema($, schemaId)) revert InvalidSchemaId(schemaId);
        return $.schemas[schemaId];
    }

    /// @inheritdoc IDataRefinerRegistry
    function isValidSchemaId(uint256 schemaId) external view returns (bool) {
        return _isValidSchema(_storage(), schemaId);
    }

    /// @inheritdoc IDataRefinerRegistry
    function schemasCount() external view returns (uint256) {
        return _storage().schemasCount;
    }

    /// @inheritdoc IDataRefinerRegistry
    function refinerDlpId(uint256 refinerId) external view returns (uint256) {
        uint256 dlpId = _storage().refiners[refinerId].dlpId;
        // Every stored refiner has a DLP id >= 1, so 0 means unknown.
        if (dlpId == 0) revert RefinerNotFound(refinerId);
        return dlpId;
    }

    /// @inheritdoc IDataRefinerRegistry
    function dlpRefiners(uint256 dlpId) external view returns (uint256[] memory) {
        return _storage().dlpRefiners[dlpId];
    }

    /// @inheritdoc IDataRefinerRegistry
    function dlpRefinementServices(uint256 dlpId) external view returns (address[] memory) {
        return _storage().refinementServices[dlpId].values();
    }

    /// @inheritdoc IDataRefinerRegistry
    function isRefinementService(uint256 refinerId, address refinementService) external view returns (bool) {
        DataRefinerRegistryStorage storage $ = _storage();
        return $.refinementServices[$.refiners[refinerId].dlpId].contains(refinementService);
    }

    /// @inheritdoc IDataRefinerRegistry
    function refinersCount() external view returns (uint256) {
        return _storage().refinersCount;
    }

    /// @inheritdoc IDataRefinerRegistry
    function dlpRegistry() external view returns (address) {
        return address(_storage().dlpRegistry);
    }

    /// @inheritdoc IManaged
    function version() external pure virtual returns (uint256) {
        return VERSION;
    }

    function _add(uint256 dlpId, string calldata name, uint256 schemaId, string calldata refinementInstructionUrl)
        private
        returns (uint256 refinerId)
    {
        DataRefinerRegistryStorage storage $ = _storage();
        refinerId = ++$.refinersCount;
        Refiner storage r = $.refiners[refinerId];
        r.dlpId = dlpId;
        r.owner = msg.sender;
        r.name = name;
        r.refinementInstructionUrl = refinementInstructionUrl;
        r.schemaId = schemaId;
        $.dlpRefiners[dlpId].push(refinerId);
    }

    function _setOwner(uint256 refinerId) private {
        _storage().refiners[refinerId].owner = msg.sender;
        emit RefinerOwnerUpdated(refinerId, msg.sender);
    }

    function _isValidSchema(DataRefinerRegistryStorage storage $, uint256 schemaId) private view returns (bool) {
        return schemaId != 0 && schemaId <= $.schemasCount;
    }

    function _setDlpRegistry(address newDlpRegistry) private {
        _requireContract(newDlpRegistry);
        _storage().dlpRegistry = IDLPRegistry(newDlpRegistry);
        emit DlpRegistryUpdated(newDlpRegistry);
    }

    function _storage() private pure returns (DataRefinerRegistryStorage storage $) {
        assembly {
            $.slot := STORAGE_LOCATION
        }
    }
}
