// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Initializable} from "@openzeppelin/contracts-upgradeable/proxy/utils/Initializable.sol";

import {DataRefinerRegistry} from "../src/DataRefinerRegistry.sol";
import {DLPRegistry} from "../src/DLPRegistry.sol";
import {QueryEngine} from "../src/QueryEngine.sol";
import {DataAccessTreasury} from "../src/DataAccessTreasury.sol";
import {IDataAccessTreasury} from "../src/interfaces/IDataAccessTreasury.sol";
import {IManaged} from "../src/interfaces/IManaged.sol";
import {IQueryEngine} from "../src/interfaces/IQueryEngine.sol";
import {Deployments} from "./utils/Deployments.sol";
import {QueryEngineV2} from "./mocks/UpgradeMocks.sol";
import {MockPaymentExecutor, MockToken} from "./mocks/PaymentMocks.sol";

contract QueryEngineTest is Deployments {
    DLPRegistry private dlps;
    DataRefinerRegistry private refiners;
    QueryEngine private engine;
    MockPaymentExecutor private executor;
    MockToken private token;
    address private admin;
    address private dlpOwner;
    address private dlpTreasury;
    address private vanaTreasury;
    address private grantee;
    address private otherGrantee;
    address private stranger;
    address private computeNode;
    uint256 private dlpId;
    uint256 private refinerId;
    uint256 private otherRefinerId;

    function setUp() public {
        admin = makeAddr("admin");
        dlpOwner = makeAddr("dlpOwner");
        dlpTreasury = makeAddr("dlpTreasury");
        vanaTreasury = makeAddr("vanaTreasury");
        grantee = makeAddr("grantee");
        otherGrantee = makeAddr("otherGrantee");
        stranger = makeAddr("stranger");
        computeNode = makeAddr("computeNode");
        dlps = _deployDlpRegistry(admin);
        refiners = _deployRefinerRegistry(admin, address(dlps));
        engine = _deployQueryEngine(admin, address(refiners));
        vm.prank(dlpOwner);
        dlps.registerDlp(_dlpInfo());
        dlpId = dlps.dlpsCount();
        vm.startPrank(dlpOwner);
        refinerId = refiners.addRefiner(dlpId, "daily", "ipfs://schema", "");
        otherRefinerId = refiners.addRefiner(dlpId, "hourly", "ipfs://schema2", "");
        vm.stopPrank();

        executor = new MockPaymentExecutor();
        token = new MockToken();
        vm.deal(address(executor), 100 ether);
        token.mint(address(executor), 100 ether);
        vm.startPrank(admin);
        engine.updateComputeEngine(address(executor));
        engine.updateVanaTreasury(vanaTreasury);
        engine.updateDlpPaymentPercentage(80e18);
        engine.grantRole(engine.QUERY_ENGINE_ROLE(), computeNode);
        vm.stopPrank();
    }

    function _dlpInfo() private view returns (DLPRegistry.DlpRegistration memory info) {
        info = _registration(dlpOwner, "weather");
        info.treasuryAddress = payable(dlpTreasury);
    }

    function _grant(address to, uint256 refiner, string memory table, string memory column, uint256 price)
        private
        returns (uint256)
    {
        vm.prank(dlpOwner);
        return engine.addPermission(to, refiner, table, column, address(0), price);
    }

    function _setApproval(address caller, uint256 permissionId, bool approved) private {
        vm.prank(caller);
        engine.updatePermissionApproval(permissionId, approved);
    }

    function _idsOf(IQueryEngine.PermissionInfo[] memory list) private pure returns (uint256[] memory out) {
        out = new uint256[](list.length);
        for (uint256 i = 0; i < list.length; ++i) {
            out[i] = list[i].permissionId;
        }
    }

    function _pay(uint256 amount, uint256 jobId) private {
        vm.prank(computeNode);
        engine.requestPaymentInVana(amount, jobId, refinerId);
    }

    // ---- initialize ------------------------------------------------------------------

    function test_Initialize_LinksRegistryRolesAndTreasury() public {
        assertEq(engine.refinerRegistry(), address(refiners), "link");
        assertEq(engine.version(), 1, "version");
        assertTrue(engine.hasRole(engine.DEFAULT_ADMIN_ROLE(), admin), "admin");
        assertEq(engine.QUERY_ENGINE_ROLE(), keccak256("QUERY_ENGINE_ROLE"), "role id");
        assertEq(engine.ONE_HUNDRED_PERCENT(), 100e18, "100%");
        assertEq(engine.VANA(), address(0), "native token");
        DataAccessTreasury treasury = DataAccessTreasury(payable(engine.queryEngineTreasury()));
        assertEq(treasury.custodian(), address(engine), "engine is the treasury's custodian");
        assertFalse(treasury.hasRole(treasury.CUSTODIAN_ROLE(), admin), "the admin cannot move DLP money");
        vm.expectRevert(Initializable.InvalidInitialization.selector);
        engine.initialize(stranger, address(refiners), address(treasury));

        address implementation = address(new QueryEngine());
        vm.expectRevert(abi.encodeWithSelector(IManaged.InvalidAccount.selector, stranger));
        _proxy(implementation, abi.encodeCall(QueryEngine.initialize, (admin, stranger, address(treasury))));
    }

    // ---- permissions -------------------------------------------------------------------

    function test_AddPermission_StoresApprovedAndEmits() public {
        vm.expectEmit(true, true, true, true, address(engine));
        emit IQueryEngine.PermissionAdded(1, grantee, refinerId, "users", "email", address(token), 500);
        vm.prank(dlpOwner);
        uint256 id = engine.addPermission(grantee, refinerId, "users", "email", address(token), 500);
        assertEq(id, 1, "id");
        IQueryEngine.Permission memory p = engine.permissions(id);
        assertEq(p.grantee, grantee, "grantee");
        assertTrue(p.approved, "approved");
        assertEq(p.refinerId, refinerId, "refiner");
        assertEq(p.tableName, "users", "table");
        assertEq(p.columnName, "email", "column");
        assertEq(p.price, 500, "price");
        assertEq(p.tokenAddress, address(token), "token");
        assertEq(engine.permissionsCount(), 1, "count");
        assertEq(engine.refinerPermissionIds(refinerId), ids(1), "refiner ids");
    }

    function test_AddGenericPermission_IsForAnyone() public {
        vm.prank(dlpOwner);
        uint256 id = engine.addGenericPermission(refinerId, "", "", address(0), 0);
        assertEq(engine.permissions(id).grantee, address(0), "generic");
        assertEq(_idsOf(engine.getPermissions(refinerId, stranger)), ids(id), "applies to anyone");
    }

    function test_AddPermission_Reverts() public {
        vm.expectRevert(IQueryEngine.NotRefinerOwner.selector);
        vm.prank(stranger);
        engine.addPermission(grantee, refinerId, "", "", address(0), 0);
        vm.expectRevert(IQueryEngine.NotRefinerOwner.selector);
        vm.prank(dlpOwner);
        engine.addPermission(grantee, 99, "", "", address(0), 0);
        vm.expectRevert(IQueryEngine.ColumnNameUnexpected.selector);
        vm.prank(dlpOwner);
        engine.addPermission(grantee, refinerId, "", "email", address(0), 0);
    }

    function test_Approval_RevokeAndRestoreEmit() public {
        uint256 id = _grant(grantee, refinerId, "", "", 0);
        vm.expectEmit(true, false, false, true, address(engine));
        emit IQueryEngine.PermissionApprovalUpdated(id, false);
        _setApproval(dlpOwner, id, false);
        assertFalse(engine.permissions(id).approved, "revoked");
        assertEq(engine.getPermissions(refinerId, grantee).length, 0, "a revoked permission is not listed");
        _setApproval(dlpOwner, id, true);
        assertEq(_idsOf(engine.getPermissions(refinerId, grantee)), ids(id), "listed again");

        vm.recordLogs();
        _setApproval(dlpOwner, id, true);
        assertEq(vm.getRecordedLogs().length, 0, "no-op emits nothing");
    }

    function test_Approval_Reverts() public {
        uint256 id = _grant(grantee, refinerId, "", "", 0);
        vm.expectRevert(IQueryEngine.PermissionNotFound.selector);
        _setApproval(dlpOwner, 0, false);
        vm.expectRevert(IQueryEngine.PermissionNotFound.selector);
        _setApproval(dlpOwner, 2, false);
        vm.expectRevert(IQueryEngine.NotRefinerOwner.selector);
        _setApproval(stranger, id, false);
    }

    function test_Approval_FollowsRefinerOwnerNotDlpOwner() public {
        uint256 id = _grant(grantee, refinerId, "", "", 0);
        vm.prank(dlpOwner);
        dlps.transferDlpOwnership(dlpId, stranger);
        // The refiner's recorded owner still manages it until the new DLP owner takes it over.
        _setApproval(dlpOwner, id, false);
        vm.prank(stranger);
        refiners.updateRefinerOwner(refinerId);
        vm.expectRevert(IQueryEngine.NotRefinerOwner.selector);
        _setApproval(dlpOwner, id, true);
        _setApproval(stranger, id, true);
    }

    function test_GetPermissions_GenericFirstThenOwnApprovedOnly() public {
        uint256 own1 = _grant(grantee, refinerId, "", "", 0);
        uint256 generic1 = _grant(address(0), refinerId, "users", "", 0);
        uint256 other = _grant(otherGrantee, refinerId, "", "", 0);
        uint256 own2 = _grant(grantee, refinerId, "t", "c", 7);
        uint256 generic2 = _grant(address(0), refinerId, "logs", "", 0);
        _grant(grantee, otherRefinerId, "", "", 0);
        _setApproval(dlpOwner, own1, false);

        assertEq(_idsOf(engine.getPermissions(refinerId, grantee)), ids(generic1, generic2, own2), "grantee");
        assertEq(_idsOf(engine.getPermissions(refinerId, address(0))), ids(generic1, generic2), "generic once");
        assertEq(_idsOf(engine.getPermissions(refinerId, otherGrantee)), ids(generic1, generic2, other), "other");
        IQueryEngine.PermissionInfo memory info = engine.getPermissions(refinerId, grantee)[2];
        assertEq(info.price, 7, "price");
        assertEq(info.columnName, "c", "column");
    }

    // ---- payments ----------------------------------------------------------------------

    function test_Payment_SplitsBetweenDlpAndTreasury() public {
        address treasury = engine.queryEngineTreasury();
        vm.expectEmit(true, false, false, true, address(engine));
        emit IQueryEngine.PaymentReceived(address(0), 1 ether, 7, refinerId);
        _pay(1 ether, 7);
        assertEq(treasury.balance, 0.8 ether, "DLP share held by the treasury");
        assertEq(vanaTreasury.balance, 0.2 ether, "the rest");
        assertEq(engine.balanceOf(dlpId, address(0)), 0.8 ether, "accrued to the DLP");
        assertEq(keccak256(executor.lastMetadata()), keccak256(abi.encode(uint256(7), dlpId)), "job and DLP");
    }

    function testFuzz_Payment_PercentageSplitAddsUp(uint256 amount, uint256 percentage) public {
        amount = bound(amount, 0, 10 ether);
        percentage = bound(percentage, 0, 100e18);
        vm.prank(admin);
        engine.updateDlpPaymentPercentage(percentage);
        _pay(amount, 1);
        uint256 dlpShare = amount * percentage / 100e18;
        assertEq(engine.balanceOf(dlpId, address(0)), dlpShare, "dlp share");
        assertEq(engine.queryEngineTreasury().balance + vanaTreasury.balance, amount, "nothing lost");
    }

    function test_Payment_InToken() public {
        vm.expectRevert(abi.encodeWithSelector(IQueryEngine.InvalidPaymentToken.selector, address(token)));
        vm.prank(computeNode);
        engine.requestPaymentInToken(address(token), 100, 1, refinerId);

        vm.prank(admin);
        engine.addPaymentToken(address(token));
        assertTrue(engine.isPaymentToken(address(token)), "listed");
        vm.prank(computeNode);
        engine.requestPayment(address(token), 100, abi.encode(uint256(2), refinerId));
        assertEq(token.balanceOf(engine.queryEngineTreasury()), 80, "DLP share in token");
        assertEq(token.balanceOf(vanaTreasury), 20, "rest in token");
        assertEq(engine.balanceOf(dlpId, address(token)), 80, "accrued in token");
    }

    function test_Payment_Reverts() public {
        vm.expectRevert(_unauthorized(stranger, engine.QUERY_ENGINE_ROLE()));
        vm.prank(stranger);
        engine.requestPaymentInVana(1, 1, refinerId);
        vm.expectRevert(IQueryEngine.RefinerNotFound.selector);
        vm.prank(computeNode);
        engine.requestPaymentInVana(1, 1, 99);
        executor.setShortBy(1);
        vm.expectRevert(IQueryEngine.PaymentNotReceived.selector);
        _pay(10, 1);
    }

    function test_Payment_NeedsVanaTreasuryForItsShare() public {
        QueryEngine fresh = _deployQueryEngine(admin, address(refiners));
        vm.startPrank(admin);
        fresh.updateComputeEngine(address(executor));
        fresh.grantRole(fresh.QUERY_ENGINE_ROLE(), computeNode);
        vm.stopPrank();
        vm.expectRevert(IQueryEngine.ZeroAddress.selector);
        vm.prank(computeNode);
        fresh.requestPaymentInVana(10, 1, refinerId);
    }

    function test_Pause_StopsPaymentsAndClaimsNotRevokes() public {
        uint256 id = _grant(grantee, refinerId, "", "", 0);
        _pay(1 ether, 1);
        vm.prank(admin);
        engine.pause();
        vm.expectRevert(_enforcedPause());
        _pay(1 ether, 2);
        vm.expectRevert(_enforcedPause());
        vm.prank(dlpOwner);
        engine.claimDlpPayment(dlpId, address(0));
        vm.expectRevert(_enforcedPause());
        _grant(grantee, refinerId, "", "", 0);
        _setApproval(dlpOwner, id, false); // revoking stays possible
        vm.prank(admin);
        engine.unpause();
        _pay(1 ether, 2);
    }

    function test_Claim_SendsShareToDlpTreasury() public {
        _pay(1 ether, 1);
        vm.expectEmit(true, true, true, true, address(engine));
        emit IQueryEngine.DlpPaymentClaimed(dlpId, dlpTreasury, address(0), 0.8 ether);
        vm.prank(dlpOwner);
        engine.claimDlpPayment(dlpId, address(0));
        assertEq(dlpTreasury.balance, 0.8 ether, "claimed to the DLP's treasury");
        assertEq(engine.balanceOf(dlpId, address(0)), 0, "balance cleared");
        vm.expectRevert(IDataAccessTreasury.ZeroAmount.selector);
        vm.prank(dlpOwner);
        engine.claimDlpPayment(dlpId, address(0));
    }

    function test_Claim_StrangerRefused() public {
        _pay(1 ether, 1);
        vm.expectRevert(IQueryEngine.NotDlpOwner.selector);
        vm.prank(stranger);
        engine.claimDlpPayment(dlpId, address(0));
        vm.expectRevert(IQueryEngine.NotDlpOwner.selector);
        vm.prank(admin);
        engine.claimDlpPayment(dlpId, address(0));
        assertEq(engine.balanceOf(dlpId, address(0)), 0.8 ether, "untouched");
    }

    function test_Treasury_OnlyCustodianMovesFunds() public {
        _pay(1 ether, 1);
        DataAccessTreasury treasury = DataAccessTreasury(payable(engine.queryEngineTreasury()));
        bytes32 role = treasury.CUSTODIAN_ROLE();
        vm.expectRevert(_unauthorized(admin, role));
        vm.prank(admin);
        treasury.transfer(admin, address(0), 1);
        vm.prank(admin);
        treasury.updateCustodian(stranger);
        vm.expectRevert(_unauthorized(address(engine), role));
        vm.prank(address(engine));
        treasury.transfer(stranger, address(0), 1);
        vm.expectRevert(IDataAccessTreasury.ZeroAddress.selector);
        vm.prank(stranger);
        treasury.transfer(address(0), address(0), 1);
        vm.expectEmit(true, true, false, true, address(treasury));
        emit IDataAccessTreasury.Transfer(stranger, address(0), 1);
        vm.prank(stranger);
        treasury.transfer(stranger, address(0), 1);
    }

    // ---- maintainer ----------------------------------------------------------------------

    function test_Maintainer_SettersAndTheirChecks() public {
        vm.startPrank(admin);
        vm.expectRevert(IQueryEngine.InvalidDlpPaymentPercentage.selector);
        engine.updateDlpPaymentPercentage(100e18 + 1);
        vm.expectRevert(IQueryEngine.ZeroAddress.selector);
        engine.updateVanaTreasury(address(0));
        vm.expectRevert(IQueryEngine.ZeroAddress.selector);
        engine.updateQueryEngineTreasury(address(0));
        vm.expectRevert(abi.encodeWithSelector(IQueryEngine.TokenAlreadyWhitelisted.selector, address(0)));
        engine.addPaymentToken(address(0));
        engine.addPaymentToken(address(token));
        vm.expectRevert(abi.encodeWithSelector(IQueryEngine.TokenAlreadyWhitelisted.selector, address(token)));
        engine.addPaymentToken(address(token));
        engine.removePaymentToken(address(token));
        vm.expectRevert(abi.encodeWithSelector(IQueryEngine.InvalidPaymentToken.selector, address(token)));
        engine.removePaymentToken(address(token));
        engine.updateDlpPubKey(dlpId, "pubkey");
        vm.expectRevert(IQueryEngine.DlpNotFound.selector);
        engine.updateDlpPubKey(99, "pubkey");
        vm.stopPrank();
        assertEq(engine.dlpPubKeys(dlpId), "pubkey", "pub key");
        assertEq(engine.dlpPaymentPercentage(), 80e18, "percentage");

        bytes32 role = engine.MAINTAINER_ROLE();
        vm.startPrank(stranger);
        vm.expectRevert(_unauthorized(stranger, role));
        engine.updateComputeEngine(stranger);
        vm.expectRevert(_unauthorized(stranger, role));
        engine.addPaymentToken(address(token));
        vm.expectRevert(_unauthorized(stranger, role));
        engine.updateDlpPubKey(dlpId, "x");
        vm.stopPrank();
    }

    function test_Upgrade_KeepsPermissionsAndBalances() public {
        uint256 id = _grant(grantee, refinerId, "users", "", 5);
        _pay(1 ether, 1);
        address v2 = address(new QueryEngineV2());
        vm.prank(admin);
        engine.upgradeToAndCall(v2, "");
        assertEq(engine.version(), 2, "upgraded");
        assertEq(engine.permissions(id).price, 5, "permission kept");
        assertEq(engine.balanceOf(dlpId, address(0)), 0.8 ether, "balance kept");
    }

    function test_Storage_UsesErc7201Slot() public view {
        bytes32 slot = _erc7201("computetodata.storage.QueryEngine");
        assertEq(address(uint160(uint256(vm.load(address(engine), slot)))), address(refiners), "link at slot");
    }
}
