// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ComputeEngine} from "../src/ComputeEngine.sol";
import {ComputeInstructionRegistry} from "../src/ComputeInstructionRegistry.sol";
import {DataRefinerRegistry} from "../src/DataRefinerRegistry.sol";
import {DLPRegistry} from "../src/DLPRegistry.sol";
import {QueryEngine} from "../src/QueryEngine.sol";
import {IComputeEngine} from "../src/interfaces/IComputeEngine.sol";
import {IDataAccessTreasury} from "../src/interfaces/IDataAccessTreasury.sol";
import {IQueryEngine} from "../src/interfaces/IQueryEngine.sol";
import {Deployments} from "./utils/Deployments.sol";
import {MockToken} from "./mocks/PaymentMocks.sol";

/// The whole money path on the real contracts: deposit, job, charge by the query engine, split, claim.
contract ComputeEngineTest is Deployments {
    DLPRegistry private dlps;
    DataRefinerRegistry private refiners;
    ComputeInstructionRegistry private instructions;
    QueryEngine private queryEngine;
    ComputeEngine private compute;
    MockToken private token;
    address private admin;
    address private dlpOwner;
    address private dlpTreasury;
    address private protocol;
    address private builder;
    address private stranger;
    address private engineWallet;
    uint256 private dlpId;
    uint256 private refinerId;
    uint256 private instructionId;

    function setUp() public {
        admin = makeAddr("admin");
        dlpOwner = makeAddr("dlpOwner");
        dlpTreasury = makeAddr("dlpTreasury");
        protocol = makeAddr("protocol");
        builder = makeAddr("builder");
        stranger = makeAddr("stranger");
        engineWallet = makeAddr("engineWallet");
        dlps = _deployDlpRegistry(admin);
        refiners = _deployRefinerRegistry(admin, address(dlps));
        instructions = _deployInstructionRegistry(admin, address(dlps));
        queryEngine = _deployQueryEngine(admin, address(refiners));
        compute = _deployComputeEngine(admin, address(queryEngine), address(instructions));
        token = new MockToken();

        DLPRegistry.DlpRegistration memory info = _registration(dlpOwner, "weather");
        info.treasuryAddress = payable(dlpTreasury);
        vm.prank(dlpOwner);
        dlps.registerDlp(info);
        dlpId = dlps.dlpsCount();
        vm.prank(dlpOwner);
        refinerId = refiners.addRefiner(dlpId, "daily", "ipfs://schema", "");
        vm.prank(builder);
        instructionId = instructions.addComputeInstruction(keccak256("image"), "https://example.org/i.tar");

        vm.startPrank(admin);
        queryEngine.updateComputeEngine(address(compute));
        queryEngine.updateVanaTreasury(protocol);
        queryEngine.updateDlpPaymentPercentage(80e18);
        queryEngine.grantRole(queryEngine.QUERY_ENGINE_ROLE(), engineWallet);
        queryEngine.addPaymentToken(address(token));
        compute.grantRole(compute.ENGINE_ROLE(), engineWallet);
        vm.stopPrank();
        vm.deal(builder, 10 ether);
        token.mint(builder, 1000);
    }

    function _job(uint256 value) private returns (uint256) {
        vm.prank(builder);
        compute.submitJob{value: value}(600, false, instructionId);
        return compute.jobsCount();
    }

    function _charge(uint256 jobId, uint256 amount) private {
        vm.prank(engineWallet);
        queryEngine.requestPaymentInVana(amount, jobId, refinerId);
    }

    // ---- jobs -----------------------------------------------------------------------------

    function test_SubmitJob_CreatesAJobOwnedByTheCaller() public {
        vm.warp(1_800_000_000);
        vm.expectEmit(true, true, false, true, address(compute));
        emit IComputeEngine.JobRegistered(1, builder);
        uint256 jobId = _job(0);
        IComputeEngine.Job memory job = compute.jobs(jobId);
        assertEq(job.ownerAddress, builder, "owner");
        assertEq(uint256(job.maxTimeout), 600, "timeout");
        assertEq(uint256(job.status), uint256(IComputeEngine.JobStatus.Submitted), "open to the engines");
        assertEq(uint256(job.computeInstructionId), instructionId, "instruction");
        assertEq(uint256(job.addedTimestamp), 1_800_000_000, "time");
        assertEq(compute.teePoolFactory(), address(0), "no TEE pools");

        vm.expectRevert(abi.encodeWithSelector(IComputeEngine.InstructionNotFound.selector, 9));
        vm.prank(builder);
        compute.submitJob(600, false, 9);
        vm.expectRevert(IComputeEngine.FailedToAssignTee.selector);
        vm.prank(builder);
        compute.submitJobWithTee(600, false, instructionId, stranger);
        vm.expectRevert(IComputeEngine.OnlyRegisteredJobStatus.selector);
        compute.resubmitJob(jobId);
        vm.expectRevert(abi.encodeWithSelector(IComputeEngine.JobNotFound.selector, 5));
        compute.resubmitJob(5);
    }

    function test_JobStatus_ByTheEngineThatTakesIt() public {
        uint256 jobId = _job(0);
        vm.expectRevert(IComputeEngine.NotTee.selector);
        vm.prank(stranger);
        compute.updateJobStatus(jobId, IComputeEngine.JobStatus.Running, "");
        vm.prank(engineWallet);
        compute.updateJobStatus(jobId, IComputeEngine.JobStatus.Running, "started");
        assertEq(compute.jobs(jobId).teeAddress, engineWallet, "taken");
        vm.expectRevert(
            abi.encodeWithSelector(
                IComputeEngine.InvalidStatusTransition.selector,
                IComputeEngine.JobStatus.Running,
                IComputeEngine.JobStatus.Submitted
            )
        );
        vm.prank(engineWallet);
        compute.updateJobStatus(jobId, IComputeEngine.JobStatus.Submitted, "");
        vm.prank(engineWallet);
        compute.updateJobStatus(jobId, IComputeEngine.JobStatus.Completed, "done");
        vm.expectRevert(IComputeEngine.JobAlreadyDone.selector);
        vm.prank(engineWallet);
        compute.updateJobStatus(jobId, IComputeEngine.JobStatus.Failed, "");
        vm.expectRevert(IComputeEngine.JobLifeCycleEnded.selector);
        vm.prank(builder);
        compute.cancelJob(jobId);
    }

    function test_CancelJob_OwnerOnly() public {
        uint256 jobId = _job(0);
        vm.expectRevert(IComputeEngine.NotJobOwner.selector);
        vm.prank(stranger);
        compute.cancelJob(jobId);
        vm.prank(builder);
        compute.cancelJob(jobId);
        assertEq(uint256(compute.jobs(jobId).status), uint256(IComputeEngine.JobStatus.Canceled), "canceled");
    }

    // ---- deposits ---------------------------------------------------------------------------

    function test_Deposit_AndWithdraw_Native() public {
        vm.expectEmit(true, true, false, true, address(compute));
        emit IComputeEngine.Deposit(builder, address(0), 2 ether);
        vm.prank(builder);
        compute.deposit{value: 2 ether}(address(0), 2 ether);
        assertEq(compute.balanceOf(builder, address(0)), 2 ether, "balance");
        assertEq(compute.computeEngineTreasury().balance, 2 ether, "held by the treasury");

        vm.prank(builder);
        compute.withdraw(address(0), 0.5 ether);
        assertEq(builder.balance, 8.5 ether, "withdrawn");
        vm.expectRevert(IComputeEngine.InsufficientBalance.selector);
        vm.prank(builder);
        compute.withdraw(address(0), 2 ether);
        vm.expectRevert(IComputeEngine.InvalidAmount.selector);
        vm.prank(builder);
        compute.withdraw(address(0), 0);
    }

    function test_Deposit_Reverts() public {
        vm.startPrank(builder);
        vm.expectRevert(IComputeEngine.InvalidAmount.selector);
        compute.deposit(address(0), 0);
        vm.expectRevert(IComputeEngine.InvalidVanaAmount.selector);
        compute.deposit{value: 1}(address(0), 2);
        token.approve(address(compute), 10);
        vm.expectRevert(IComputeEngine.UnexpectedVanaDeposit.selector);
        compute.deposit{value: 1}(address(token), 10);
        compute.deposit(address(token), 10);
        vm.stopPrank();
        assertEq(compute.balanceOf(builder, address(token)), 10, "token deposit");
        assertEq(token.balanceOf(compute.computeEngineTreasury()), 10, "token held by the treasury");
    }

    function test_SubmitJob_WithValueDeposits() public {
        _job(1 ether);
        assertEq(compute.balanceOf(builder, address(0)), 1 ether, "deposited with the job");
    }

    // ---- the money path -----------------------------------------------------------------------

    function test_Charge_SplitsAndTheOwnerClaims() public {
        uint256 jobId = _job(1 ether);
        vm.expectEmit(true, true, false, true, address(compute));
        emit IComputeEngine.PaymentExecuted(jobId, address(0), 0.5 ether);
        _charge(jobId, 0.5 ether);
        assertEq(compute.balanceOf(builder, address(0)), 0.5 ether, "deposit down");
        assertEq(compute.paymentInfo(jobId, dlpId, address(0)), 0.5 ether, "payment recorded");
        assertEq(queryEngine.balanceOf(dlpId, address(0)), 0.4 ether, "80% accrued to the DLP");
        assertEq(protocol.balance, 0.1 ether, "20% to the protocol treasury");

        vm.expectRevert(IQueryEngine.NotDlpOwner.selector);
        vm.prank(stranger);
        queryEngine.claimDlpPayment(dlpId, address(0));
        vm.prank(dlpOwner);
        queryEngine.claimDlpPayment(dlpId, address(0));
        assertEq(dlpTreasury.balance, 0.4 ether, "claimed into the DLP's treasury");
    }

    function test_Charge_InToken() public {
        vm.startPrank(builder);
        token.approve(address(compute), 100);
        compute.deposit(address(token), 100);
        compute.submitJob(600, false, instructionId);
        vm.stopPrank();
        vm.prank(engineWallet);
        queryEngine.requestPaymentInToken(address(token), 50, 1, refinerId);
        assertEq(compute.balanceOf(builder, address(token)), 50, "token deposit down");
        assertEq(queryEngine.balanceOf(dlpId, address(token)), 40, "DLP share in token");
        assertEq(token.balanceOf(protocol), 10, "rest in token");
    }

    function test_Charge_InsufficientBalanceChargesNothing() public {
        uint256 jobId = _job(0.1 ether);
        vm.expectRevert(IComputeEngine.InsufficientBalance.selector);
        _charge(jobId, 0.2 ether);
        assertEq(compute.balanceOf(builder, address(0)), 0.1 ether, "untouched");
        assertEq(compute.paymentInfo(jobId, dlpId, address(0)), 0, "nothing recorded");
    }

    function test_Charge_NeverTwice() public {
        uint256 jobId = _job(1 ether);
        _charge(jobId, 0.1 ether);
        vm.expectRevert(abi.encodeWithSelector(IComputeEngine.JobAlreadyPaid.selector, jobId, dlpId));
        _charge(jobId, 0.1 ether);
        assertEq(compute.balanceOf(builder, address(0)), 0.9 ether, "charged once");
    }

    function test_Charge_WrongOrUnlistedTokenOrJob() public {
        uint256 jobId = _job(1 ether);
        MockToken other = new MockToken();
        vm.expectRevert(abi.encodeWithSelector(IQueryEngine.InvalidPaymentToken.selector, address(other)));
        vm.prank(engineWallet);
        queryEngine.requestPaymentInToken(address(other), 1, jobId, refinerId);
        // A listed token the builder never deposited.
        vm.expectRevert(IComputeEngine.InsufficientBalance.selector);
        vm.prank(engineWallet);
        queryEngine.requestPaymentInToken(address(token), 1, jobId, refinerId);
        vm.expectRevert(abi.encodeWithSelector(IComputeEngine.JobNotFound.selector, 42));
        _charge(42, 1);
    }

    function test_Charge_OnlyFromTheQueryEngine() public {
        uint256 jobId = _job(1 ether);
        vm.expectRevert(IComputeEngine.UnauthorizedPaymentRequestor.selector);
        vm.prank(engineWallet);
        compute.executePaymentRequest(address(0), 1, abi.encode(jobId, dlpId));
    }

    function test_Pause_StopsDepositsJobsAndCharges() public {
        uint256 jobId = _job(1 ether);
        vm.prank(admin);
        compute.pause();
        vm.expectRevert(_enforcedPause());
        _job(0);
        vm.expectRevert(_enforcedPause());
        vm.prank(builder);
        compute.deposit{value: 1}(address(0), 1);
        vm.expectRevert(_enforcedPause());
        _charge(jobId, 1);
        vm.expectRevert(_enforcedPause());
        vm.prank(builder);
        compute.withdraw(address(0), 1);
    }

    function test_Treasury_OnlyTheComputeEngineMovesDeposits() public {
        _job(1 ether);
        IDataAccessTreasury treasury = IDataAccessTreasury(compute.computeEngineTreasury());
        assertEq(treasury.custodian(), address(compute), "custodian");
        vm.expectRevert(_unauthorized(admin, treasury.CUSTODIAN_ROLE()));
        vm.prank(admin);
        treasury.transfer(admin, address(0), 1);
    }

    function test_Storage_UsesErc7201Slot() public view {
        bytes32 slot = _erc7201("computetodata.storage.ComputeEngine");
        assertEq(address(uint160(uint256(vm.load(address(compute), slot)))), address(queryEngine), "at slot");
    }
}
