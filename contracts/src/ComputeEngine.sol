// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC1967Proxy} from "@openzeppelin/contracts/proxy/ERC1967/ERC1967Proxy.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ReentrancyGuardUpgradeable} from "@openzeppelin/contracts-upgradeable/utils/ReentrancyGuardUpgradeable.sol";

import {ManagedUpgradeable} from "./utils/ManagedUpgradeable.sol";
import {IManaged} from "./interfaces/IManaged.sol";
import {IComputeEngine} from "./interfaces/IComputeEngine.sol";
import {IComputeInstructionRegistry} from "./interfaces/IComputeInstructionRegistry.sol";
import {IDataAccessTreasury} from "./interfaces/IDataAccessTreasury.sol";
import {IPaymentExecutor} from "./interfaces/IPaymentExecutor.sol";
import {DataAccessTreasury} from "./DataAccessTreasury.sol";

/**
 * @title ComputeEngine
 * @notice Deposits (held by its own DataAccessTreasury), on-chain jobs run by the
 * registered engines, and the payment of job prices to the QueryEngine.
 */
contract ComputeEngine is ManagedUpgradeable, ReentrancyGuardUpgradeable, IComputeEngine {
    using SafeERC20 for IERC20;
    using Address for address payable;

    uint256 private constant VERSION = 1;
    /// @inheritdoc IComputeEngine
    bytes32 public constant ENGINE_ROLE = keccak256("ENGINE_ROLE");
    address private constant NATIVE = address(0);

    /// @custom:storage-location erc7201:computetodata.storage.ComputeEngine
    struct ComputeEngineStorage {
        address queryEngine;
        address treasury;
        IComputeInstructionRegistry instructionRegistry;
        uint256 jobsCount;
        mapping(uint256 jobId => Job) jobs;
        mapping(address account => mapping(address token => uint256)) balances;
        mapping(uint256 jobId => mapping(uint256 dlpId => mapping(address token => uint256))) paid;
        mapping(uint256 jobId => mapping(uint256 dlpId => bool)) charged;
    }

    // keccak256(abi.encode(uint256(keccak256("computetodata.storage.ComputeEngine")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 private constant STORAGE_LOCATION = 0xe5278d7633b2c0a6b34e795a1d3f857a5f583df2aab154045eb4ac8778d50b00;

    /**
     * @notice Sets up the proxy: `admin` gets `DEFAULT_ADMIN_ROLE` and `MAINTAINER_ROLE`;
     * a DataAccessTreasury proxy of `treasuryImplementation` is created with this contract
     * as custodian (it holds every deposit).
     *
     * Requirements:
     * - not initialized yet;
     * - `admin` not zero; `instructionRegistry_` and `treasuryImplementation` are contracts (`InvalidAccount`).
     */
    function initialize(address admin, address queryEngine_, address instructionRegistry_, address treasuryImplementation)
        external
        initializer
    {
        __Managed_init(admin);
        __ReentrancyGuard_init();
        _requireContract(instructionRegistry_);
        _requireContract(treasuryImplementation);
        ComputeEngineStorage storage $ = _storage();
        $.queryEngine = queryEngine_;
        $.instructionRegistry = IComputeInstructionRegistry(instructionRegistry_);
        bytes memory init = abi.encodeCall(DataAccessTreasury.initialize, (admin, address(this)));
        $.treasury = address(new ERC1967Proxy(treasuryImplementation, init));
    }

    // ---- jobs -----------------------------------------------------------------------------

    /// @inheritdoc IComputeEngine
    function submitJob(uint80 maxTimeout, bool gpuRequired, uint256 computeInstructionId)
        external
        payable
        whenNotPaused
    {
        _register(maxTimeout, gpuRequired, computeInstructionId, address(0));
    }

    /// @inheritdoc IComputeEngine
    function submitJobWithTee(uint80 maxTimeout, bool gpuRequired, uint256 computeInstructionId, address teeAddress)
        external
        payable
        whenNotPaused
    {
        if (!hasRole(ENGINE_ROLE, teeAddress)) revert FailedToAssignTee();
        _register(maxTimeout, gpuRequired, computeInstructionId, teeAddress);
    }

    /// @inheritdoc IComputeEngine
    /// @dev Not `view`, to keep Vana's ABI (nonpayable); it always reverts.
    function resubmitJob(uint256 jobId) external whenNotPaused {
        _existingJob(jobId);
        revert OnlyRegisteredJobStatus();
    }

    /// @inheritdoc IComputeEngine
    function cancelJob(uint256 jobId) external whenNotPaused {
        Job storage job = _storage().jobs[jobId];
        if (job.ownerAddress != msg.sender) revert NotJobOwner();
        if (job.status >= JobStatus.Completed) revert JobLifeCycleEnded();
        job.status = JobStatus.Canceled;
        emit JobCanceled(jobId);
    }

    /// @inheritdoc IComputeEngine
    function updateJobStatus(uint256 jobId, JobStatus status, string calldata statusMessage)
        external
        whenNotPaused
    {
        Job storage job = _storage().jobs[jobId];
        if (!hasRole(ENGINE_ROLE, msg.sender)) revert NotTee();
        if (job.teeAddress != address(0) && job.teeAddress != msg.sender) revert NotTee();
        JobStatus current = job.status;
        if (current == JobStatus.Completed || current == JobStatus.Failed) revert JobAlreadyDone();
        if (status == JobStatus.Canceled || status <= current) revert InvalidStatusTransition(current, status);
        job.teeAddress = msg.sender;
        job.status = status;
        job.statusMessage = statusMessage;
        emit JobStatusUpdated(jobId, status, statusMessage);
    }

    // ---- money ----------------------------------------------------------------------------

    /// @inheritdoc IComputeEngine
    function deposit(address token, uint256 amount) external payable whenNotPaused {
        _deposit(token, amount);
    }

    /// @inheritdoc IComputeEngine
    function withdraw(address token, uint256 amount) external nonReentrant whenNotPaused {
        if (amount == 0) revert InvalidAmount();
        ComputeEngineStorage storage $ = _storage();
        if ($.balances[msg.sender][token] < amount) revert InsufficientBalance();
        $.balances[msg.sender][token] -= amount;
        emit Withdraw(msg.sender, token, amount);
        IDataAccessTreasury($.treasury).transfer(msg.sender, token, amount);
    }

    /// @inheritdoc IPaymentExecutor
    function executePaymentRequest(address token, uint256 amount, bytes calldata metadata)
        external
        nonReentrant
        whenNotPaused
    {
        ComputeEngineStorage storage $ = _storage();
        if (msg.sender != $.queryEngine) revert UnauthorizedPaymentRequestor();
        (uint256 jobId, uint256 dlpId) = abi.decode(metadata, (uint256, uint256));
        Job storage job = $.jobs[jobId];
        address payer = job.ownerAddress;
        if (payer == address(0)) revert JobNotFound(jobId);
        if (job.status < JobStatus.Submitted) revert JobNotSubmitted(jobId);
        // Whatever the engine retries or replays, a job pays each DLP once.
        if ($.charged[jobId][dlpId]) revert JobAlreadyPaid(jobId, dlpId);
        if ($.balances[payer][token] < amount) revert InsufficientBalance();
        $.balances[payer][token] -= amount;
        $.charged[jobId][dlpId] = true;
        $.paid[jobId][dlpId][token] += amount;
        emit PaymentExecuted(jobId, token, amount);
        IDataAccessTreasury($.treasury).transfer(msg.sender, token, amount);
    }

    // ---- maintainer -------------------------------------------------------------------------

    /// @inheritdoc IComputeEngine
    function updateQueryEngine(address newQueryEngine) external onlyRole(MAINTAINER_ROLE) {
        _storage().queryEngine = newQueryEngine;
    }

    /// @inheritdoc IComputeEngine
    function updateComputeEngineTreasury(address newComputeEngineTreasury) external onlyRole(MAINTAINER_ROLE) {
        if (newComputeEngineTreasury == address(0)) revert ZeroAddress();
        _storage().treasury = newComputeEngineTreasury;
    }

    /// @inheritdoc IComputeEngine
    function updateInstructionRegistry(address newInstructionRegistry) external onlyRole(MAINTAINER_ROLE) {
        _requireContract(newInstructionRegistry);
        _storage().instructionRegistry = IComputeInstructionRegistry(newInstructionRegistry);
    }

    // ---- views ------------------------------------------------------------------------------

    /// @inheritdoc IComputeEngine
    function balanceOf(address account, address token) external view returns (uint256) {
        return _storage().balances[account][token];
    }

    /// @inheritdoc IComputeEngine
    function paymentInfo(uint256 jobId, uint256 dlpId, address token) external view returns (uint256) {
        return _storage().paid[jobId][dlpId][token];
    }

    /// @inheritdoc IComputeEngine
    function jobs(uint256 jobId) external view returns (Job memory) {
        return _storage().jobs[jobId];
    }

    /// @inheritdoc IComputeEngine
    function jobsCount() external view returns (uint256) {
        return _storage().jobsCount;
    }

    /// @inheritdoc IComputeEngine
    function queryEngine() external view returns (address) {
        return _storage().queryEngine;
    }

    /// @inheritdoc IComputeEngine
    function computeEngineTreasury() external view returns (address) {
        return _storage().treasury;
    }

    /// @inheritdoc IComputeEngine
    function instructionRegistry() external view returns (address) {
        return address(_storage().instructionRegistry);
    }

    /// @inheritdoc IComputeEngine
    function teePoolFactory() external pure returns (address) {
        return address(0);
    }

    /// @inheritdoc IManaged
    function version() external pure virtual returns (uint256) {
        return VERSION;
    }

    // ---- internals --------------------------------------------------------------------------

    function _register(uint80 maxTimeout, bool gpuRequired, uint256 instructionId, address engine) private {
        ComputeEngineStorage storage $ = _storage();
        if (!$.instructionRegistry.isValidInstructionId(instructionId)) revert InstructionNotFound(instructionId);
        if (msg.value > 0) _deposit(NATIVE, msg.value);
        uint256 jobId = ++$.jobsCount;
        Job storage job = $.jobs[jobId];
        job.ownerAddress = msg.sender;
        job.maxTimeout = maxTimeout;
        job.gpuRequired = gpuRequired;
        // No pools to offer it to: the job is open to the registered engines at once.
        job.status = JobStatus.Submitted;
        job.teeAddress = engine;
        job.computeInstructionId = uint32(instructionId);
        job.addedTimestamp = uint48(block.timestamp);
        emit JobRegistered(jobId, msg.sender);
    }

    function _deposit(address token, uint256 amount) private {
        if (amount == 0) revert InvalidAmount();
        ComputeEngineStorage storage $ = _storage();
        $.balances[msg.sender][token] += amount;
        emit Deposit(msg.sender, token, amount);
        if (token == NATIVE) {
            if (msg.value != amount) revert InvalidVanaAmount();
            payable($.treasury).sendValue(amount);
        } else {
            if (msg.value != 0) revert UnexpectedVanaDeposit();
            IERC20(token).safeTransferFrom(msg.sender, $.treasury, amount);
        }
    }

    function _existingJob(uint256 jobId) private view returns (Job storage job) {
        ComputeEngineStorage storage $ = _storage();
        if (jobId == 0 || jobId > $.jobsCount) revert JobNotFound(jobId);
        return $.jobs[jobId];
    }

    function _storage() private pure returns (ComputeEngineStorage storage $) {
        assembly {
            $.slot := STORAGE_LOCATION
        }
    }
}
