// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EnumerableSet} from "@openzeppelin/contracts/utils/structs/EnumerableSet.sol";

import {ManagedUpgradeable} from "./utils/ManagedUpgradeable.sol";
import {IDLPRegistry} from "./interfaces/IDLPRegistry.sol";
import {IManaged} from "./interfaces/IManaged.sol";

/**
 * @title DLPRegistry
 * @notice DLP id -> Vana's `DlpInfo` (owner, treasury, name, ...). Owners
 * update or hand over their DLP; the maintainer keeps Vana's verification and
 * token bookkeeping, which decides eligibility.
 */
contract DLPRegistry is ManagedUpgradeable, IDLPRegistry {
    using EnumerableSet for EnumerableSet.UintSet;

    uint256 private constant VERSION = 1;
    /// @dev Vana's rule: a name needs more than three non-space characters.
    uint256 private constant MIN_NAME_CHARACTERS = 4;

    /// @custom:storage-location erc7201:computetodata.storage.DLPRegistry
    struct DLPRegistryStorage {
        uint256 dlpsCount;
        mapping(uint256 dlpId => DlpInfo) dlps;
        mapping(address dlpAddress => uint256 dlpId) dlpIds;
        mapping(string name => uint256 dlpId) dlpNameToId;
        EnumerableSet.UintSet eligibleDlps;
        uint256 registrationDepositAmount;
        address treasury;
        address vanaEpoch;
    }

    // keccak256(abi.encode(uint256(keccak256("computetodata.storage.DLPRegistry")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 private constant STORAGE_LOCATION = 0x8065231777344e86111d3694cb8dd5691b2ec800a9777fe6ee0ad45bd9a87e00;

    /**
     * @notice Sets up the proxy: `admin` gets `DEFAULT_ADMIN_ROLE` and `MAINTAINER_ROLE`.
     * The registration deposit starts at 0 and the treasury unset.
     *
     * Requirements:
     * - not initialized yet;
     * - `admin` is not the zero address (`InvalidAccount`).
     *
     * Emits {RoleGranted} events.
     */
    function initialize(address admin) external initializer {
        __Managed_init(admin);
    }

    /// @inheritdoc IDLPRegistry
    function registerDlp(DlpRegistration calldata info) external payable whenNotPaused {
        DLPRegistryStorage storage $ = _storage();
        if (info.ownerAddress == address(0) || info.treasuryAddress == address(0)) revert InvalidAddress();
        if (info.dlpAddress != address(0) && $.dlpIds[info.dlpAddress] != 0) revert InvalidDlpStatus();
        if (!_isFreeValidName($, info.name)) revert InvalidName();
        if (msg.value < $.registrationDepositAmount) revert InvalidDepositAmount();

        uint256 dlpId = ++$.dlpsCount;
        DlpInfo storage dlp = $.dlps[dlpId];
        dlp.id = dlpId;
        dlp.dlpAddress = info.dlpAddress;
        dlp.registrationBlockNumber = block.number;
        dlp.depositAmount = msg.value;
        dlp.status = DlpStatus.Registered;
        _writeDetails(dlp, info);
        if (info.dlpAddress != address(0)) $.dlpIds[info.dlpAddress] = dlpId;
        $.dlpNameToId[info.name] = dlpId;
        emit DlpRegistered(
            dlpId, info.dlpAddress, info.ownerAddress, info.treasuryAddress,
            info.name, info.iconUrl, info.website, info.metadata
        );
        emit DlpStatusUpdated(dlpId, DlpStatus.Registered);

        if (msg.value > 0) {
            // solhint-disable-next-line avoid-low-level-calls
            (bool sent,) = payable($.treasury).call{value: msg.value}("");
            if (!sent) revert TransferFailed();
        }
    }

    /// @inheritdoc IDLPRegistry
    function updateDlp(uint256 dlpId, DlpRegistration calldata info) external whenNotPaused {
        DLPRegistryStorage storage $ = _storage();
        DlpInfo storage dlp = _ownedBySender($, dlpId);
        if (info.ownerAddress == address(0) || info.treasuryAddress == address(0)) revert InvalidAddress();
        if (info.dlpAddress != dlp.dlpAddress) revert DlpAddressCannotBeChanged();
        if (keccak256(bytes(info.name)) != keccak256(bytes(dlp.name))) {
            if (!_isFreeValidName($, info.name)) revert InvalidName();
            delete $.dlpNameToId[dlp.name];
            $.dlpNameToId[info.name] = dlpId;
        }
        _writeDetails(dlp, info);
        _emitUpdated(dlp);
    }

    /// @inheritdoc IDLPRegistry
    function deregisterDlp(uint256 dlpId) external whenNotPaused {
        DLPRegistryStorage storage $ = _storage();
        DlpInfo storage dlp = _ownedBySender($, dlpId);
        if (dlp.status == DlpStatus.None || dlp.status == DlpStatus.Deregistered) revert InvalidDlpStatus();
        dlp.status = DlpStatus.Deregistered;
        $.eligibleDlps.remove(dlpId);
        emit DlpStatusUpdated(dlpId, DlpStatus.Deregistered);
    }

    /// @inheritdoc IDLPRegistry
    function transferDlpOwnership(uint256 dlpId, address newOwner) external whenNotPaused {
        DlpInfo storage dlp = _existing(dlpId);
        address previousOwner = dlp.ownerAddress;
        if (msg.sender != previousOwner) revert NotDlpOwner();
        if (newOwner == address(0)) revert InvalidOwner(newOwner);
        dlp.ownerAddress = newOwner;
        emit DlpOwnershipTransferred(dlpId, previousOwner, newOwner);
        _emitUpdated(dlp);
    }

    /// @inheritdoc IDLPRegistry
    function updateDlpVerificationBlock(uint256 dlpId, uint256 verificationBlockNumber)
        external
        onlyRole(MAINTAINER_ROLE)
    {
        _setVerificationBlock(dlpId, verificationBlockNumber);
        _updateEligibility(dlpId);
    }

    /// @inheritdoc IDLPRegistry
    function unverifyDlp(uint256 dlpId) external onlyRole(MAINTAINER_ROLE) {
        _setVerificationBlock(dlpId, 0);
        _updateEligibility(dlpId);
    }

    /// @inheritdoc IDLPRegistry
    function updateDlpToken(uint256 dlpId, address tokenAddress, uint256 lpTokenId)
        external
        onlyRole(MAINTAINER_ROLE)
    {
        _setToken(dlpId, tokenAddress, lpTokenId);
        _updateEligibility(dlpId);
    }

    /// @inheritdoc IDLPRegistry
    function updateDlpTokenAndVerification(
        uint256 dlpId,
        address tokenAddress,
        uint256 lpTokenId,
        uint256 verificationBlockNumber
    ) external onlyRole(MAINTAINER_ROLE) {
        _setToken(dlpId, tokenAddress, lpTokenId);
        _setVerificationBlock(dlpId, verificationBlockNumber);
        _updateEligibility(dlpId);
    }

    /// @inheritdoc IDLPRegistry
    function updateDlpRegistrationDepositAmount(uint256 newDlpRegistrationDepositAmount)
        external
        onlyRole(MAINTAINER_ROLE)
    {
        _storage().registrationDepositAmount = newDlpRegistrationDepositAmount;
        emit DlpRegistrationDepositAmountUpdated(newDlpRegistrationDepositAmount);
    }

    /// @inheritdoc IDLPRegistry
    function updateTreasury(address newTreasuryAddress) external onlyRole(MAINTAINER_ROLE) {
        _storage().treasury = newTreasuryAddress;
    }

    /// @inheritdoc IDLPRegistry
    function updateVanaEpoch(address newVanaEpochAddress) external onlyRole(MAINTAINER_ROLE) {
        _storage().vanaEpoch = newVanaEpochAddress;
    }

    /// @inheritdoc IDLPRegistry
    function dlps(uint256 dlpId) public view returns (DlpInfo memory) {
        return _storage().dlps[dlpId];
    }

    /// @inheritdoc IDLPRegistry
    function dlpsByAddress(address dlpAddress) external view returns (DlpInfo memory) {
        // A zero address is never indexed, so it finds the zero tuple.
        return dlps(_storage().dlpIds[dlpAddress]);
    }

    /// @inheritdoc IDLPRegistry
    function dlpsByName(string calldata dlpName) external view returns (DlpInfo memory) {
        return dlps(_storage().dlpNameToId[dlpName]);
    }

    /// @inheritdoc IDLPRegistry
    function dlpIds(address dlpAddress) external view returns (uint256) {
        return _storage().dlpIds[dlpAddress];
    }

    /// @inheritdoc IDLPRegistry
    function dlpNameToId(string calldata dlpName) external view returns (uint256) {
        return _storage().dlpNameToId[dlpName];
    }

    /// @inheritdoc IDLPRegistry
    function dlpOwner(uint256 dlpId) external view returns (address) {
        return _existing(dlpId).ownerAddress;
    }

    /// @inheritdoc IDLPRegistry
    function dlpsCount() external view returns (uint256) {
        return _storage().dlpsCount;
    }

    /// @inheritdoc IDLPRegistry
    function dlpRegistrationDepositAmount() external view returns (uint256) {
        return _storage().registrationDepositAmount;
    }

    /// @inheritdoc IDLPRegistry
    function treasury() external view returns (address) {
        return _storage().treasury;
    }

    /// @inheritdoc IDLPRegistry
    function vanaEpoch() external view returns (address) {
        return _storage().vanaEpoch;
    }

    /// @inheritdoc IDLPRegistry
    function eligibleDlpsListValues() external view returns (uint256[] memory) {
        return _storage().eligibleDlps.values();
    }

    /// @inheritdoc IDLPRegistry
    function eligibleDlpsListCount() external view returns (uint256) {
        return _storage().eligibleDlps.length();
    }

    /// @inheritdoc IDLPRegistry
    function eligibleDlpsListAt(uint256 index) external view returns (uint256) {
        return _storage().eligibleDlps.at(index);
    }

    /// @inheritdoc IDLPRegistry
    function isEligibleDlp(uint256 dlpId) external view returns (bool) {
        return _storage().eligibleDlps.contains(dlpId);
    }

    /// @inheritdoc IManaged
    function version() external pure virtual returns (uint256) {
        return VERSION;
    }

    function _writeDetails(DlpInfo storage dlp, DlpRegistration calldata info) private {
        dlp.ownerAddress = info.ownerAddress;
        dlp.treasuryAddress = info.treasuryAddress;
        dlp.name = info.name;
        dlp.iconUrl = info.iconUrl;
        dlp.website = info.website;
        dlp.metadata = info.metadata;
    }

    function _emitUpdated(DlpInfo storage dlp) private {
        emit DlpUpdated(
            dlp.id, dlp.dlpAddress, dlp.ownerAddress, dlp.treasuryAddress,
            dlp.name, dlp.iconUrl, dlp.website, dlp.metadata
        );
    }

    /// @dev Like Vana's, the maintainer setters do not check that the DLP exists.
    function _setVerificationBlock(uint256 dlpId, uint256 verificationBlockNumber) private {
        _storage().dlps[dlpId].verificationBlockNumber = verificationBlockNumber;
        emit DlpVerificationBlockUpdated(dlpId, verificationBlockNumber);
    }

    function _setToken(uint256 dlpId, address tokenAddress, uint256 lpTokenId) private {
        DlpInfo storage dlp = _storage().dlps[dlpId];
        dlp.tokenAddress = tokenAddress;
        dlp.lpTokenId = lpTokenId;
        emit DlpTokenUpdated(dlpId, tokenAddress);
        emit DlpLpTokenIdUpdated(dlpId, lpTokenId);
    }

    /// @dev Registered <-> Eligible as token, LP token id and verification are all set or not.
    function _updateEligibility(uint256 dlpId) private {
        DLPRegistryStorage storage $ = _storage();
        DlpInfo storage dlp = $.dlps[dlpId];
        DlpStatus current = dlp.status;
        if (current != DlpStatus.Registered && current != DlpStatus.Eligible) return;
        bool complete = dlp.tokenAddress != address(0) && dlp.lpTokenId != 0 && dlp.verificationBlockNumber != 0;
        DlpStatus next = complete ? DlpStatus.Eligible : DlpStatus.Registered;
        if (next == current) return;
        dlp.status = next;
        if (complete) $.eligibleDlps.add(dlpId);
        else $.eligibleDlps.remove(dlpId);
        emit DlpStatusUpdated(dlpId, next);
    }

    function _isFreeValidName(DLPRegistryStorage storage $, string calldata name) private view returns (bool) {
        if ($.dlpNameToId[name] != 0) return false;
        bytes calldata raw = bytes(name);
        uint256 characters;
        for (uint256 i = 0; i < raw.length && characters < MIN_NAME_CHARACTERS; ++i) {
            if (raw[i] != 0x20) ++characters;
        }
        return characters >= MIN_NAME_CHARACTERS;
    }

    /// @dev The caller's DLP; an unknown id has no owner, so it is `NotDlpOwner` too (as Vana's).
    function _ownedBySender(DLPRegistryStorage storage $, uint256 dlpId) private view returns (DlpInfo storage dlp) {
        dlp = $.dlps[dlpId];
        if (dlp.ownerAddress != msg.sender) revert NotDlpOwner();
    }

    /// @dev A registered DLP always has an owner, so a zero owner means unknown.
    function _existing(uint256 dlpId) private view returns (DlpInfo storage dlp) {
        dlp = _storage().dlps[dlpId];
        if (dlp.ownerAddress == address(0)) revert DlpNotFound(dlpId);
    }

    function _storage() private pure returns (DLPRegistryStorage storage $) {
        assembly {
            $.slot := STORAGE_LOCATION
        }
    }
}
