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
        emit IDataRefinerRegistry.RefinerAdded(1, dlpId, "daily", 0, SCHEMA, REFINEMENT);
        uint256 first = _addRefiner(dlpOwner, dlpId, "daily", SCHEMA);
        uint256 second = _addRefiner(dlpOwner, dlpId, "hourly", "ipfs://other");

        assertEq(first, 1, "first id");
        assertEq(second, 2, "second id");
        assertEq(registry.refinersCount(), 2, "count");
        assertEq(registry.dlpRefiners(dlpId), ids(1, 2), "dlp refiners");
        assertEq(registry.refinerDlpId(2), dlpId, "refinerDlpId");
        IDataRefinerRegistry.RefinerInfo memory r = registry.refiners(1);
        assertEq(r.dlpId, dlpId, "dlpId");
        assertEq(r.owner, dlpOwner, "owner");
        assertEq(r.name, "daily", "name");
        assertEq(r.schemaDefinitionUrl, SCHEMA, "schema");
        assertEq(r.refinementInstructionUrl, REFINEMENT, "refinement");
        assertEq(r.schemaId, 0, "no schema id");
    }

    function test_AddRefiner_RefinementUrlMayBeEmpty() public {
        vm.prank(dlpOwner);
        uint256 id = registry.addRefiner(dlpId, "raw", SCHEMA, "");
        assertEq(registry.refiners(id).refinementInstructionUrl, "", "empty refinement url");
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
        assertEq(registry.refiners(id).owner, stranger, "new owner recorded");
    }

    // ---- schemas -----------------------------------------------------------------------

    function _addSchema(address caller) private returns (uint256) {
        vm.prank(caller);
        return registry.addSchema("fitness", "sqlite", SCHEMA);
    }

    function test_AddSchema_AnyoneIdsFromOneAndEmits() public {
        vm.expectEmit(true, false, false, true, address(registry));
        emit IDataRefinerRegistry.SchemaAdded(1, "fitness", "sqlite", SCHEMA);
        assertEq(_addSchema(stranger), 1, "first id");
        assertEq(registry.schemasCount(), 1, "count");
        IDataRefinerRegistry.Schema memory schema = registry.schemas(1);
        assertEq(schema.name, "fitness", "name");
        assertEq(schema.dialect, "sqlite", "dialect");
        assertEq(schema.definitionUrl, SCHEMA, "url");
        assertTrue(registry.isValidSchemaId(1), "valid");
        assertFalse(registry.isValidSchemaId(0) || registry.isValidSchemaId(2), "0 and 2 invalid");
        vm.expectRevert(abi.encodeWithSelector(IDataRefinerRegistry.InvalidSchemaId.selector, 2));
        registry.schemas(2);
    }

    function test_AddSchema_RevertsOnEmptyNameOrUrl() public {
        vm.expectRevert(IDataRefinerRegistry.EmptyName.selector);
        registry.addSchema("", "sqlite", SCHEMA);
        vm.expectRevert(IDataRefinerRegistry.EmptySchemaUrl.selector);
        registry.addSchema("fitness", "sqlite", "");
    }

    function test_AddRefinerWithSchemaId_TakesTheSchemaUrl() public {
        uint256 schemaId = _addSchema(stranger);
        vm.expectEmit(true, true, true, true, address(registry));
        emit IDataRefinerRegistry.RefinerAdded(1, dlpId, "daily", schemaId, SCHEMA, REFINEMENT);
        vm.prank(dlpOwner);
        uint256 id = registry.addRefinerWithSchemaId(dlpId, "daily", schemaId, REFINEMENT);
        IDataRefinerRegistry.RefinerInfo memory r = registry.refiners(id);
        assertEq(r.schemaId, schemaId, "schema id");
        assertEq(r.schemaDefinitionUrl, SCHEMA, "url from the schema");

        vm.startPrank(dlpOwner);
        vm.expectRevert(abi.encodeWithSelector(IDataRefinerRegistry.InvalidSchemaId.selector, 9));
        registry.addRefinerWithSchemaId(dlpId, "daily", 9, REFINEMENT);
        vm.stopPrank();
        vm.expectRevert(IDataRefinerRegistry.NotDlpOwner.selector);
        vm.prank(stranger);
        registry.addRefinerWithSchemaId(dlpId, "daily", schemaId, REFINEMENT);
    }

    function test_UpdateSchemaId_OwnerOnlyValidSchema() public {
        uint256 id = _addRefiner(dlpOwner, dlpId, "daily", "ipfs://own");
        vm.prank(stranger);
        uint256 schemaId = registry.addSchema("v2", "sqlite", "ipfs://v2");
        vm.expectEmit(true, true, false, true, address(registry));
        emit IDataRefinerRegistry.RefinerSchemaUpdated(id, schemaId);
        vm.prank(dlpOwner);
        registry.updateSchemaId(id, schemaId);
        assertEq(registry.refiners(id).schemaDefinitionUrl, "ipfs://v2", "follows the schema");

        vm.expectRevert(abi.encodeWithSelector(IDataRefinerRegistry.InvalidSchemaId.selector, 0));
        vm.prank(dlpOwner);
        registry.updateSchemaId(id, 0);
        vm.expectRevert(IDataRefinerRegistry.NotDlpOwner.selector);
        vm.prank(stranger);
        registry.updateSchemaId(id, schemaId);
        vm.expectRevert(IDataRefinerRegistry.NotDlpOwner.selector);
        vm.prank(dlpOwner);
        registry.updateSchemaId(77, schemaId); // unknown refiner: DLP 0 has no owner
    }

    // ---- owners and refinement services --------------------------------------------------

    function test_UpdateRefinerOwners_AfterDlpTransfer() public {
        uint256 first = _addRefiner(dlpOwner, dlpId, "daily", SCHEMA);
        uint256 second = _addRefiner(dlpOwner, dlpId, "hourly", SCHEMA);
        vm.prank(dlpOwner);
        dlps.transferDlpOwnership(dlpId, stranger);
        assertEq(registry.refiners(first).owner, dlpOwner, "owner is recorded, not looked up");

        vm.expectRevert(IDataRefinerRegistry.NotDlpOwner.selector);
        vm.prank(dlpOwner);
        registry.updateRefinerOwner(first);
        vm.expectEmit(true, true, false, true, address(registry));
        emit IDataRefinerRegistry.RefinerOwnerUpdated(first, stranger);
        vm.prank(stranger);
        registry.updateRefinerOwner(first);
        assertEq(registry.refiners(first).owner, stranger, "one refiner");
        assertEq(registry.refiners(second).owner, dlpOwner, "the other not yet");
        vm.prank(stranger);
        registry.updateDlpRefinersOwner(dlpId);
        assertEq(registry.refiners(second).owner, stranger, "every refiner");
        vm.expectRevert(IDataRefinerRegistry.NotDlpOwner.selector);
        vm.prank(dlpOwner);
        registry.updateDlpRefinersOwner(dlpId);
    }

    function test_RefinementServices_AddRemoveByOwner() public {
        uint256 id = _addRefiner(dlpOwner, dlpId, "daily", SCHEMA);
        address service = makeAddr("service");
        vm.startPrank(dlpOwner);
        registry.addRefinementService(dlpId, service);
        registry.addRefinementService(dlpId, service); // a set: no duplicate
        vm.stopPrank();
        assertEq(registry.dlpRefinementServices(dlpId).length, 1, "one service");
        assertEq(registry.dlpRefinementServices(dlpId)[0], service, "the service");
        assertTrue(registry.isRefinementService(id, service), "serves the refiner's DLP");
        assertFalse(registry.isRefinementService(id, stranger), "others do not");

        vm.expectRevert(IDataRefinerRegistry.NotDlpOwner.selector);
        vm.prank(stranger);
        registry.removeRefinementService(dlpId, service);
        vm.prank(dlpOwner);
        registry.removeRefinementService(dlpId, service);
        assertFalse(registry.isRefinementService(id, service), "removed");
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
        IDataRefinerRegistry.RefinerInfo memory r = registry.refiners(3);
        assertEq(r.dlpId, 0, "dlp");
        assertEq(r.owner, address(0), "owner");
        assertEq(bytes(r.name).length + bytes(r.schemaDefinitionUrl).length + bytes(r.refinementInstructionUrl).length,
            0, "strings");
        assertEq(r.schemaId, 0, "schema id");
        assertEq(registry.dlpRefiners(9).length, 0, "no refiners");
    }

    // ---- pause / roles / upgrade --------------------------------------------------------

    function test_Pause_BlocksAddRefiner() public {
        vm.prank(admin);
        registry.pause();
        vm.expectRevert(_enforcedPause());
        _addRefiner(dlpOwner, dlpId, "daily", SCHEMA);
        vm.expectRevert(_enforcedPause());
        registry.addSchema("fitness", "sqlite", SCHEMA);
        vm.expectRevert(_enforcedPause());
        vm.prank(dlpOwner);
        registry.addRefinementService(dlpId, stranger);
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
        assertEq(registry.dlpRefiners(dlpId), ids(id), "list kept");
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
        assertEq(registry.dlpRefiners(dlpId).length, mine, "mine");
        assertEq(registry.dlpRefiners(otherDlp).length, count - mine, "other");
    }
}
