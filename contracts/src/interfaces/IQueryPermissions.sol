// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IManaged} from "./IManaged.sol";

/**
 * @title IQueryPermissions
 * @notice Who may read which refiner, table and column, and at what price.
 * Empty table or column means "every"; the zero grantee means "anyone".
 */
interface IQueryPermissions is IManaged {
    /// @notice A permission as returned by {getPermissions}.
    struct Permission {
        uint256 id;
        address grantee;
        bool approved;
        uint256 refinerId;
        string tableName;
        string columnName;
        uint256 price;
    }

    /// @dev The caller is not the owner of the refiner's DLP (name fixed by Vana compatibility).
    error NotDlpOwner();
    /// @dev `permissionId` was never added.
    error PermissionNotFound(uint256 permissionId);
    /// @dev A column was named without its table.
    error ColumnWithoutTable();

    /// @notice A permission was added (approved).
    event PermissionAdded(
        uint256 indexed permissionId,
        address indexed grantee,
        uint256 indexed refinerId,
        string tableName,
        string columnName,
        uint256 price
    );
    /// @notice A permission was approved or revoked.
    event PermissionApprovalUpdated(uint256 indexed permissionId, bool approved);
    /// @notice The linked data refiner registry changed.
    event DataRefinerRegistryUpdated(address indexed dataRefinerRegistry);

    /**
     * @notice Grants `grantee` read access to `refinerId` (optionally one table,
     * optionally one column of it) at `price`. The new permission is approved.
     * @param grantee Who may read; `address(0)` means anyone.
     * @param tableName One table, or "" for every table.
     * @param columnName One column of `tableName`, or "" for every column.
     * @return permissionId The new permission's id (ids start at 1).
     *
     * Requirements:
     * - the contract is not paused;
     * - `refinerId` exists (bubbles `RefinerNotFound`);
     * - the caller owns the refiner's DLP (`NotDlpOwner`);
     * - a column is only named with its table (`ColumnWithoutTable`).
     *
     * Emits a {PermissionAdded} event.
     */
    function addPermission(
        address grantee,
        uint256 refinerId,
        string calldata tableName,
        string calldata columnName,
        uint256 price
    ) external returns (uint256 permissionId);

    /**
     * @notice Approves or revokes a permission. A call that does not change the
     * stored value writes nothing and emits nothing.
     *
     * Requirements:
     * - the contract is not paused;
     * - `permissionId` exists (`PermissionNotFound`);
     * - the caller owns the refiner's DLP now (`NotDlpOwner`).
     *
     * Emits a {PermissionApprovalUpdated} event when the approval changes.
     */
    function updatePermissionApproval(uint256 permissionId, bool approved) external;

    /**
     * @notice Points this contract at another data refiner registry.
     *
     * Requirements:
     * - the caller has `MAINTAINER_ROLE`;
     * - `newDataRefinerRegistry` is a contract (`InvalidAccount`).
     *
     * Emits a {DataRefinerRegistryUpdated} event.
     */
    function updateDataRefinerRegistry(address newDataRefinerRegistry) external;

    /**
     * @notice A permission's record; the zero tuple for an unknown id.
     *
     * Requirements: none.
     *
     * Emits nothing.
     */
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
        );

    /**
     * @notice The permissions that may apply to `grantee` on `refinerId`: the
     * generic (anyone) ones plus the grantee's own, approved or not, ascending by id.
     * With `grantee == address(0)` only the generic ones.
     *
     * Requirements: none.
     *
     * Emits nothing.
     */
    function getPermissions(uint256 refinerId, address grantee) external view returns (Permission[] memory);

    /**
     * @notice How many permissions were added (the highest id).
     *
     * Requirements: none.
     *
     * Emits nothing.
     */
    function permissionsCount() external view returns (uint256);

    /**
     * @notice Every permission id of a refiner, in creation order.
     *
     * Requirements: none.
     *
     * Emits nothing.
     */
    function refinerPermissionIds(uint256 refinerId) external view returns (uint256[] memory);

    /**
     * @notice The data refiner registry that maps refiners to DLPs.
     *
     * Requirements: none.
     *
     * Emits nothing.
     */
    function dataRefinerRegistry() external view returns (address);
}
