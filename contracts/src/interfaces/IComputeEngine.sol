// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IManaged} from "./IManaged.sol";
import {IPaymentExecutor} from "./IPaymentExecutor.sol";

/**
 * @title IComputeEngine
 * @notice Builders' deposits and on-chain jobs, with Vana's `ComputeEngine` ABI.
 * A job's price is taken from its owner's deposit when the QueryEngine asks
 * ({executePaymentRequest}).
 *
 * Difference from Vana's: Vana hands jobs to TEE pools; here there are none
 * ({teePoolFactory} is zero). The maintainer grants `ENGINE_ROLE` to the compute
 * engines' wallets, which take that role: a submitted job is open to every such
 * engine, and the first to report its status becomes the job's `teeAddress`.
 *
 * Additions (nothing a Vana client decodes changes): a job and DLP are charged
 * at most once (`JobAlreadyPaid`); {Withdraw}, {JobCanceled} and {JobStatusUpdated}
 * are emitted as Vana's implementation does.
 */
interface IComputeEngine is IManaged, IPaymentExecutor {
    /// @notice A job's lifecycle (Vana's `JobStatus`).
    enum JobStatus {
        None,
        Registered,
        Submitted,
        Running,
        Completed,
        Failed,
        Canceled
    }

    /// @notice A job as {jobs} returns it (Vana's `Job`, one tuple).
    struct Job {
        address ownerAddress;
        uint80 maxTimeout;
        bool gpuRequired;
        JobStatus status;
        address teeAddress;
        uint32 computeInstructionId;
        uint48 addedTimestamp;
        string statusMessage;
        address teePoolAddress;
    }

    /// @dev The compute instruction does not exist.
    error InstructionNotFound(uint256 computeInstructionId);
    /// @dev The account's deposit is smaller than the amount.
    error InsufficientBalance();
    /// @dev A native deposit whose `msg.value` differs from `amount`.
    error InvalidVanaAmount();
    /// @dev A zero amount.
    error InvalidAmount();
    /// @dev Declared by Vana, never raised by its engine nor by this one.
    error NotQueryEngine();
    /// @dev Only the QueryEngine may request payments.
    error UnauthorizedPaymentRequestor();
    /// @dev The job does not exist.
    error JobNotFound(uint256 jobId);
    /// @dev The job was not submitted (so it cannot be charged).
    error JobNotSubmitted(uint256 jobId);
    /// @dev Only the job's owner may cancel it.
    error NotJobOwner();
    /// @dev The job is completed, failed or canceled.
    error JobLifeCycleEnded();
    /// @dev The job is completed or failed.
    error JobAlreadyDone();
    /// @dev Only jobs still Registered can be resubmitted (here every job is submitted at once).
    error OnlyRegisteredJobStatus();
    /// @dev The caller is not an engine, or another engine took the job.
    error NotTee();
    /// @dev A status may only move forward, and never to Canceled.
    error InvalidStatusTransition(JobStatus currentStatus, JobStatus newStatus);
    /// @dev Native value sent with an ERC-20 deposit.
    error UnexpectedVanaDeposit();
    /// @dev The named engine does not hold `ENGINE_ROLE`.
    error FailedToAssignTee();
    /// @dev A zero address where one is needed.
    error ZeroAddress();
    /// @dev The job was already charged for this DLP.
    error JobAlreadyPaid(uint256 jobId, uint256 dlpId);

    /// @notice A job was created (Vana signature).
    event JobRegistered(uint256 indexed jobId, address indexed ownerAddress);
    /// @notice A job was canceled by its owner.
    event JobCanceled(uint256 indexed jobId);
    /// @notice An engine reported a job's status.
    event JobStatusUpdated(uint256 indexed jobId, JobStatus status, string statusMessage);
    /// @notice A job was charged (Vana signature).
    event PaymentExecuted(uint256 indexed jobId, address indexed token, uint256 amount);
    /// @notice Funds were deposited (Vana signature).
    event Deposit(address indexed account, address indexed token, uint256 amount);
    /// @notice Funds were withdrawn.
    event Withdraw(address indexed account, address indexed token, uint256 amount);

    /**
     * @notice Creates a job owned by the caller, open to the registered engines;
     * `msg.value` (if any) is deposited for the caller first.
     *
     * Requirements:
     * - the contract is not paused;
     * - the instruction exists (`InstructionNotFound`).
     *
     * Emits {JobRegistered} (and {Deposit} with value) events.
     */
    function submitJob(uint80 maxTimeout, bool gpuRequired, uint256 computeInstructionId) external payable;

    /// @notice {submitJob} reserved for engine `teeAddress` (`FailedToAssignTee` unless it holds `ENGINE_ROLE`).
    function submitJobWithTee(uint80 maxTimeout, bool gpuRequired, uint256 computeInstructionId, address teeAddress)
        external
        payable;

    /// @notice Vana re-offers a Registered job to its pools; here jobs are submitted at once
    /// (`JobNotFound`, else `OnlyRegisteredJobStatus`).
    function resubmitJob(uint256 jobId) external;

    /// @notice The owner cancels a job (`NotJobOwner`, `JobLifeCycleEnded`). Emits {JobCanceled}.
    function cancelJob(uint256 jobId) external;

    /**
     * @notice An engine reports a job's status; the first report takes the job.
     *
     * Requirements: not paused; the caller holds `ENGINE_ROLE` and no other engine took
     * the job (`NotTee`); the job is not done (`JobAlreadyDone`); the status moves
     * forward and is not Canceled (`InvalidStatusTransition`).
     *
     * Emits a {JobStatusUpdated} event.
     */
    function updateJobStatus(uint256 jobId, JobStatus status, string calldata statusMessage) external;

    /**
     * @notice Deposits `amount` of `token` (address(0) = native, sent as `msg.value`) for the caller.
     *
     * Requirements: not paused; `amount` > 0 (`InvalidAmount`); native: `msg.value == amount`
     * (`InvalidVanaAmount`); ERC-20: no value (`UnexpectedVanaDeposit`) and an allowance.
     *
     * Emits a {Deposit} event.
     */
    function deposit(address token, uint256 amount) external payable;

    /// @notice Withdraws from the caller's deposit (`InvalidAmount`, `InsufficientBalance`). Emits {Withdraw}.
    function withdraw(address token, uint256 amount) external;

    /// @notice The only account that may request payments (maintainer only).
    function updateQueryEngine(address newQueryEngine) external;

    /// @notice Where deposits are held (maintainer only; `ZeroAddress`).
    function updateComputeEngineTreasury(address newComputeEngineTreasury) external;

    /// @notice The registry jobs' instructions are checked in (maintainer only; `InvalidAccount`).
    function updateInstructionRegistry(address newInstructionRegistry) external;

    /// @notice An account's deposit of `token`.
    function balanceOf(address account, address token) external view returns (uint256);

    /// @notice What `jobId` paid for `dlpId` in `token` (0 = not charged).
    function paymentInfo(uint256 jobId, uint256 dlpId, address token) external view returns (uint256);

    /// @notice A job's record; the zero tuple for an unknown id.
    function jobs(uint256 jobId) external view returns (Job memory);

    function jobsCount() external view returns (uint256);
    function queryEngine() external view returns (address);
    function computeEngineTreasury() external view returns (address);
    function instructionRegistry() external view returns (address);

    /// @notice Always zero: no TEE pools here (see the contract notice).
    function teePoolFactory() external view returns (address);

    /// @notice The role the maintainer grants to compute engines' wallets.
    function ENGINE_ROLE() external view returns (bytes32);
}
