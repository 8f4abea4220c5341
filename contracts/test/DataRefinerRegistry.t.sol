// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Initializable} from "@openzeppelin/contracts-upgradeable/proxy/utils/Initializable.sol";

import {DataRefinerRegistry} from "../src/DataRefinerRegistry.sol";
import {DLPRegistry} from "../src/DLPRegistry.sol";
import {IDataRefinerRegistry} from "../src/interfaces/IDataRefinerRegistry.sol";
import {IDLPRegistry} from "../src/interfaces/IDLPRegistry.sol";
import {IManaged} from "../src/interfaces/IManaged.sol";
import {Deployments} from "./utils/Deployments.sol";
import {DataRefinerRegistryV2} from "./mocks/UpgradeMocks.sol";

contract DataRefinerRegistryTest is Deployments {
    string private constant SCHEMA = "ipfs://schema.json";
    string private constant REFINEMENT = "https://example.org/refiner.tar.gz";

    DLPRegistry private dlps;
    DataRefinerRegistry private registry;
    address private admin;
    address private dlpOwner;
    address private stranger;
    uint256 private dlpId;

    function setUp() public {
        admin = makeAddr("admin");
        dlpOwner = makeAddr("dlpOwner");
        stranger = makeAddr("stranger");
        dlps = _deployDlpRegistry(admin);
        registry = _deployRefinerRegistry(admin, address(dlps));
        dlpId = _registerDlp(dlps, dlpOwner, "weather");
    }

    function _addRefiner(address caller, uint256 dlp, string memory name, string memory schema)
        private
        returns (uint256)
    {
        vm.prank(caller);
        return registry.addRefiner(dlp, name, schema, REFINEMENT);
    }

    // ---- initialize ----------------------------------------------------------------

    function test_Initialize_LinksRegistryAndRoles() public {
        assertEq(registry.dlpRegistry(), address(dlps), "dlp registry");
        assertEq(registry.version(), 1, "version");
        assertTrue(registry.hasRole(registry.MAINTAINER_ROLE(), admin), "maintainer");
        vm.expectRevert(Initializable.InvalidInitialization.selector);
        registry.initialize(stranger, address(dlps));
    }

    function test_Initialize_EmitsLinkAndRejectsNonContract() public {
        address implementation = address(new DataRefinerRegistry());
        vm.expectRevert(abi.encodeWithSelector(IManaged.InvalidAccount.selector, address(0)));
        _proxy(implementation, abi.encodeCall(DataRefinerRegistry.initialize, (admin, address(0))));

        vm.expectEmit(true, false, false, true);
        emit IDataRefinerRegistry.DlpRegistryUpdated(address(dlps));
        _proxy(implementation, abi.encodeCall(DataRefinerRegistry.initialize, (admin, address(dlps))));
    }

    // ---- addRefiner ------------------------------------------------------------------

    function test_AddRefiner_IdsFromOneStoresAndEmits() public {
        vm.expectEmit(true, true, false, true, address(registry));
        emit IDataRefinerRegistry.RefinerAdded(1, dlpId, "daily", SCHEMA, REFINEMENT);
        uint256 first = _addRefiner(dlpOwner, dlpId, "daily", SCHEMA);
        uint256 second = _addRefiner(dlpOwner, dlpId, "hourly", "ipfs://other");

        assertEq(first, 1, "first id");
        assertEq(second, 2, "second id");
        assertEq(registry.refinersCount(), 2, "count");
        assertEq(registry.dlpRefinerIds(dlpId), ids(1, 2), "dlp refiners");
        assertEq(registry.refinerDlpId(2), dlpId, "refinerDlpId");
        (uint256 dlp, address owner, string memory name, string memory schema, string memory refinement) =
            registry.refiners(1);
        assertEq(dlp, dlpId, "dlpId");
        assertEq(owner, dlpOwner, "owner");
        assertEq(name, "daily", "name");
        assertEq(schema, SCHEMA, "schema");
        assertEq(refinement, REFINEMENT, "refinement");
    }

    function test_AddRefiner_RefinementUrlMayBeEmpty() public {
        vm.prank(dlpOwner);
        uint256 id = registry.addRefiner(dlpId, "raw", SCHEMA, "");
        (,,,, string memory refinement) = registry.refiners(id);
        assertEq(refinement, "", "empty refinement url");
    }

    function test_AddRefiner_RevertsForNonOwner() public {
        vm.expectRevert(IDataRefinerRegistry.NotDlpOwner.selector);
        _addRefiner(stranger, dlpId, "daily", SCHEMA);
        vm.expectRevert(IDataRefinerRegistry.NotDlpOwner.selector);
        _addRefiner(admin, dlpId, "daily", SCHEMA);
        assertEq(registry.refinersCount(), 0, "nothing stored");
    }

    function test_AddRefiner_UnknownDlpIsNotDlpOwner() public {
        vm.expectRevert(IDataRefinerRegistry.NotDlpOwner.selector);
        _addRefiner(dlpOwner, 42, "daily", SCHEMA);
    }

    function test_AddRefiner_RevertsOnEmptyNameOrSchema() public {
        vm.expectRevert(IDataRefinerRegistry.EmptyName.selector);
        _addRefiner(dlpOwner, dlpId, "", SCHEMA);
        vm.expectRevert(IDataRefinerRegistry.EmptySchemaUrl.selector);
        _addRefiner(dlpOwner, dlpId, "daily", "");
    }

    function test_AddRefiner_FollowsDlpOwnershipTransfer() public {
        vm.prank(dlpOwner);
        dlps.transferDlpOwnership(dlpId, stranger);
        vm.expectRevert(IDataRefinerRegistry.NotDlpOwner.selector);
        _addRefiner(dlpOwner, dlpId, "daily", SCHEMA);
        uint256 id = _addRefiner(stranger, dlpId, "daily", SCHEMA);
        (, address owner,,,) = registry.refiners(id);
        assertEq(owner, stranger, "new owner recorded");
    }

    // ---- views --------------------------------------------------------------------------

    function test_RefinerDlpId_RevertsRefinerNotFound() public {
        _addRefiner(dlpOwner, dlpId, "daily", SCHEMA);
        vm.expectRevert(abi.encodeWithSelector(IDataRefinerRegistry.RefinerNotFound.selector, 0));
        registry.refinerDlpId(0);
        vm.expectRevert(abi.encodeWithSelector(IDataRefinerRegistry.RefinerNotFound.selector, 2));
        registry.refinerDlpId(2);
    }

    function test_Refiners_ZeroTupleAndEmptyListsForUnknown() public view {
        (uint256 dlp, address owner, string memory name, string memory schema, string memory refinement) =
            registry.refiners(3);
        assertEq(dlp, 0, "dlp");
        assertEq(owner, address(0), "owner");
        assertEq(bytes(name).length + bytes(schema).length + bytes(refinement).length, 0, "strings");
        assertEq(registry.dlpRefinerIds(9).length, 0, "no refiners");
    }

    // ---- pause / roles / upgrade --------------------------------------------------------

    function test_Pause_BlocksAddRefiner() public {
        vm.prank(admin);
        registry.pause();
        vm.expectRevert(_enforcedPause());
        _addRefiner(dlpOwner, dlpId, "daily", SCHEMA);
        vm.prank(admin);
        registry.unpause();
        assertEq(_addRefiner(dlpOwner, dlpId, "daily", SCHEMA), 1, "works after unpause");
    }

    function test_Roles_OnlyMaintainerPausesAndRelinks() public {
        bytes32 role = registry.MAINTAINER_ROLE();
        vm.expectRevert(_unauthorized(stranger, role));
        vm.prank(stranger);
        registry.pause();
        vm.expectRevert(_unauthorized(stranger, role));
        vm.prank(stranger);
        registry.updateDlpRegistry(address(dlps));

        DLPRegistry replacement = _deployDlpRegistry(admin);
        vm.expectEmit(true, false, false, true, address(registry));
        emit IDataRefinerRegistry.DlpRegistryUpdated(address(replacement));
        vm.prank(admin);
        registry.updateDlpRegistry(address(replacement));
        assertEq(registry.dlpRegistry(), address(replacement), "switched");
    }

    function test_Upgrade_OnlyAdmin() public {
        address v2 = address(new DataRefinerRegistryV2());
        vm.expectRevert(_unauthorized(stranger, bytes32(0)));
        vm.prank(stranger);
        registry.upgradeToAndCall(v2, "");
    }

    function test_Upgrade_KeepsRefiners() public {
        uint256 id = _addRefiner(dlpOwner, dlpId, "daily", SCHEMA);
        address v2 = address(new DataRefinerRegistryV2());
        vm.prank(admin);
        registry.upgradeToAndCall(v2, "");
        assertEq(registry.version(), 2, "upgraded");
        assertEq(DataRefinerRegistryV2(address(registry)).upgradedMarker(), 2, "new function");
        assertEq(registry.refinerDlpId(id), dlpId, "refiner kept");
        assertEq(registry.dlpRefinerIds(dlpId), ids(id), "list kept");
        assertEq(registry.dlpRegistry(), address(dlps), "link kept");
    }

    function test_Storage_UsesErc7201Slot() public view {
        bytes32 slot = _erc7201("computetodata.storage.DataRefinerRegistry");
        assertEq(address(uint160(uint256(vm.load(address(registry), slot)))), address(dlps), "link at slot");
    }

    // ---- fuzz -------------------------------------------------------------------------------

    function testFuzz_RefinersStayWithTheirDlp(uint256 count, uint256 seed) public {
        count = bound(count, 1, 12);
        uint256 otherDlp = _registerDlp(dlps, stranger, "other");
        uint256 mine;
        for (uint256 i = 0; i < count; ++i) {
            bool toOther = uint256(keccak256(abi.encode(seed, i))) % 2 == 1;
            uint256 id = toOther
                ? _addRefiner(stranger, otherDlp, "r", SCHEMA)
                : _addRefiner(dlpOwner, dlpId, "r", SCHEMA);
            assertEq(registry.refinerDlpId(id), toOther ? otherDlp : dlpId, "dlp of refiner");
            if (!toOther) ++mine;
        }
        assertEq(registry.dlpRefinerIds(dlpId).length, mine, "mine");
        assertEq(registry.dlpRefinerIds(otherDlp).length, count - mine, "other");
    }
}
