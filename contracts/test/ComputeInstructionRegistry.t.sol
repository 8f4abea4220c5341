// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Initializable} from "@openzeppelin/contracts-upgradeable/proxy/utils/Initializable.sol";

import {ComputeInstructionRegistry} from "../src/ComputeInstructionRegistry.sol";
import {DLPRegistry} from "../src/DLPRegistry.sol";
import {IComputeInstructionRegistry} from "../src/interfaces/IComputeInstructionRegistry.sol";
import {IDLPRegistry} from "../src/interfaces/IDLPRegistry.sol";
import {IManaged} from "../src/interfaces/IManaged.sol";
import {Deployments} from "./utils/Deployments.sol";
import {Vm} from "./utils/Vm.sol";
import {ComputeInstructionRegistryV2} from "./mocks/UpgradeMocks.sol";

contract ComputeInstructionRegistryTest is Deployments {
    bytes32 private constant HASH = keccak256("image archive");
    string private constant URL = "https://example.org/job.tar.gz";

    DLPRegistry private dlps;
    ComputeInstructionRegistry private registry;
    address private admin;
    address private dlpOwner;
    address private otherDlpOwner;
    address private builder;
    address private stranger;
    uint256 private dlpId;
    uint256 private otherDlpId;

    function setUp() public {
        admin = makeAddr("admin");
        dlpOwner = makeAddr("dlpOwner");
        otherDlpOwner = makeAddr("otherDlpOwner");
        builder = makeAddr("builder");
        stranger = makeAddr("stranger");
        dlps = _deployDlpRegistry(admin);
        registry = _deployInstructionRegistry(admin, address(dlps));
        dlpId = _registerDlp(dlps, dlpOwner, "weather");
        otherDlpId = _registerDlp(dlps, otherDlpOwner, "health");
    }

    function _add(address caller, bytes32 hash, string memory url) private returns (uint256) {
        vm.prank(caller);
        return registry.addComputeInstruction(hash, url);
    }

    function _approve(address caller, uint256 instructionId, uint256 dlp, bool approved) private {
        vm.prank(caller);
        registry.updateComputeInstruction(instructionId, dlp, approved);
    }

    // ---- Vana compatibility ------------------------------------------------------

    function test_Compat_VanaSelectorsAndEventTopics() public pure {
        assertEq(
            bytes32(ComputeInstructionRegistry.addComputeInstruction.selector), bytes32(bytes4(0x248e02a6)), "add"
        );
        assertEq(
            bytes32(ComputeInstructionRegistry.updateComputeInstruction.selector),
            bytes32(bytes4(0x79fd41f6)),
            "update"
        );
        assertEq(
            IComputeInstructionRegistry.ComputeInstructionAdded.selector,
            keccak256("ComputeInstructionAdded(uint256,address,string,bytes32)"),
            "added topic"
        );
        assertEq(
            IComputeInstructionRegistry.ComputeInstructionUpdated.selector,
            keccak256("ComputeInstructionUpdated(uint256,uint256,bool)"),
            "updated topic"
        );
        assertEq(
            bytes32(IComputeInstructionRegistry.ComputeInstructionNotFound.selector),
            bytes32(bytes4(keccak256("ComputeInstructionNotFound(uint256)"))),
            "not found error"
        );
        assertEq(
            bytes32(IComputeInstructionRegistry.NotDlpOwner.selector),
            bytes32(bytes4(keccak256("NotDlpOwner()"))),
            "owner error"
        );
    }

    // ---- initialize ----------------------------------------------------------------

    function test_Initialize_LinksRegistryAndRoles() public {
        assertEq(registry.dlpRegistry(), address(dlps), "dlp registry");
        assertEq(registry.version(), 1, "version");
        assertTrue(registry.hasRole(registry.DEFAULT_ADMIN_ROLE(), admin), "admin");
        assertTrue(registry.hasRole(registry.MAINTAINER_ROLE(), admin), "maintainer");
        vm.expectRevert(Initializable.InvalidInitialization.selector);
        registry.initialize(stranger, address(dlps));
    }

    function test_Initialize_RejectsRegistryWithoutCode() public {
        address implementation = address(new ComputeInstructionRegistry());
        vm.expectRevert(abi.encodeWithSelector(IManaged.InvalidAccount.selector, stranger));
        _proxy(implementation, abi.encodeCall(ComputeInstructionRegistry.initialize, (admin, stranger)));
    }

    // ---- addComputeInstruction -------------------------------------------------------

    function test_Add_IdsFromOneStoresAndEmits() public {
        vm.expectEmit(true, true, false, true, address(registry));
        emit IComputeInstructionRegistry.ComputeInstructionAdded(1, builder, URL, HASH);
        uint256 first = _add(builder, HASH, URL);
        uint256 second = _add(stranger, keccak256("other"), "file:///tmp/x.tar");

        assertEq(first, 1, "first id");
        assertEq(second, 2, "second id");
        assertEq(registry.instructionsCount(), 2, "count");
        IComputeInstructionRegistry.ComputeInstructionInfo memory info = registry.instructions(1);
        (bytes32 hash, address owner, string memory url) = (info.hash, info.owner, info.url);
        assertEq(hash, HASH, "hash");
        assertEq(owner, builder, "owner");
        assertEq(url, URL, "url");
        assertTrue(registry.isValidInstructionId(2), "valid 2");
        assertFalse(registry.isValidInstructionId(0), "0 invalid");
        assertFalse(registry.isValidInstructionId(3), "3 invalid");
    }

    function test_Add_RevertsOnZeroHash() public {
        vm.expectRevert(IComputeInstructionRegistry.ZeroHash.selector);
        _add(builder, bytes32(0), URL);
    }

    function test_Add_RevertsOnEmptyUrl() public {
        vm.expectRevert(IComputeInstructionRegistry.EmptyUrl.selector);
        _add(builder, HASH, "");
        assertEq(registry.instructionsCount(), 0, "nothing stored");
    }

    function test_Instructions_ZeroTupleForUnknownId() public view {
        IComputeInstructionRegistry.ComputeInstructionInfo memory info = registry.instructions(5);
        (bytes32 hash, address owner, string memory url) = (info.hash, info.owner, info.url);
        assertEq(hash, bytes32(0), "hash");
        assertEq(owner, address(0), "owner");
        assertEq(url, "", "url");
    }

    // ---- updateComputeInstruction ---------------------------------------------------

    function test_Update_ApproveThenRevokeEmitsEach() public {
        uint256 id = _add(builder, HASH, URL);
        assertFalse(registry.isApproved(id, dlpId), "starts unapproved");

        vm.expectEmit(true, true, false, true, address(registry));
        emit IComputeInstructionRegistry.ComputeInstructionUpdated(id, dlpId, true);
        _approve(dlpOwner, id, dlpId, true);
        assertTrue(registry.isApproved(id, dlpId), "approved");

        vm.expectEmit(true, true, false, true, address(registry));
        emit IComputeInstructionRegistry.ComputeInstructionUpdated(id, dlpId, false);
        _approve(dlpOwner, id, dlpId, false);
        assertFalse(registry.isApproved(id, dlpId), "revoked");
    }

    function test_Update_NoOpEmitsNothing() public {
        uint256 id = _add(builder, HASH, URL);
        vm.recordLogs();
        _approve(dlpOwner, id, dlpId, false); // already false
        assertEq(vm.getRecordedLogs().length, 0, "no event for false -> false");

        _approve(dlpOwner, id, dlpId, true);
        vm.recordLogs();
        _approve(dlpOwner, id, dlpId, true); // already true
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(logs.length, 0, "no event for true -> true");
        assertTrue(registry.isApproved(id, dlpId), "still approved");
    }

    function test_Update_RevertsForUnknownInstruction() public {
        _add(builder, HASH, URL);
        vm.expectRevert(abi.encodeWithSelector(IComputeInstructionRegistry.ComputeInstructionNotFound.selector, 0));
        _approve(dlpOwner, 0, dlpId, true);
        vm.expectRevert(abi.encodeWithSelector(IComputeInstructionRegistry.ComputeInstructionNotFound.selector, 2));
        _approve(dlpOwner, 2, dlpId, true);
    }

    function test_Update_UnknownDlpIsNotDlpOwner() public {
        uint256 id = _add(builder, HASH, URL);
        // As Vana's: an unknown DLP has no owner, and the owner check comes before the id check.
        vm.expectRevert(IComputeInstructionRegistry.NotDlpOwner.selector);
        _approve(dlpOwner, 99, 99, true);
        vm.expectRevert(IComputeInstructionRegistry.NotDlpOwner.selector);
        _approve(dlpOwner, id, 99, true);
    }

    function test_Update_RevertsForNonOwner() public {
        uint256 id = _add(builder, HASH, URL);
        // The instruction's owner, another DLP's owner and the admin are all refused.
        vm.expectRevert(IComputeInstructionRegistry.NotDlpOwner.selector);
        _approve(builder, id, dlpId, true);
        vm.expectRevert(IComputeInstructionRegistry.NotDlpOwner.selector);
        _approve(otherDlpOwner, id, dlpId, true);
        vm.expectRevert(IComputeInstructionRegistry.NotDlpOwner.selector);
        _approve(admin, id, dlpId, true);
        assertFalse(registry.isApproved(id, dlpId), "unchanged");
    }

    function test_Update_FollowsDlpOwnershipTransfer() public {
        uint256 id = _add(builder, HASH, URL);
        vm.prank(dlpOwner);
        dlps.transferDlpOwnership(dlpId, stranger);

        vm.expectRevert(IComputeInstructionRegistry.NotDlpOwner.selector);
        _approve(dlpOwner, id, dlpId, true);
        _approve(stranger, id, dlpId, true);
        assertTrue(registry.isApproved(id, dlpId), "new owner approved");
    }

    // ---- pause / roles / upgrade ------------------------------------------------------

    function test_Pause_BlocksWrites() public {
        uint256 id = _add(builder, HASH, URL);
        vm.prank(admin);
        registry.pause();
        vm.expectRevert(_enforcedPause());
        _add(builder, HASH, URL);
        vm.expectRevert(_enforcedPause());
        _approve(dlpOwner, id, dlpId, true);

        vm.prank(admin);
        registry.unpause();
        _approve(dlpOwner, id, dlpId, true);
        assertTrue(registry.isApproved(id, dlpId), "works after unpause");
    }

    function test_Roles_OnlyMaintainerPausesAndRelinks() public {
        bytes32 role = registry.MAINTAINER_ROLE();
        vm.expectRevert(_unauthorized(stranger, role));
        vm.prank(stranger);
        registry.pause();
        vm.expectRevert(_unauthorized(stranger, role));
        vm.prank(stranger);
        registry.updateDlpRegistry(address(dlps));
    }

    function test_UpdateDlpRegistry_SwitchesAndEmits() public {
        DLPRegistry replacement = _deployDlpRegistry(admin);
        vm.expectEmit(true, false, false, true, address(registry));
        emit IComputeInstructionRegistry.DlpRegistryUpdated(address(replacement));
        vm.prank(admin);
        registry.updateDlpRegistry(address(replacement));
        assertEq(registry.dlpRegistry(), address(replacement), "switched");

        // DLP 1 does not exist in the new registry.
        uint256 id = _add(builder, HASH, URL);
        vm.expectRevert(IComputeInstructionRegistry.NotDlpOwner.selector);
        _approve(dlpOwner, id, dlpId, true);

        vm.expectRevert(abi.encodeWithSelector(IManaged.InvalidAccount.selector, address(0)));
        vm.prank(admin);
        registry.updateDlpRegistry(address(0));
    }

    function test_Upgrade_OnlyAdmin() public {
        address v2 = address(new ComputeInstructionRegistryV2());
        vm.expectRevert(_unauthorized(stranger, bytes32(0)));
        vm.prank(stranger);
        registry.upgradeToAndCall(v2, "");
    }

    function test_Upgrade_KeepsInstructionsAndApprovals() public {
        uint256 id = _add(builder, HASH, URL);
        _approve(dlpOwner, id, dlpId, true);
        address v2 = address(new ComputeInstructionRegistryV2());
        vm.prank(admin);
        registry.upgradeToAndCall(v2, "");

        assertEq(registry.version(), 2, "upgraded");
        assertEq(ComputeInstructionRegistryV2(address(registry)).upgradedMarker(), 2, "new function");
        assertTrue(registry.isApproved(id, dlpId), "approval kept");
        IComputeInstructionRegistry.ComputeInstructionInfo memory info = registry.instructions(id);
        (bytes32 hash, string memory url) = (info.hash, info.url);
        assertEq(hash, HASH, "hash kept");
        assertEq(url, URL, "url kept");
        assertEq(registry.dlpRegistry(), address(dlps), "link kept");
    }

    function test_Storage_UsesErc7201Slot() public view {
        bytes32 slot = _erc7201("computetodata.storage.ComputeInstructionRegistry");
        // dlpRegistry is the struct's first member.
        assertEq(address(uint160(uint256(vm.load(address(registry), slot)))), address(dlps), "link at slot");
    }

    // ---- fuzz ---------------------------------------------------------------------------

    /// An approval for one (instruction, DLP) pair never shows up for another pair.
    function testFuzz_ApprovalDoesNotLeak(uint256 instructionSeed, uint256 dlpSeed, uint256 probeI, uint256 probeD)
        public
    {
        for (uint256 i = 0; i < 3; ++i) {
            _add(builder, keccak256(abi.encode(i)), URL);
        }
        uint256 instructionId = bound(instructionSeed, 1, 3);
        uint256 dlp = bound(dlpSeed, 1, 2);
        _approve(dlp == dlpId ? dlpOwner : otherDlpOwner, instructionId, dlp, true);

        uint256 otherI = bound(probeI, 0, 4);
        uint256 otherD = bound(probeD, 0, 3);
        bool same = otherI == instructionId && otherD == dlp;
        assertEq(registry.isApproved(otherI, otherD), same, "approval only for its own pair");
    }

    function testFuzz_Add_StoresAnyHashAndUrl(bytes32 hash, string calldata url, address caller) public {
        vm.assume(hash != bytes32(0) && bytes(url).length > 0);
        uint256 id = _add(caller, hash, url);
        IComputeInstructionRegistry.ComputeInstructionInfo memory info = registry.instructions(id);
        (bytes32 storedHash, address owner, string memory storedUrl) = (info.hash, info.owner, info.url);
        assertEq(storedHash, hash, "hash");
        assertEq(owner, caller, "owner");
        assertEq(storedUrl, url, "url");
    }
}
