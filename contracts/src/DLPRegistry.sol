// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ManagedUpgradeable} from "./utils/ManagedUpgradeable.sol";
import {IDLPRegistry} from "./interfaces/IDLPRegistry.sol";
import {IManaged} from "./interfaces/IManaged.sol";

/**
 * @title DLPRegistry
 * @notice DLP id -> owner and name; owners may hand their DLP over.
 */
contract DLPRegistry is ManagedUpgradeable, IDLPRegistry {
    uint256 private constant VERSION = 1;

    struct Dlp {
        address owner;
        uint64 registeredAt;
        string name;
    }

    /// @custom:storage-location erc7201:computetodata.storage.DLPRegistry
    struct DLPRegistryStorage {
        uint256 dlpsCount;
        mapping(uint256 dlpId => Dlp) dlps;
    }

    // keccak256(abi.encode(uint256(keccak256("computetodata.storage.DLPRegistry")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 private constant STORAGE_LOCATION = 0x8065231777344e86111d3694cb8dd5691b2ec800a9777fe6ee0ad45bd9a87e00;

    /**
     * @notice Sets up the proxy: `admin` gets `DEFAULT_ADMIN_ROLE` and `MAINTAINER_ROLE`.
     *
     * Requirements:
     * - not initialized yet;
     * - `admin` is not the zero address (`InvalidAddress`).
     *
     * Emits {RoleGranted} events.
     */
    function initialize(address admin) external initializer {
        __Managed_init(admin);
    }

    /// @inheritdoc IDLPRegistry
    function registerDlp(string calldata name, address owner) external whenNotPaused returns (uint256 dlpId) {
        if (bytes(name).length == 0) revert EmptyName();
        if (owner == address(0)) owner = msg.sender;
        DLPRegistryStorage storage $ = _storage();
        dlpId = ++$.dlpsCount;
        $.dlps[dlpId] = Dlp({owner: owner, registeredAt: uint64(block.timestamp), name: name});
        emit DlpRegistered(dlpId, owner, name);
    }

    /// @inheritdoc IDLPRegistry
    function transferDlpOwnership(uint256 dlpId, address newOwner) external whenNotPaused {
        Dlp storage dlp = _existing(dlpId);
        address previousOwner = dlp.owner;
        if (msg.sender != previousOwner) revert NotDlpOwner();
        if (newOwner == address(0)) revert InvalidOwner(newOwner);
        dlp.owner = newOwner;
        emit DlpOwnershipTransferred(dlpId, previousOwner, newOwner);
    }

    /// @inheritdoc IDLPRegistry
    function dlps(uint256 dlpId)
        external
        view
        returns (uint256 id, address owner, string memory name, uint256 registeredAt)
    {
        Dlp storage dlp = _storage().dlps[dlpId];
        if (dlp.owner == address(0)) return (0, address(0), "", 0);
        return (dlpId, dlp.owner, dlp.name, dlp.registeredAt);
    }

    /// @inheritdoc IDLPRegistry
    function dlpOwner(uint256 dlpId) external view returns (address) {
        return _existing(dlpId).owner;
    }

    /// @inheritdoc IDLPRegistry
    function dlpsCount() external view returns (uint256) {
        return _storage().dlpsCount;
    }

    /// @inheritdoc IManaged
    function version() external pure virtual returns (uint256) {
        return VERSION;
    }

    /// @dev A registered DLP always has an owner, so a zero owner means unknown.
    function _existing(uint256 dlpId) private view returns (Dlp storage dlp) {
        dlp = _storage().dlps[dlpId];
        if (dlp.owner == address(0)) revert DlpNotFound(dlpId);
    }

    function _storage() private pure returns (DLPRegistryStorage storage $) {
        assembly {
            $.slot := STORAGE_LOCATION
        }
    }
}
