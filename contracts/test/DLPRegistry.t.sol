// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Initializable} from "@openzeppelin/contracts-upgradeable/proxy/utils/Initializable.sol";
import {UUPSUpgradeable} from "@openzeppelin/contracts-upgradeable/proxy/utils/UUPSUpgradeable.sol";

import {DLPRegistry} from "../src/DLPRegistry.sol";
import {IDLPRegistry} from "../src/interfaces/IDLPRegistry.sol";
import {IManaged} from "../src/interfaces/IManaged.sol";
import {Deployments} from "./utils/Deployments.sol";
import {DLPRegistryV2} from "./mocks/UpgradeMocks.sol";

contract DLPRegistryTest is Deployments {
    DLPRegistry private registry;
    address private admin;
    address private alice;
    address private bob;
    address private stranger;

    function setUp() public {
        admin = makeAddr("admin");
        alice = makeAddr("alice");
        bob = makeAddr("bob");
        stranger = makeAddr("stranger");
        registry = _deployDlpRegistry(admin);
    }

    function _register(address caller, string memory name, address owner) private returns (uint256) {
        vm.prank(caller);
        return registry.registerDlp(name, owner);
    }

    // ---- initialize -------------------------------------------------------

    function test_Initialize_GrantsAdminBothRolesAndVersion() public view {
        assertTrue(registry.hasRole(registry.DEFAULT_ADMIN_ROLE(), admin), "admin role");
        assertTrue(registry.hasRole(registry.MAINTAINER_ROLE(), admin), "maintainer role");
        assertEq(registry.MAINTAINER_ROLE(), keccak256("MAINTAINER_ROLE"), "role id");
        assertFalse(registry.hasRole(registry.DEFAULT_ADMIN_ROLE(), address(this)), "deployer not admin");
        assertEq(registry.version(), 1, "version");
        assertEq(registry.dlpsCount(), 0, "empty");
        assertFalse(registry.paused(), "not paused");
    }

    function test_Initialize_CannotRunTwice() public {
        vm.expectRevert(Initializable.InvalidInitialization.selector);
        registry.initialize(stranger);
    }

    function test_Initialize_ImplementationIsLocked() public {
        DLPRegistry implementation = DLPRegistry(_implementationOf(address(registry)));
        vm.expectRevert(Initializable.InvalidInitialization.selector);
        implementation.initialize(stranger);
    }

    function test_Initialize_RejectsZeroAdmin() public {
        address implementation = address(new DLPRegistry());
        vm.expectRevert(abi.encodeWithSelector(IManaged.InvalidAddress.selector, address(0)));
        _proxy(implementation, abi.encodeCall(DLPRegistry.initialize, (address(0))));
    }

    // ---- registerDlp ------------------------------------------------------

    function test_RegisterDlp_IdsFromOneAndEmits() public {
        vm.warp(1_700_000_000);
        vm.expectEmit(true, true, false, true, address(registry));
        emit IDLPRegistry.DlpRegistered(1, bob, "weather");
        uint256 first = _register(alice, "weather", bob);
        uint256 second = _register(alice, "health", alice);

        assertEq(first, 1, "first id");
        assertEq(second, 2, "second id");
        assertEq(registry.dlpsCount(), 2, "count");
        (uint256 id, address owner, string memory name, uint256 registeredAt) = registry.dlps(1);
        assertEq(id, 1, "id");
        assertEq(owner, bob, "owner");
        assertEq(name, "weather", "name");
        assertEq(registeredAt, 1_700_000_000, "registeredAt");
        assertEq(registry.dlpOwner(2), alice, "dlpOwner");
    }

    function test_RegisterDlp_ZeroOwnerMeansCaller() public {
        vm.expectEmit(true, true, false, true, address(registry));
        emit IDLPRegistry.DlpRegistered(1, alice, "mine");
        uint256 dlpId = _register(alice, "mine", address(0));
        assertEq(registry.dlpOwner(dlpId), alice, "caller owns");
    }

    function test_RegisterDlp_RevertsOnEmptyName() public {
        vm.expectRevert(IDLPRegistry.EmptyName.selector);
        _register(alice, "", alice);
        assertEq(registry.dlpsCount(), 0, "nothing stored");
    }

    // ---- views --------------------------------------------------------------

    function test_Dlps_ZeroTupleForUnknownId() public {
        _register(alice, "weather", alice);
        (uint256 id, address owner, string memory name, uint256 registeredAt) = registry.dlps(2);
        assertEq(id, 0, "id");
        assertEq(owner, address(0), "owner");
        assertEq(name, "", "name");
        assertEq(registeredAt, 0, "registeredAt");
    }

    function test_DlpOwner_RevertsDlpNotFound() public {
        _register(alice, "weather", alice);
        vm.expectRevert(abi.encodeWithSelector(IDLPRegistry.DlpNotFound.selector, 0));
        registry.dlpOwner(0);
        vm.expectRevert(abi.encodeWithSelector(IDLPRegistry.DlpNotFound.selector, 2));
        registry.dlpOwner(2);
    }

    // ---- transferDlpOwnership ----------------------------------------------

    function test_Transfer_MovesOwnershipAndEmits() public {
        uint256 dlpId = _register(alice, "weather", alice);
        vm.expectEmit(true, true, true, true, address(registry));
        emit IDLPRegistry.DlpOwnershipTransferred(dlpId, alice, bob);
        vm.prank(alice);
        registry.transferDlpOwnership(dlpId, bob);

        assertEq(registry.dlpOwner(dlpId), bob, "new owner");
        vm.expectRevert(IDLPRegistry.NotDlpOwner.selector);
        vm.prank(alice);
        registry.transferDlpOwnership(dlpId, alice);
    }

    function test_Transfer_RevertsForNonOwner() public {
        uint256 dlpId = _register(alice, "weather", alice);
        vm.expectRevert(IDLPRegistry.NotDlpOwner.selector);
        vm.prank(stranger);
        registry.transferDlpOwnership(dlpId, stranger);
        // Not even the admin may take a DLP.
        vm.expectRevert(IDLPRegistry.NotDlpOwner.selector);
        vm.prank(admin);
        registry.transferDlpOwnership(dlpId, admin);
        assertEq(registry.dlpOwner(dlpId), alice, "unchanged");
    }

    function test_Transfer_RevertsOnZeroNewOwner() public {
        uint256 dlpId = _register(alice, "weather", alice);
        vm.expectRevert(abi.encodeWithSelector(IDLPRegistry.InvalidOwner.selector, address(0)));
        vm.prank(alice);
        registry.transferDlpOwnership(dlpId, address(0));
    }

    function test_Transfer_RevertsForUnknownDlp() public {
        vm.expectRevert(abi.encodeWithSelector(IDLPRegistry.DlpNotFound.selector, 7));
        vm.prank(alice);
        registry.transferDlpOwnership(7, bob);
    }

    // ---- pause / roles / upgrade -------------------------------------------

    function test_Pause_BlocksWritesUntilUnpaused() public {
        uint256 dlpId = _register(alice, "weather", alice);
        vm.prank(admin);
        registry.pause();

        vm.expectRevert(_enforcedPause());
        _register(alice, "other", alice);
        vm.expectRevert(_enforcedPause());
        vm.prank(alice);
        registry.transferDlpOwnership(dlpId, bob);
        assertEq(registry.dlpOwner(dlpId), alice, "reads still work");

        vm.prank(admin);
        registry.unpause();
        assertEq(_register(alice, "other", alice), 2, "writes resume");
    }

    function test_Pause_OnlyMaintainer() public {
        bytes32 role = registry.MAINTAINER_ROLE();
        vm.expectRevert(_unauthorized(stranger, role));
        vm.prank(stranger);
        registry.pause();

        vm.prank(admin);
        registry.pause();
        vm.expectRevert(_unauthorized(stranger, role));
        vm.prank(stranger);
        registry.unpause();

        // A maintainer who is not admin may pause too.
        vm.startPrank(admin);
        registry.unpause();
        registry.grantRole(role, bob);
        vm.stopPrank();
        vm.prank(bob);
        registry.pause();
        assertTrue(registry.paused(), "maintainer paused");
    }

    function test_Upgrade_OnlyAdmin() public {
        address v2 = address(new DLPRegistryV2());
        // A maintainer is not enough.
        bytes32 maintainer = registry.MAINTAINER_ROLE();
        bytes32 adminRole = registry.DEFAULT_ADMIN_ROLE();
        vm.prank(admin);
        registry.grantRole(maintainer, bob);
        vm.expectRevert(_unauthorized(bob, adminRole));
        vm.prank(bob);
        registry.upgradeToAndCall(v2, "");
        assertEq(registry.version(), 1, "not upgraded");
    }

    function test_Upgrade_KeepsState() public {
        uint256 dlpId = _register(alice, "weather", bob);
        address v2 = address(new DLPRegistryV2());
        vm.prank(admin);
        UUPSUpgradeable(address(registry)).upgradeToAndCall(v2, "");

        assertEq(_implementationOf(address(registry)), v2, "implementation slot");
        assertEq(registry.version(), 2, "new code");
        assertEq(DLPRegistryV2(address(registry)).upgradedMarker(), 2, "new function");
        assertEq(registry.dlpOwner(dlpId), bob, "owner kept");
        assertEq(registry.dlpsCount(), 1, "count kept");
        assertTrue(registry.hasRole(registry.DEFAULT_ADMIN_ROLE(), admin), "roles kept");
        assertEq(_register(alice, "next", alice), 2, "ids continue");
    }

    function test_Storage_UsesErc7201Slot() public {
        _register(alice, "a", alice);
        _register(alice, "b", alice);
        bytes32 slot = _erc7201("computetodata.storage.DLPRegistry");
        // dlpsCount is the struct's first member.
        assertEq(uint256(vm.load(address(registry), slot)), 2, "count at namespaced slot");
    }

    // ---- fuzz -----------------------------------------------------------------

    function testFuzz_TransferChainEndsWithLastOwner(uint256 hops, uint256 seed) public {
        hops = bound(hops, 1, 8);
        uint256 dlpId = _register(alice, "weather", alice);
        address current = alice;
        for (uint256 i = 0; i < hops; ++i) {
            address next = vm.addr(bound(uint256(keccak256(abi.encode(seed, i))), 1, 1e30));
            vm.prank(current);
            registry.transferDlpOwnership(dlpId, next);
            current = next;
        }
        assertEq(registry.dlpOwner(dlpId), current, "last owner");
    }

    function testFuzz_RegisterDlp_StoresAnyNameAndOwner(string calldata name, address owner) public {
        vm.assume(bytes(name).length > 0);
        uint256 dlpId = _register(alice, name, owner);
        (, address stored, string memory storedName,) = registry.dlps(dlpId);
        assertEq(stored, owner == address(0) ? alice : owner, "owner");
        assertEq(storedName, name, "name");
    }
}
