// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/**
 * @title IPaymentExecutor
 * @notice What a query engine calls to be paid for a job (Vana's
 * `IPaymentExecutor`): the executor (the ComputeEngine) moves `amount` of
 * `token` (address(0) = the native token) from the job owner's deposit to the
 * caller. `metadata` is `abi.encode(uint256 jobId, uint256 dlpId)`.
 */
interface IPaymentExecutor {
    function executePaymentRequest(address token, uint256 amount, bytes calldata metadata) external;
}
