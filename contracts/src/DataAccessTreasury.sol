// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ReentrancyGuardUpgradeable} from "@openzeppelin/contracts-upgradeable/utils/ReentrancyGuardUpgradeable.sol";

import {ManagedUpgradeable} from "./utils/ManagedUpgradeable.sol";
import {IManaged} from "./interfaces/IManaged.sol";
import {IDataAccessTreasury} from "./interfaces/IDataAccessTreasury.sol";

/**
 * @title DataAccessTreasury
 * @notice Native and ERC-20 funds that only its custodian contract may move.
 */
contract DataAccessTreasury is ManagedUpgradeable, ReentrancyGuardUpgradeable, IDataAccessTreasury {
    using SafeERC20 for IERC20;
    using Address for address payable;

    uint256 private constant VERSION = 1;
    /// @inheritdoc IDataAccessTreasury
    bytes32 public constant CUSTODIAN_ROLE = keccak256("CUSTODIAN_ROLE");
    address private constant NATIVE = address(0);

    /// @custom:storage-location erc7201:computetodata.storage.DataAccessTreasury
    struct DataAccessTreasuryStorage {
        address custodian;
    }

    // keccak256(abi.encode(uint256(keccak256("computetodata.storage.DataAccessTreasury")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 private constant STORAGE_LOCATION = 0xc11a22b0c2999cc7cbf2c44a37e2673439d5186be2fe95aee16c49361e5a6c00;

    /**
     * @notice Sets up the proxy: `admin` gets `DEFAULT_ADMIN_ROLE` and
     * `MAINTAINER_ROLE`, `initialCustodian` gets `CUSTODIAN_ROLE`.
     *
     * Requirements:
     * - not initialized yet;
     * - `admin` is not zero (`InvalidAccount`), `initialCustodian` not zero (`ZeroAddress`).
     */
    function initialize(address admin, address initialCustodian) external initializer {
        __Managed_init(admin);
        __ReentrancyGuard_init();
        _setCustodian(initialCustodian);
    }

    /// @dev Native funds arrive by plain transfers.
    receive() external payable {}

    /// @inheritdoc IDataAccessTreasury
    function transfer(address to, address token, uint256 amount)
        external
        nonReentrant
        whenNotPaused
        onlyRole(CUSTODIAN_ROLE)
    {
        if (amount == 0) revert ZeroAmount();
        if (to == address(0)) revert ZeroAddress();
        if (token == NATIVE) payable(to).sendValue(amount);
        else IERC20(token).safeTransfer(to, amount);
        emit Transfer(to, token, amount);
    }

    /// @inheritdoc IDataAccessTreasury
    function updateCustodian(address newCustodian) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _revokeRole(CUSTODIAN_ROLE, _storage().custodian);
        _setCustodian(newCustodian);
    }

    /// @inheritdoc IDataAccessTreasury
    function custodian() external view returns (address) {
        return _storage().custodian;
    }

    /// @inheritdoc IManaged
    function version() external pure virtual returns (uint256) {
        return VERSION;
    }

    function _setCustodian(address newCustodian) private {
        if (newCustodian == address(0)) revert ZeroAddress();
        _storage().custodian = newCustodian;
        _grantRole(CUSTODIAN_ROLE, newCustodian);
        emit CustodianUpdated(newCustodian);
    }

    function _storage() private pure returns (DataAccessTreasuryStorage storage $) {
        assembly {
            $.slot := STORAGE_LOCATION
        }
    }
}
