// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IManaged} from "./IManaged.sol";

/**
 * @title IDataAccessTreasury
 * @notice Holds funds for one custodian contract (the QueryEngine keeps the DLPs'
 * shares here until their owners claim them), with Vana's `DataAccessTreasury` ABI.
 *
 * Difference from Vana's: only the custodian holds `CUSTODIAN_ROLE`; the admin
 * does not, so no admin can move the DLPs' money (it can name a new custodian).
 */
interface IDataAccessTreasury is IManaged {
    /// @dev A transfer of nothing.
    error ZeroAmount();
    /// @dev A transfer to, or a custodian at, the zero address.
    error ZeroAddress();

    /// @notice `amount` of `token` (address(0) = native) left the treasury for `to`.
    event Transfer(address indexed to, address indexed token, uint256 amount);
    /// @notice The custodian changed.
    event CustodianUpdated(address indexed custodian);

    /**
     * @notice Sends `amount` of `token` (address(0) = the native token) to `to`.
     *
     * Requirements:
     * - the contract is not paused;
     * - the caller has `CUSTODIAN_ROLE` (`AccessControlUnauthorizedAccount`);
     * - `amount` is not zero (`ZeroAmount`) and `to` is not zero (`ZeroAddress`).
     *
     * Emits a {Transfer} event.
     */
    function transfer(address to, address token, uint256 amount) external;

    /**
     * @notice Moves `CUSTODIAN_ROLE` to `newCustodian`.
     *
     * Requirements:
     * - the caller has `DEFAULT_ADMIN_ROLE`;
     * - `newCustodian` is not zero (`ZeroAddress`).
     *
     * Emits {CustodianUpdated}, {RoleRevoked} and {RoleGranted} events.
     */
    function updateCustodian(address newCustodian) external;

    /// @notice The one account that may move funds.
    function custodian() external view returns (address);

    /// @notice The role the custodian holds.
    function CUSTODIAN_ROLE() external view returns (bytes32);
}
