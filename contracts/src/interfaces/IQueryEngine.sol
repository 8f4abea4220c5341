// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IManaged} from "./IManaged.sol";

/**
 * @title IQueryEngine
 * @notice Who may read which refiner, table and column, at what price in which
 * token, and the payment of those prices, with Vana's `QueryEngine` ABI. An empty
 * table or column means "every"; the zero grantee means "anyone" (generic).
 *
 * Money path: a holder of `QUERY_ENGINE_ROLE` (the compute engine's wallet)
 * requests a job's price; the ComputeEngine takes it from the job owner's
 * deposit; {dlpPaymentPercentage} of it waits in {queryEngineTreasury} for the
 * DLP, the rest goes to {vanaTreasury}; the DLP's owner claims its share to the
 * DLP's treasury address.
 *
 * Additions of this project (nothing a Vana client decodes changes):
 * {refinerPermissionIds}; payment token events; payments stop while paused and
 * need a {vanaTreasury} (no share is ever sent to the zero address).
 */
interface IQueryEngine is IManaged {
    /// @notice A permission as {permissions} returns it (Vana's `Permission`, one tuple).
    struct Permission {
        address grantee;
        bool approved;
        uint256 refinerId;
        string tableName;
        string columnName;
        uint256 price;
        address tokenAddress;
    }

    /// @notice A permission as {getPermissions} lists it (Vana's `PermissionInfo`).
    struct PermissionInfo {
        uint256 permissionId;
        address grantee;
        bool approved;
        uint256 refinerId;
        string tableName;
        string columnName;
        uint256 price;
        address tokenAddress;
    }

    /// @dev The caller is not the refiner's recorded owner (an unknown refiner has none).
    error NotRefinerOwner();
    /// @dev The permission id was never added.
    error PermissionNotFound();
    /// @dev The ComputeEngine sent less than the requested amount.
    error PaymentNotReceived();
    /// @dev A percentage above {ONE_HUNDRED_PERCENT}.
    error InvalidDlpPaymentPercentage();
    /// @dev The DLP has no treasury address to claim to.
    error InvalidDlpTreasuryAddress();
    /// @dev The caller is not the DLP's owner.
    error NotDlpOwner();
    /// @dev The DLP is not registered.
    error DlpNotFound();
    /// @dev A column was named without its table.
    error ColumnNameUnexpected();
    /// @dev The payment names a refiner that does not exist.
    error RefinerNotFound();
    /// @dev A zero address where one is needed.
    error ZeroAddress();
    /// @dev `token` is not accepted for payment (or not listed, on removal).
    error InvalidPaymentToken(address token);
    /// @dev `token` is the native token or listed already.
    error TokenAlreadyWhitelisted(address token);

    /// @notice A permission was added, approved (Vana signature).
    event PermissionAdded(
        uint256 indexed permissionId,
        address indexed grantee,
        uint256 indexed refinerId,
        string tableName,
        string columnName,
        address tokenAddress,
        uint256 price
    );
    /// @notice A permission was approved or revoked (Vana signature).
    event PermissionApprovalUpdated(uint256 indexed permissionId, bool approved);
    /// @notice A job's price arrived from the ComputeEngine (Vana signature).
    event PaymentReceived(address indexed token, uint256 amount, uint256 jobId, uint256 refinerId);
    /// @notice A DLP's share went to its treasury address (Vana signature).
    event DlpPaymentClaimed(
        uint256 indexed dlpId, address indexed dlpTreasuryAddress, address indexed token, uint256 amount
    );
    /// @notice `token` may now be used to pay.
    event PaymentTokenAdded(address indexed token);
    /// @notice `token` may no longer be used to pay.
    event PaymentTokenRemoved(address indexed token);
    /// @notice The linked data refiner registry changed.
    event RefinerRegistryUpdated(address indexed refinerRegistry);

    /**
     * @notice Grants `grantee` read access to `refinerId` (optionally one table,
     * optionally one column of it) at `price` of `tokenAddress` (address(0) = native).
     * @return permissionId The new permission's id (ids start at 1).
     *
     * Requirements, in Vana's order:
     * - the caller is the refiner's owner (`NotRefinerOwner`, also for an unknown refiner);
     * - the contract is not paused;
     * - a column is only named with its table (`ColumnNameUnexpected`).
     *
     * Emits a {PermissionAdded} event.
     */
    function addPermission(
        address grantee,
        uint256 refinerId,
        string calldata tableName,
        string calldata columnName,
        address tokenAddress,
        uint256 price
    ) external returns (uint256 permissionId);

    /// @notice {addPermission} for anyone (grantee address(0)).
    function addGenericPermission(
        uint256 refinerId,
        string calldata tableName,
        string calldata columnName,
        address tokenAddress,
        uint256 price
    ) external returns (uint256 permissionId);

    /**
     * @notice Approves or revokes a permission (works while paused, as Vana's: a
     * revoke must always be possible). A no-op writes and emits nothing.
     *
     * Requirements:
     * - `permissionId` exists (`PermissionNotFound`);
     * - the caller is the refiner's owner (`NotRefinerOwner`).
     *
     * Emits a {PermissionApprovalUpdated} event when the approval changes.
     */
    function updatePermissionApproval(uint256 permissionId, bool approved) external;

    /**
     * @notice Takes `amount` for `jobId` on `refinerId` from the ComputeEngine and splits it.
     * `requestPaymentInVana` is the native token; `requestPayment` takes
     * `metadata = abi.encode(jobId, refinerId)`.
     *
     * Requirements:
     * - the caller has `QUERY_ENGINE_ROLE`; the contract is not paused;
     * - the token is native or listed (`InvalidPaymentToken`);
     * - the refiner exists (`RefinerNotFound`);
     * - the ComputeEngine pays (its errors bubble, e.g. `InsufficientBalance`)
     *   at least `amount` (`PaymentNotReceived`);
     * - a {vanaTreasury} is set when its share is not zero (`ZeroAddress`).
     *
     * Emits a {PaymentReceived} event.
     */
    function requestPaymentInVana(uint256 amount, uint256 jobId, uint256 refinerId) external;

    /// @notice See {requestPaymentInVana}.
    function requestPaymentInToken(address token, uint256 amount, uint256 jobId, uint256 refinerId) external;

    /// @notice See {requestPaymentInVana}.
    function requestPayment(address token, uint256 amount, bytes calldata metadata) external;

    /**
     * @notice Sends the DLP's accrued share of `token` to the DLP's treasury address.
     *
     * Requirements:
     * - the contract is not paused;
     * - the caller owns the DLP (`NotDlpOwner`);
     * - the DLP has a treasury address (`InvalidDlpTreasuryAddress`);
     * - something accrued (the treasury's `ZeroAmount`).
     *
     * Emits a {DlpPaymentClaimed} event.
     */
    function claimDlpPayment(uint256 dlpId, address token) external;

    /// @notice Accept `token` for payment (maintainer; `TokenAlreadyWhitelisted`).
    function addPaymentToken(address token) external;

    /// @notice Stop accepting `token` (maintainer; `InvalidPaymentToken` when not listed).
    function removePaymentToken(address token) external;

    /// @notice Stores the DLP's public key for encrypted results (maintainer; `DlpNotFound`).
    function updateDlpPubKey(uint256 dlpId, string calldata pubKey) external;

    /// @notice The DLPs' share, of {ONE_HUNDRED_PERCENT} (maintainer; `InvalidDlpPaymentPercentage`).
    function updateDlpPaymentPercentage(uint256 newDlpPaymentPercentage) external;

    /// @notice Where the non-DLP share goes (maintainer; `ZeroAddress`).
    function updateVanaTreasury(address newVanaTreasury) external;

    /// @notice Where DLP shares wait (maintainer; `ZeroAddress`).
    function updateQueryEngineTreasury(address newQueryEngineTreasury) external;

    /// @notice The ComputeEngine that pays (maintainer).
    function updateComputeEngine(address newComputeEngine) external;

    /// @notice The refiner registry (maintainer; must be a contract, `InvalidAccount`).
    function updateRefinerRegistry(address newRefinerRegistry) external;

    /// @notice A permission's record; the zero tuple for an unknown id.
    function permissions(uint256 permissionId) external view returns (Permission memory);

    /// @notice The APPROVED permissions that apply to `grantee` on `refinerId`: the
    /// generic ones first, then the grantee's own (only generic ones for address(0)).
    function getPermissions(uint256 refinerId, address grantee) external view returns (PermissionInfo[] memory);

    /// @notice How many permissions were added (the highest id).
    function permissionsCount() external view returns (uint256);

    /// @notice Every permission id of a refiner, approved or not, in creation order.
    function refinerPermissionIds(uint256 refinerId) external view returns (uint256[] memory);

    /// @notice The DLP's accrued, unclaimed share of `token`.
    function balanceOf(uint256 dlpId, address token) external view returns (uint256);

    function dlpPubKeys(uint256 dlpId) external view returns (string memory);
    function dlpPaymentPercentage() external view returns (uint256);
    function vanaTreasury() external view returns (address);
    function queryEngineTreasury() external view returns (address);
    function computeEngine() external view returns (address);
    function refinerRegistry() external view returns (address);
    function QUERY_ENGINE_ROLE() external view returns (bytes32);
    function VANA() external view returns (address);
    function ONE_HUNDRED_PERCENT() external view returns (uint256);
}
