// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ManagedUpgradeable} from "./utils/ManagedUpgradeable.sol";
import {IManaged} from "./interfaces/IManaged.sol";
import {IDLPRegistry} from "./interfaces/IDLPRegistry.sol";
import {IDataRefinerRegistry} from "./interfaces/IDataRefinerRegistry.sol";
import {IQueryPermissions} from "./interfaces/IQueryPermissions.sol";

/**
 * @title QueryPermissions
 * @notice Who may read which refiner/table/column, at what price. The owner of
 * a refiner's DLP (looked up now, so DLP transfers carry over) manages them.
 */
contract QueryPermissions is ManagedUpgradeable, IQueryPermissions {
    uint256 private constant VERSION = 1;

    struct StoredPermission {
        address grantee;
        bool approved;
        uint256 refinerId;
        string tableName;
        string columnName;
        uint256 price;
    }

    /// @custom:storage-location erc7201:computetodata.storage.QueryPermissions
    struct QueryPermissionsStorage {
        IDataRefinerRegistry dataRefinerRegistry;
        uint256 permissionsCount;
        mapping(uint256 permissionId => StoredPermission) permissions;
        mapping(uint256 refinerId => uint256[]) refinerPermissionIds;
        // grantee address(0) holds the generic (anyone) permissions.
        mapping(uint256 refinerId => mapping(address grantee => uint256[])) granteePermissionIds;
    }

    // keccak256(abi.encode(uint256(keccak256("computetodata.storage.QueryPermissions")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 private constant STORAGE_LOCATION = 0x969d90c7abf9b04ee633a6c334076a99332e4b2473a4b4a76a9f100768fd8a00;

    /**
     * @notice Sets up the proxy: `admin` gets `DEFAULT_ADMIN_ROLE` and
     * `MAINTAINER_ROLE`; refiners and their DLPs come from `dataRefinerRegistry_`.
     *
     * Requirements:
     * - not initialized yet;
     * - `admin` is not zero and `dataRefinerRegistry_` is a contract (`InvalidAccount`).
     *
     * Emits {RoleGranted} and {DataRefinerRegistryUpdated} events.
     */
    function initialize(address admin, address dataRefinerRegistry_) external initializer {
        __Managed_init(admin);
        _setDataRefinerRegistry(dataRefinerRegistry_);
    }

    /// @inheritdoc IQueryPermissions
    function addPermission(
        address grantee,
        uint256 refinerId,
        string calldata tableName,
        string calldata columnName,
        uint256 price
    ) external whenNotPaused returns (uint256 permissionId) {
        QueryPermissionsStorage storage $ = _storage();
        _requireRefinerDlpOwner($, refinerId);
        if (bytes(tableName).length == 0 && bytes(columnName).length != 0) revert ColumnWithoutTable();
        permissionId = ++$.permissionsCount;
        $.permissions[permissionId] = StoredPermission({
            grantee: grantee,
            approved: true,
            refinerId: refinerId,
            tableName: tableName,
            columnName: columnName,
            price: price
        });
        $.refinerPermissionIds[refinerId].push(permissionId);
        $.granteePermissionIds[refinerId][grantee].push(permissionId);
        emit PermissionAdded(permissionId, grantee, refinerId, tableName, columnName, price);
    }

    /// @inheritdoc IQueryPermissions
    function updatePermissionApproval(uint256 permissionId, bool approved) external whenNotPaused {
        QueryPermissionsStorage storage $ = _storage();
        if (permissionId == 0 || permissionId > $.permissionsCount) revert PermissionNotFound(permissionId);
        StoredPermission storage permission = $.permissions[permissionId];
        _requireRefinerDlpOwner($, permission.refinerId);
        if (permission.approved == approved) return;
        permission.approved = approved;
        emit PermissionApprovalUpdated(permissionId, approved);
    }

    /// @inheritdoc IQueryPermissions
    function updateDataRefinerRegistry(address newDataRefinerRegistry) external onlyRole(MAINTAINER_ROLE) {
        _setDataRefinerRegistry(newDataRefinerRegistry);
    }

    /// @inheritdoc IQueryPermissions
    function permissions(uint256 permissionId)
        external
        view
        returns (
            address grantee,
            bool approved,
            uint256 refinerId,
            string memory tableName,
            string memory columnName,
            uint256 price
        )
    {
        StoredPermission storage p = _storage().permissions[permissionId];
        return (p.grantee, p.approved, p.refinerId, p.tableName, p.columnName, p.price);
    }

    /// @inheritdoc IQueryPermissions
    function getPermissions(uint256 refinerId, address grantee) external view returns (Permission[] memory result) {
        QueryPermissionsStorage storage $ = _storage();
        uint256[] storage generic = $.granteePermissionIds[refinerId][address(0)];
        // For grantee 0 the "own" list is the generic list itself: do not count it twice.
        uint256[] storage own = $.granteePermissionIds[refinerId][grantee];
        uint256 ownLength = grantee == address(0) ? 0 : own.length;
        result = new Permission[](generic.length + ownLength);
        // Both lists ascend by id; merge them so the result does too.
        (uint256 g, uint256 o) = (0, 0);
        for (uint256 k = 0; k < result.length; ++k) {
            bool takeGeneric = o == ownLength || (g < generic.length && generic[g] < own[o]);
            uint256 id = takeGeneric ? generic[g++] : own[o++];
            result[k] = _toPermission($, id);
        }
    }

    /// @inheritdoc IQueryPermissions
    function permissionsCount() external view returns (uint256) {
        return _storage().permissionsCount;
    }

    /// @inheritdoc IQueryPermissions
    function refinerPermissionIds(uint256 refinerId) external view returns (uint256[] memory) {
        return _storage().refinerPermissionIds[refinerId];
    }

    /// @inheritdoc IQueryPermissions
    function dataRefinerRegistry() external view returns (address) {
        return address(_storage().dataRefinerRegistry);
    }

    /// @inheritdoc IManaged
    function version() external pure virtual returns (uint256) {
        return VERSION;
    }

    /// @dev Reverts unless the caller owns the refiner's DLP now. Unknown
    /// refiners bubble `RefinerNotFound`, unknown DLPs `DlpNotFound`.
    function _requireRefinerDlpOwner(QueryPermissionsStorage storage $, uint256 refinerId) private view {
        IDataRefinerRegistry refinerRegistry = $.dataRefinerRegistry;
        uint256 dlpId = refinerRegistry.refinerDlpId(refinerId);
        address owner = IDLPRegistry(refinerRegistry.dlpRegistry()).dlpOwner(dlpId);
        if (owner != msg.sender) revert NotDlpOwner();
    }

    function _toPermission(QueryPermissionsStorage storage $, uint256 id) private view returns (Permission memory) {
        StoredPermission storage p = $.permissions[id];
        return Permission({
            id: id,
            grantee: p.grantee,
            approved: p.approved,
            refinerId: p.refinerId,
            tableName: p.tableName,
            columnName: p.columnName,
            price: p.price
        });
    }

    function _setDataRefinerRegistry(address newDataRefinerRegistry) private {
        _requireContract(newDataRefinerRegistry);
        _storage().dataRefinerRegistry = IDataRefinerRegistry(newDataRefinerRegistry);
        emit DataRefinerRegistryUpdated(newDataRefinerRegistry);
    }

    function _storage() private pure returns (QueryPermissionsStorage storage $) {
        assembly {
            $.slot := STORAGE_LOCATION
        }
    }
}
