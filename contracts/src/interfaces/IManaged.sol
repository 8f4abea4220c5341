// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/**
 * @title IManaged
 * @notice What every registry shares: a version number, a maintainer role and
 * an emergency pause. `DEFAULT_ADMIN_ROLE` (from AccessControl) may upgrade.
 */
interface IManaged {
    /// @dev An address that must be a deployed contract (or a non-zero admin) was not.
    error InvalidAccount(address account);

    /// @notice The role that may pause, unpause and change linked registries.
    function MAINTAINER_ROLE() external view returns (bytes32);

    /// @notice The implementation's version number (1, 2, ...), as Vana's contracts report it.
    function version() external pure returns (uint256);

    /**
     * @notice Stops every state-changing function until `unpause`.
     *
     * Requirements:
     * - the caller has `MAINTAINER_ROLE`;
     * - the contract is not paused.
     *
     * Emits a {Paused} event.
     */
    function pause() external;

    /**
     * @notice Resumes state-changing functions.
     *
     * Requirements:
     * - the caller has `MAINTAINER_ROLE`;
     * - the contract is paused.
     *
     * Emits an {Unpaused} event.
     */
    function unpause() external;
}
