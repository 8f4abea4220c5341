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
        registry.registerDlp(_registration(owner, name));
        return registry.dlpsCount();
    }

    function _info(address dlpAddress, address owner, address treasury, string memory name)
        private
        pure
        returns (IDLPRegistry.DlpRegistration memory)
    {
        return IDLPRegistry.DlpRegistration(dlpAddress, owner, payable(treasury), name, "icon", "site", "meta");
    }

    function _assertStatus(uint256 dlpId, IDLPRegistry.DlpStatus status, string memory what) private view {
        assertEq(uint256(registry.dlps(dlpId).status), uint256(status), what);
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
        vm.expectRevert(abi.encodeWithSelector(IManaged.InvalidAccount.selector, address(0)));
        _proxy(implementation, abi.encodeCall(DLPRegistry.initialize, (address(0))));
    }

    // ---- registerDlp ------------------------------------------------------

    function test_RegisterDlp_IdsFromOneStoresInfoAndEmits() public {
        address dlpContract = makeAddr("dlpContract");
        vm.roll(77);
        vm.expectEmit(true, true, false, true, address(registry));
        emit IDLPRegistry.DlpRegistered(1, dlpContract, bob, alice, "weather", "icon", "site", "meta");
        vm.expectEmit(true, false, false, true, address(registry));
        emit IDLPRegistry.DlpStatusUpdated(1, IDLPRegistry.DlpStatus.Registered);
        vm.prank(stranger);
        registry.registerDlp(_info(dlpContract, bob, alice, "weather"));
        uint256 second = _register(alice, "health", alice);

        assertEq(second, 2, "second id");
        assertEq(registry.dlpsCount(), 2, "count");
        IDLPRegistry.DlpInfo memory dlp = registry.dlps(1);
        assertEq(dlp.id, 1, "id");
        assertEq(dlp.dlpAddress, dlpContract, "dlp address");
        assertEq(dlp.ownerAddress, bob, "owner");
        assertEq(dlp.treasuryAddress, alice, "treasury");
        assertEq(dlp.name, "weather", "name");
        assertEq(dlp.metadata, "meta", "metadata");
        assertEq(dlp.registrationBlockNumber, 77, "block");
        assertEq(dlp.depositAmount, 0, "deposit");
        _assertStatus(1, IDLPRegistry.DlpStatus.Registered, "status");
        assertEq(registry.dlpOwner(2), alice, "dlpOwner");
        assertEq(registry.dlpIds(dlpContract), 1, "by address");
        assertEq(registry.dlpsByAddress(dlpContract).ownerAddress, bob, "record by address");
        assertEq(registry.dlpNameToId("health"), 2, "by name");
        assertEq(registry.dlpsByName("health").id, 2, "record by name");
        assertEq(registry.dlpIds(address(0)), 0, "a zero dlpAddress is not indexed");
    }

    function test_RegisterDlp_RevertsOnZeroOwnerOrTreasury() public {
        vm.expectRevert(IDLPRegistry.InvalidAddress.selector);
        registry.registerDlp(_info(address(0), address(0), alice, "weather"));
        vm.expectRevert(IDLPRegistry.InvalidAddress.selector);
        registry.registerDlp(_info(address(0), alice, address(0), "weather"));
        assertEq(registry.dlpsCount(), 0, "nothing stored");
    }

    function test_RegisterDlp_RevertsOnShortOrTakenName() public {
        vm.expectRevert(IDLPRegistry.InvalidName.selector);
        _register(alice, "", alice);
        vm.expectRevert(IDLPRegistry.InvalidName.selector);
        _register(alice, " a b c ", alice);
        _register(alice, "a b c d", alice);
        vm.expectRevert(IDLPRegistry.InvalidName.selector);
        _register(bob, "a b c d", bob);
    }

    function test_RegisterDlp_DlpAddressOnceButZeroMayRepeat() public {
        address dlpContract = makeAddr("dlpContract");
        registry.registerDlp(_info(dlpContract, alice, alice, "first"));
        vm.expectRevert(IDLPRegistry.InvalidDlpStatus.selector);
        registry.registerDlp(_info(dlpContract, alice, alice, "second"));
        _register(alice, "third", alice);
        assertEq(_register(alice, "fourth", alice), 3, "zero dlpAddress twice");
    }

    function test_RegisterDlp_DepositGoesToTreasury() public {
        address treasury = makeAddr("treasury");
        vm.startPrank(admin);
        registry.updateTreasury(treasury);
        vm.expectEmit(false, false, false, true, address(registry));
        emit IDLPRegistry.DlpRegistrationDepositAmountUpdated(1 ether);
        registry.updateDlpRegistrationDepositAmount(1 ether);
        vm.stopPrank();
        assertEq(registry.treasury(), treasury, "treasury");
        assertEq(registry.dlpRegistrationDepositAmount(), 1 ether, "deposit");
        vm.deal(alice, 3 ether);

        vm.expectRevert(IDLPRegistry.InvalidDepositAmount.selector);
        vm.prank(alice);
        registry.registerDlp{value: 1 ether - 1}(_info(address(0), alice, alice, "weather"));
        vm.prank(alice);
        registry.registerDlp{value: 2 ether}(_info(address(0), alice, alice, "weather"));
        assertEq(treasury.balance, 2 ether, "treasury paid");
        assertEq(registry.dlps(1).depositAmount, 2 ether, "deposit recorded");
    }

    function test_RegisterDlp_RevertsWhenTreasuryRefuses() public {
        vm.startPrank(admin);
        registry.updateTreasury(address(registry)); // no receive(): refuses value
        registry.updateDlpRegistrationDepositAmount(1);
        vm.stopPrank();
        vm.deal(alice, 1);
        vm.expectRevert(IDLPRegistry.TransferFailed.selector);
        vm.prank(alice);
        registry.registerDlp{value: 1}(_info(address(0), alice, alice, "weather"));
    }

    // ---- updateDlp / deregisterDlp -------------------------------------------

    function test_UpdateDlp_RewritesAndEmits() public {
        address dlpContract = makeAddr("dlpContract");
        vm.prank(alice);
        registry.registerDlp(_info(dlpContract, alice, alice, "weather"));
        vm.expectEmit(true, true, false, true, address(registry));
        emit IDLPRegistry.DlpUpdated(1, dlpContract, bob, stranger, "climate", "icon", "site", "meta");
        vm.prank(alice);
        registry.updateDlp(1, _info(dlpContract, bob, stranger, "climate"));

        IDLPRegistry.DlpInfo memory dlp = registry.dlps(1);
        assertEq(dlp.ownerAddress, bob, "owner");
        assertEq(dlp.treasuryAddress, stranger, "treasury");
        assertEq(registry.dlpNameToId("climate"), 1, "new name");
        assertEq(registry.dlpNameToId("weather"), 0, "old name freed");
        _register(alice, "weather", alice);
    }

    function test_UpdateDlp_Reverts() public {
        address dlpContract = makeAddr("dlpContract");
        vm.prank(alice);
        registry.registerDlp(_info(dlpContract, alice, alice, "weather"));
        _register(bob, "health", bob);
        vm.startPrank(alice);
        vm.expectRevert(IDLPRegistry.NotDlpOwner.selector);
        registry.updateDlp(2, _info(address(0), alice, alice, "health"));
        vm.expectRevert(IDLPRegistry.NotDlpOwner.selector);
        registry.updateDlp(9, _info(address(0), alice, alice, "other"));
        vm.expectRevert(IDLPRegistry.InvalidAddress.selector);
        registry.updateDlp(1, _info(dlpContract, alice, address(0), "weather"));
        vm.expectRevert(IDLPRegistry.DlpAddressCannotBeChanged.selector);
        registry.updateDlp(1, _info(address(0), alice, alice, "weather"));
        vm.expectRevert(IDLPRegistry.InvalidName.selector);
        registry.updateDlp(1, _info(dlpContract, alice, alice, "health"));
        vm.stopPrank();
    }

    function test_Deregister_OnceByOwner() public {
        uint256 dlpId = _register(alice, "weather", alice);
        vm.expectRevert(IDLPRegistry.NotDlpOwner.selector);
        vm.prank(bob);
        registry.deregisterDlp(dlpId);
        vm.expectEmit(true, false, false, true, address(registry));
        emit IDLPRegistry.DlpStatusUpdated(dlpId, IDLPRegistry.DlpStatus.Deregistered);
        vm.prank(alice);
        registry.deregisterDlp(dlpId);
        _assertStatus(dlpId, IDLPRegistry.DlpStatus.Deregistered, "deregistered");
        vm.expectRevert(IDLPRegistry.InvalidDlpStatus.selector);
        vm.prank(alice);
        registry.deregisterDlp(dlpId);
    }

    // ---- maintainer bookkeeping -----------------------------------------------

    function test_Eligibility_FollowsTokenAndVerification() public {
        uint256 dlpId = _register(alice, "weather", alice);
        address token = makeAddr("token");
        vm.startPrank(admin);
        registry.updateDlpToken(dlpId, token, 5);
        _assertStatus(dlpId, IDLPRegistry.DlpStatus.Registered, "not verified yet");
        vm.expectEmit(true, false, false, true, address(registry));
        emit IDLPRegistry.DlpStatusUpdated(dlpId, IDLPRegistry.DlpStatus.Eligible);
        registry.updateDlpVerificationBlock(dlpId, 10);
        assertTrue(registry.isEligibleDlp(dlpId), "eligible");
        assertEq(registry.eligibleDlpsListValues(), ids(dlpId), "list");
        assertEq(registry.eligibleDlpsListCount(), 1, "count");
        assertEq(registry.eligibleDlpsListAt(0), dlpId, "at");
        registry.unverifyDlp(dlpId);
        _assertStatus(dlpId, IDLPRegistry.DlpStatus.Registered, "unverified");
        assertEq(registry.eligibleDlpsListCount(), 0, "left the list");
        registry.updateDlpTokenAndVerification(dlpId, token, 6, 11);
        assertTrue(registry.isEligibleDlp(dlpId), "eligible again");
        assertEq(registry.dlps(dlpId).lpTokenId, 6, "lp token id");
        vm.stopPrank();
        vm.prank(alice);
        registry.deregisterDlp(dlpId);
        assertFalse(registry.isEligibleDlp(dlpId), "deregistered leaves the list");
    }

    function test_MaintainerSetters_OnlyMaintainer() public {
        bytes32 role = registry.MAINTAINER_ROLE();
        vm.startPrank(stranger);
        vm.expectRevert(_unauthorized(stranger, role));
        registry.updateTreasury(stranger);
        vm.expectRevert(_unauthorized(stranger, role));
        registry.updateVanaEpoch(stranger);
        vm.expectRevert(_unauthorized(stranger, role));
        registry.updateDlpRegistrationDepositAmount(0);
        vm.expectRevert(_unauthorized(stranger, role));
        registry.updateDlpVerificationBlock(1, 1);
        vm.expectRevert(_unauthorized(stranger, role));
        registry.unverifyDlp(1);
        vm.expectRevert(_unauthorized(stranger, role));
        registry.updateDlpToken(1, stranger, 1);
        vm.expectRevert(_unauthorized(stranger, role));
        registry.updateDlpTokenAndVerification(1, stranger, 1, 1);
        vm.stopPrank();
        vm.prank(admin);
        registry.updateVanaEpoch(bob);
        assertEq(registry.vanaEpoch(), bob, "epoch link stored");
    }

    // ---- views --------------------------------------------------------------

    function test_Dlps_ZeroTupleForUnknownId() public {
        _register(alice, "weather", alice);
        IDLPRegistry.DlpInfo memory dlp = registry.dlps(2);
        assertEq(dlp.id, 0, "id");
        assertEq(dlp.ownerAddress, address(0), "owner");
        assertEq(dlp.name, "", "name");
        assertEq(dlp.registrationBlockNumber, 0, "block");
        assertEq(registry.dlpsByName("nobody").id, 0, "unknown name");
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
        vm.expectEmit(true, true, false, true, address(registry));
        emit IDLPRegistry.DlpUpdated(dlpId, address(0), bob, alice, "weather", "", "", "");
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
        vm.expectRevert(_enforcedPause());
        vm.prank(alice);
        registry.updateDlp(dlpId, _registration(alice, "renamed"));
        vm.expectRevert(_enforcedPause());
        vm.prank(alice);
        registry.deregisterDlp(dlpId);
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
        _register(alice, "first", alice);
        _register(alice, "second", alice);
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

    function testFuzz_RegisterDlp_StoresAnyLongNameAndOwner(string calldata suffix, address owner) public {
        vm.assume(owner != address(0));
        string memory name = string.concat("dlp-", suffix);
        uint256 dlpId = _register(alice, name, owner);
        IDLPRegistry.DlpInfo memory dlp = registry.dlps(dlpId);
        assertEq(dlp.ownerAddress, owner, "owner");
        assertEq(dlp.name, name, "name");
        assertEq(registry.dlpNameToId(name), dlpId, "name index");
    }
}
