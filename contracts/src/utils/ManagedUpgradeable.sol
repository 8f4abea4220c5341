// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Initializable} from "@openzeppelin/contracts-upgradeable/proxy/utils/Initializable.sol";
import {UUPSUpgradeable} from "@openzeppelin/contracts-upgradeable/proxy/utils/UUPSUpgradeable.sol";
import {AccessControlUpgradeable} from "@openzeppelin/contracts-upgradeable/access/AccessControlUpgradeable.sol";
import {PausableUpgradeable} from "@openzeppelin/contracts-upgradeable/utils/PausableUpgradeable.sol";

import {IManaged} from "../interfaces/IManaged.sol";

/**
 * @title ManagedUpgradeable
 * @notice The administration every registry shares: UUPS upgrades by
 * `DEFAULT_ADMIN_ROLE`, pause/unpause by `MAINTAINER_ROLE`.
 * @dev Holds no storage of its own beyond OpenZeppelin's namespaced structs.
 */
abstract contract ManagedUpgradeable is
    Initializable,
    UUPSUpgradeable,
    AccessControlUpgradeable,
    PausableUpgradeable,
    IManaged
{
    /// @inheritdoc IManaged
    bytes32 public constant MAINTAINER_ROLE = keccak256("MAINTAINER_ROLE");

    /// @custom:oz-upgrades-unsafe-allow constructor
    constructor() {
        _disableInitializers();
    }

    /// @dev Grants `admin` both roles; call once from the child's `initialize`.
    // solhint-disable-next-line func-name-mixedcase
    function __Managed_init(address admin) internal onlyInitializing {
        if (admin == address(0)) revert InvalidAccount(admin);
        __AccessControl_init();
        __Pausable_init();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(MAINTAINER_ROLE, admin);
    }

    /// @inheritdoc IManaged
    function pause() external onlyRole(MAINTAINER_ROLE) {
        _pause();
    }

    /// @inheritdoc IManaged
    function unpause() external onlyRole(MAINTAINER_ROLE) {
        _unpause();
    }

    /// @dev Linked registries must be deployed contracts, so a typo cannot brick lookups.
    function _requireContract(address account) internal view {
        if (account.code.length == 0) revert InvalidAccount(account);
    }

    /// @dev Only the admin may upgrade (works while paused, to ship a fix).
    function _authorizeUpgrade(address) internal override onlyRole(DEFAULT_ADMIN_ROLE) {}
}
