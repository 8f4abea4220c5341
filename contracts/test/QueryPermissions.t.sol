// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Initializable} from "@openzeppelin/contracts-upgradeable/proxy/utils/Initializable.sol";

import {DataRefinerRegistry} from "../src/DataRefinerRegistry.sol";
import {DLPRegistry} from "../src/DLPRegistry.sol";
import {QueryPermissions} from "../src/QueryPermissions.sol";
import {IDataRefinerRegistry} from "../src/interfaces/IDataRefinerRegistry.sol";
import {IDLPRegistry} from "../src/interfaces/IDLPRegistry.sol";
import {IManaged} from "../src/interfaces/IManaged.sol";
import {IQueryPermissions} from "../src/interfaces/IQueryPermissions.sol";
import {Deployments} from "./utils/Deployments.sol";
import {QueryPermissionsV2} from "./mocks/UpgradeMocks.sol";

contract QueryPermissionsTest is Deployments {
    DLPRegistry private dlps;
    DataRefinerRegistry private refiners;
    QueryPermissions private perms;
    address private admin;
    address private dlpOwner;
    address private grantee;
    address private otherGrantee;
    address private stranger;
    uint256 private dlpId;
    uint256 private refinerId;
    uint256 private otherRefinerId;

    function setUp() public {
        admin = makeAddr("admin");
        dlpOwner = makeAddr("dlpOwner");
        grantee = makeAddr("grantee");
        otherGrantee = makeAddr("otherGrantee");
        stranger = makeAddr("stranger");
        dlps = _deployDlpRegistry(admin);
        refiners = _deployRefinerRegistry(admin, address(dlps));
        perms = _deployQueryPermissions(admin, address(refiners));
        dlpId = _registerDlp(dlps, dlpOwner, "weather");
        vm.startPrank(dlpOwner);
        refinerId = refiners.addRefiner(dlpId, "daily", "ipfs://schema", "");
        otherRefinerId = refiners.addRefiner(dlpId, "hourly", "ipfs://schema2", "");
        vm.stopPrank();
    }

    function _grant(address to, uint256 refiner, string memory table, string memory column, uint256 price)
        private
        returns (uint256)
    {
        vm.prank(dlpOwner);
        return perms.addPermission(to, refiner, table, column, price);
    }

    function _setApproval(address caller, uint256 permissionId, bool approved) private {
        vm.prank(caller);
        perms.updatePermissionApproval(permissionId, approved);
    }

    function _idsOf(IQueryPermissions.Permission[] memory list) private pure returns (uint256[] memory out) {
        out = new uint256[](list.length);
        for (uint256 i = 0; i < list.length; ++i) {
            out[i] = list[i].id;
        }
    }

    // ---- initialize ------------------------------------------------------------------

    function test_Initialize_LinksRegistryAndRoles() public {
        assertEq(perms.dataRefinerRegistry(), address(refiners), "link");
        assertEq(perms.version(), 1, "version");
        assertTrue(perms.hasRole(perms.DEFAULT_ADMIN_ROLE(), admin), "admin");
        vm.expectRevert(Initializable.InvalidInitialization.selector);
        perms.initialize(stranger, address(refiners));

        address implementation = address(new QueryPermissions());
        vm.expectRevert(abi.encodeWithSelector(IManaged.InvalidAccount.selector, stranger));
        _proxy(implementation, abi.encodeCall(QueryPermissions.initialize, (admin, stranger)));
    }

    // ---- addPermission -----------------------------------------------------------------

    function test_Add_StoresApprovedAndEmits() public {
        vm.expectEmit(true, true, true, true, address(perms));
        emit IQueryPermissions.PermissionAdded(1, grantee, refinerId, "readings", "temp", 5 ether);
        uint256 id = _grant(grantee, refinerId, "readings", "temp", 5 ether);

        assertEq(id, 1, "first id");
        assertEq(perms.permissionsCount(), 1, "count");
        (address to, bool approved, uint256 refiner, string memory table, string memory column, uint256 price) =
            perms.permissions(id);
        assertEq(to, grantee, "grantee");
        assertTrue(approved, "new permission approved");
        assertEq(refiner, refinerId, "refiner");
        assertEq(table, "readings", "table");
        assertEq(column, "temp", "column");
        assertEq(price, 5 ether, "price");
        assertEq(perms.refinerPermissionIds(refinerId), ids(1), "refiner ids");
    }

    function test_Add_GenericAndWholeRefiner() public {
        vm.expectEmit(true, true, true, true, address(perms));
        emit IQueryPermissions.PermissionAdded(1, address(0), refinerId, "", "", 0);
        uint256 id = _grant(address(0), refinerId, "", "", 0);
        (address to,,, string memory table, string memory column,) = perms.permissions(id);
        assertEq(to, address(0), "anyone");
        assertEq(table, "", "every table");
        assertEq(column, "", "every column");
        // A table without a column is fine too.
        assertEq(_grant(grantee, refinerId, "readings", "", 1), 2, "table only");
    }

    function test_Add_RevertsColumnWithoutTable() public {
        vm.expectRevert(IQueryPermissions.ColumnWithoutTable.selector);
        _grant(grantee, refinerId, "", "temp", 1);
        assertEq(perms.permissionsCount(), 0, "nothing stored");
    }

    function test_Add_RevertsForNonOwner() public {
        vm.expectRevert(IQueryPermissions.NotDlpOwner.selector);
        vm.prank(stranger);
        perms.addPermission(stranger, refinerId, "", "", 0);
        vm.expectRevert(IQueryPermissions.NotDlpOwner.selector);
        vm.prank(admin);
        perms.addPermission(admin, refinerId, "", "", 0);
    }

    function test_Add_BubblesRefinerNotFound() public {
        vm.expectRevert(abi.encodeWithSelector(IDataRefinerRegistry.RefinerNotFound.selector, 77));
        _grant(grantee, 77, "", "", 0);
    }

    function test_Add_FollowsDlpOwnershipTransfer() public {
        vm.prank(dlpOwner);
        dlps.transferDlpOwnership(dlpId, stranger);
        vm.expectRevert(IQueryPermissions.NotDlpOwner.selector);
        _grant(grantee, refinerId, "", "", 0);
        vm.prank(stranger);
        assertEq(perms.addPermission(grantee, refinerId, "", "", 0), 1, "new owner grants");
    }

    // ---- updatePermissionApproval -----------------------------------------------------

    function test_Approval_RevokeAndRestoreEmit() public {
        uint256 id = _grant(grantee, refinerId, "", "", 0);
        vm.expectEmit(true, false, false, true, address(perms));
        emit IQueryPermissions.PermissionApprovalUpdated(id, false);
        _setApproval(dlpOwner, id, false);
        (, bool approved,,,,) = perms.permissions(id);
        assertFalse(approved, "revoked");

        vm.expectEmit(true, false, false, true, address(perms));
        emit IQueryPermissions.PermissionApprovalUpdated(id, true);
        _setApproval(dlpOwner, id, true);
        (, approved,,,,) = perms.permissions(id);
        assertTrue(approved, "restored");
    }

    function test_Approval_NoOpEmitsNothing() public {
        uint256 id = _grant(grantee, refinerId, "", "", 0);
        vm.recordLogs();
        _setApproval(dlpOwner, id, true); // already approved
        assertEq(vm.getRecordedLogs().length, 0, "no event for a no-op");
    }

    function test_Approval_RevertsPermissionNotFound() public {
        _grant(grantee, refinerId, "", "", 0);
        vm.expectRevert(abi.encodeWithSelector(IQueryPermissions.PermissionNotFound.selector, 0));
        _setApproval(dlpOwner, 0, false);
        vm.expectRevert(abi.encodeWithSelector(IQueryPermissions.PermissionNotFound.selector, 2));
        _setApproval(dlpOwner, 2, false);
    }

    function test_Approval_RevertsForNonOwner() public {
        uint256 id = _grant(grantee, refinerId, "", "", 0);
        vm.expectRevert(IQueryPermissions.NotDlpOwner.selector);
        _setApproval(grantee, id, false);
        vm.expectRevert(IQueryPermissions.NotDlpOwner.selector);
        _setApproval(admin, id, false);
    }

    // ---- getPermissions --------------------------------------------------------------

    function test_GetPermissions_GenericPlusOwnAscending() public {
        uint256 mine1 = _grant(grantee, refinerId, "readings", "", 1);
        uint256 generic1 = _grant(address(0), refinerId, "stations", "", 0);
        _grant(otherGrantee, refinerId, "", "", 9); // someone else's
        _grant(grantee, otherRefinerId, "", "", 9); // another refiner
        uint256 mine2 = _grant(grantee, refinerId, "readings", "temp", 2);
        uint256 generic2 = _grant(address(0), refinerId, "", "", 3);
        _setApproval(dlpOwner, mine2, false); // revoked ones are listed, flagged

        IQueryPermissions.Permission[] memory list = perms.getPermissions(refinerId, grantee);
        uint256[] memory expected = new uint256[](4);
        (expected[0], expected[1], expected[2], expected[3]) = (mine1, generic1, mine2, generic2);
        assertEq(_idsOf(list), expected, "ids");
        assertEq(list[2].grantee, grantee, "grantee");
        assertFalse(list[2].approved, "revoked flagged");
        assertEq(list[2].tableName, "readings", "table");
        assertEq(list[2].columnName, "temp", "column");
        assertEq(list[2].price, 2, "price");
        assertEq(list[2].refinerId, refinerId, "refiner");
        assertEq(list[1].grantee, address(0), "generic grantee");
        assertTrue(list[1].approved, "generic approved");
    }

    function test_GetPermissions_ZeroGranteeGetsGenericOnce() public {
        uint256 generic = _grant(address(0), refinerId, "", "", 0);
        _grant(grantee, refinerId, "", "", 0);
        assertEq(_idsOf(perms.getPermissions(refinerId, address(0))), ids(generic), "generic only, once");
        assertEq(perms.getPermissions(otherRefinerId, grantee).length, 0, "none for other refiner");
        assertEq(perms.getPermissions(999, grantee).length, 0, "none for unknown refiner");
    }

    // ---- pause / roles / upgrade ------------------------------------------------------

    function test_Pause_BlocksWrites() public {
        uint256 id = _grant(grantee, refinerId, "", "", 0);
        vm.prank(admin);
        perms.pause();
        vm.expectRevert(_enforcedPause());
        _grant(grantee, refinerId, "", "", 0);
        vm.expectRevert(_enforcedPause());
        _setApproval(dlpOwner, id, false);
        assertEq(perms.getPermissions(refinerId, grantee).length, 1, "reads still work");
    }

    function test_Roles_OnlyMaintainerPausesAndRelinks() public {
        bytes32 role = perms.MAINTAINER_ROLE();
        vm.expectRevert(_unauthorized(stranger, role));
        vm.prank(stranger);
        perms.pause();
        vm.expectRevert(_unauthorized(stranger, role));
        vm.prank(stranger);
        perms.updateDataRefinerRegistry(address(refiners));

        DataRefinerRegistry replacement = _deployRefinerRegistry(admin, address(dlps));
        vm.expectEmit(true, false, false, true, address(perms));
        emit IQueryPermissions.DataRefinerRegistryUpdated(address(replacement));
        vm.prank(admin);
        perms.updateDataRefinerRegistry(address(replacement));
        assertEq(perms.dataRefinerRegistry(), address(replacement), "switched");
        vm.expectRevert(abi.encodeWithSelector(IDataRefinerRegistry.RefinerNotFound.selector, refinerId));
        _grant(grantee, refinerId, "", "", 0);
    }

    function test_Upgrade_OnlyAdmin() public {
        address v2 = address(new QueryPermissionsV2());
        vm.expectRevert(_unauthorized(dlpOwner, bytes32(0)));
        vm.prank(dlpOwner);
        perms.upgradeToAndCall(v2, "");
    }

    function test_Upgrade_KeepsPermissions() public {
        uint256 generic = _grant(address(0), refinerId, "", "", 0);
        uint256 mine = _grant(grantee, refinerId, "t", "c", 4);
        address v2 = address(new QueryPermissionsV2());
        vm.prank(admin);
        perms.upgradeToAndCall(v2, "");
        assertEq(perms.version(), 2, "upgraded");
        assertEq(QueryPermissionsV2(address(perms)).upgradedMarker(), 2, "new function");
        assertEq(_idsOf(perms.getPermissions(refinerId, grantee)), ids(generic, mine), "kept");
        assertEq(perms.permissionsCount(), 2, "count kept");
    }

    function test_Storage_UsesErc7201Slot() public view {
        bytes32 slot = _erc7201("computetodata.storage.QueryPermissions");
        assertEq(address(uint160(uint256(vm.load(address(perms), slot)))), address(refiners), "link at slot");
    }

    // ---- fuzz --------------------------------------------------------------------------

    /// getPermissions(refiner, who) is exactly the generic plus who's own, ascending.
    function testFuzz_GetPermissionsIsGenericPlusOwn(uint256 seed, uint256 count, uint256 whoSeed) public {
        count = bound(count, 1, 10);
        address[3] memory grantees = [address(0), grantee, otherGrantee];
        address[] memory granteeOf = new address[](count + 1);
        uint256[] memory refinerOf = new uint256[](count + 1);
        for (uint256 i = 1; i <= count; ++i) {
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            granteeOf[i] = grantees[r % 3];
            refinerOf[i] = (r >> 8) % 2 == 0 ? refinerId : otherRefinerId;
            _grant(granteeOf[i], refinerOf[i], "", "", 0);
        }
        address who = grantees[bound(whoSeed, 0, 2)];
        uint256[] memory got = _idsOf(perms.getPermissions(refinerId, who));
        uint256 k;
        for (uint256 i = 1; i <= count; ++i) {
            if (refinerOf[i] != refinerId || (granteeOf[i] != address(0) && granteeOf[i] != who)) continue;
            assertTrue(k < got.length, "too few results");
            assertEq(got[k++], i, "id in order");
        }
        assertEq(got.length, k, "no extra results");
    }

    function testFuzz_ColumnNeedsTable(string calldata table, string calldata column) public {
        bool bad = bytes(table).length == 0 && bytes(column).length != 0;
        if (bad) vm.expectRevert(IQueryPermissions.ColumnWithoutTable.selector);
        uint256 id = _grant(grantee, refinerId, table, column, 0);
        if (!bad) {
            (,,, string memory storedTable, string memory storedColumn,) = perms.permissions(id);
            assertEq(storedTable, table, "table");
            assertEq(storedColumn, column, "column");
        }
    }
}
