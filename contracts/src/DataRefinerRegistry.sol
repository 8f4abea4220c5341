// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ManagedUpgradeable} from "./utils/ManagedUpgradeable.sol";
import {IManaged} from "./interfaces/IManaged.sol";
import {IDLPRegistry} from "./interfaces/IDLPRegistry.sol";
import {IDataRefinerRegistry} from "./interfaces/IDataRefinerRegistry.sol";

/**
 * @title DataRefinerRegistry
 * @notice Refiner id -> DLP, owner, name and schema URL. Only a DLP's owner
 * (read from the linked DLP registry) may add refiners to it.
 */
contract DataRefinerRegistry is ManagedUpgradeable, IDataRefinerRegistry {
    uint256 private constant VERSION = 1;

    struct Refiner {
        uint256 dlpId;
        address owner;
        string name;
        string schemaDefinitionUrl;
        string refinementInstructionUrl;
    }

    /// @custom:storage-location erc7201:computetodata.storage.DataRefinerRegistry
    struct DataRefinerRegistryStorage {
        IDLPRegistry dlpRegistry;
        uint256 refinersCount;
        mapping(uint256 refinerId => Refiner) refiners;
        mapping(uint256 dlpId => uint256[]) dlpRefinerIds;
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
        DataRefinerRegistryStorage storage $ = _storage();
        if (bytes(name).length == 0) revert EmptyName();
        if (bytes(schemaDefinitionUrl).length == 0) revert EmptySchemaUrl();
        refinerId = ++$.refinersCount;
        $.refiners[refinerId] = Refiner({
            dlpId: dlpId,
            owner: msg.sender,
            name: name,
            schemaDefinitionUrl: schemaDefinitionUrl,
            refinementInstructionUrl: refinementInstructionUrl
        });
        $.dlpRefinerIds[dlpId].push(refinerId);
        emit RefinerAdded(refinerId, dlpId, name, schemaDefinitionUrl, refinementInstructionUrl);
    }

    /// @inheritdoc IDataRefinerRegistry
    function updateDlpRegistry(address newDlpRegistry) external onlyRole(MAINTAINER_ROLE) {
        _setDlpRegistry(newDlpRegistry);
    }

    /// @inheritdoc IDataRefinerRegistry
    function refiners(uint256 refinerId)
        external
        view
        returns (
            uint256 dlpId,
            address owner,
            string memory name,
            string memory schemaDefinitionUrl,
            string memory refinementInstructionUrl
        )
    {
        Refiner storage r = _storage().refiners[refinerId];
        return (r.dlpId, r.owner, r.name, r.schemaDefinitionUrl, r.refinementInstructionUrl);
    }

    /// @inheritdoc IDataRefinerRegistry
    function refinerDlpId(uint256 refinerId) external view returns (uint256) {
        uint256 dlpId = _storage().refiners[refinerId].dlpId;
        // Every stored refiner has a DLP id >= 1, so 0 means unknown.
        if (dlpId == 0) revert RefinerNotFound(refinerId);
        return dlpId;
    }

    /// @inheritdoc IDataRefinerRegistry
    function dlpRefinerIds(uint256 dlpId) external view returns (uint256[] memory) {
        return _storage().dlpRefinerIds[dlpId];
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
