// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IManaged} from "./IManaged.sol";

/**
 * @title IDLPRegistry
 * @notice Data Liquidity Pools with Vana's `DLPRegistry` ABI: the `DlpInfo`
 * record (owner and treasury are what the data-access contracts read), Vana's
 * registration, update, status, verification and token bookkeeping, and its
 * events and errors. Rewards, epochs and LP staking are not implemented: the
 * `vanaEpoch` and `treasury` links are stored and reported, nothing more.
 *
 * Additions of this project (nothing a Vana client decodes changes):
 * {dlpOwner} and {transferDlpOwnership}; a zero `dlpAddress` means "no DLP
 * contract" and is not indexed in {dlpIds}, so many DLPs may have none.
 */
interface IDLPRegistry is IManaged {
    /// @notice A DLP's lifecycle (Vana's `DlpStatus`).
    enum DlpStatus {
        None,
        Registered,
        Eligible,
        Deregistered
    }

    /// @notice A DLP as {dlps} returns it (Vana's `DlpInfo`, one tuple).
    struct DlpInfo {
        uint256 id;
        address dlpAddress;
        address ownerAddress;
        address tokenAddress;
        address treasuryAddress;
        string name;
        string iconUrl;
        string website;
        string metadata;
        uint256 registrationBlockNumber;
        uint256 depositAmount;
        DlpStatus status;
        uint256 lpTokenId;
        uint256 verificationBlockNumber;
    }

    /// @notice What {registerDlp} and {updateDlp} take (Vana's `DlpRegistration`).
    struct DlpRegistration {
        address dlpAddress;
        address ownerAddress;
        address payable treasuryAddress;
        string name;
        string iconUrl;
        string website;
        string metadata;
    }

    /// @dev Declared by Vana, never raised by its registry nor by this one.
    error InvalidDlpId();
    /// @dev The DLP is not in a status that allows the call (or its `dlpAddress` is taken).
    error InvalidDlpStatus();
    /// @dev Declared by Vana, never raised by its registry nor by this one.
    error InvalidDlpVerification();
    /// @dev Declared by Vana, never raised by its registry nor by this one.
    error DlpTokenNotSet();
    /// @dev Declared by Vana, never raised by its registry nor by this one.
    error DlpLpTokenIdNotSet();
    /// @dev Declared by Vana, never raised by its registry nor by this one.
    error InvalidTokenAddress();
    /// @dev Declared by Vana, never raised by its registry nor by this one.
    error InvalidLpTokenId();
    /// @dev An owner or treasury address is zero.
    error InvalidAddress();
    /// @dev The name is taken or has fewer than four non-space characters.
    error InvalidName();
    /// @dev The caller is not the DLP's owner (an unknown DLP has no owner).
    error NotDlpOwner();
    /// @dev Less than {dlpRegistrationDepositAmount} was sent.
    error InvalidDepositAmount();
    /// @dev {updateDlp} tried to change the DLP's `dlpAddress`.
    error DlpAddressCannotBeChanged();
    /// @dev The treasury refused the registration deposit.
    error TransferFailed();
    /// @dev `dlpId` was never registered (this project's {dlpOwner}).
    error DlpNotFound(uint256 dlpId);
    /// @dev `owner` cannot own a DLP (the zero address; this project's {transferDlpOwnership}).
    error InvalidOwner(address owner);

    /// @notice A DLP was registered (Vana signature).
    event DlpRegistered(
        uint256 indexed dlpId,
        address indexed dlpAddress,
        address ownerAddress,
        address treasuryAddress,
        string name,
        string iconUrl,
        string website,
        string metadata
    );
    /// @notice A DLP's record changed (Vana signature); also emitted by {transferDlpOwnership}.
    event DlpUpdated(
        uint256 indexed dlpId,
        address indexed dlpAddress,
        address ownerAddress,
        address treasuryAddress,
        string name,
        string iconUrl,
        string website,
        string metadata
    );
    /// @notice A DLP's status changed.
    event DlpStatusUpdated(uint256 indexed dlpId, DlpStatus newStatus);
    /// @notice Declared by Vana, never emitted by its registry nor by this one.
    event DlpVerificationUpdated(uint256 indexed dlpId, bool verified);
    /// @notice A DLP's verification block changed (0 = not verified).
    event DlpVerificationBlockUpdated(uint256 indexed dlpId, uint256 verificationBlockNumber);
    /// @notice The registration deposit changed.
    event DlpRegistrationDepositAmountUpdated(uint256 newDlpRegistrationDepositAmount);
    /// @notice A DLP's token changed.
    event DlpTokenUpdated(uint256 indexed dlpId, address tokenAddress);
    /// @notice A DLP's LP token id changed.
    event DlpLpTokenIdUpdated(uint256 indexed dlpId, uint256 lpTokenId);
    /// @notice A DLP changed hands through {transferDlpOwnership}.
    event DlpOwnershipTransferred(uint256 indexed dlpId, address indexed previousOwner, address indexed newOwner);

    /**
     * @notice Registers a DLP. Ids start at 1; the deposit goes to {treasury}.
     *
     * Requirements:
     * - the contract is not paused;
     * - owner and treasury are not zero (`InvalidAddress`);
     * - a non-zero `dlpAddress` is not registered yet (`InvalidDlpStatus`);
     * - the name is free and has at least four non-space characters (`InvalidName`);
     * - `msg.value` is at least {dlpRegistrationDepositAmount} (`InvalidDepositAmount`);
     * - the treasury accepts the deposit (`TransferFailed`).
     *
     * Emits {DlpRegistered} and {DlpStatusUpdated} events.
     */
    function registerDlp(DlpRegistration calldata registrationInfo) external payable;

    /**
     * @notice Rewrites a DLP's owner, treasury, name, icon, website and metadata.
     *
     * Requirements:
     * - the contract is not paused;
     * - the caller owns the DLP (`NotDlpOwner`);
     * - owner and treasury are not zero (`InvalidAddress`);
     * - `dlpAddress` is unchanged (`DlpAddressCannotBeChanged`);
     * - a new name is free and long enough (`InvalidName`).
     *
     * Emits a {DlpUpdated} event.
     */
    function updateDlp(uint256 dlpId, DlpRegistration calldata dlpUpdateInfo) external;

    /**
     * @notice Deregisters a DLP (it stays readable with status Deregistered).
     *
     * Requirements:
     * - the contract is not paused;
     * - the caller owns the DLP (`NotDlpOwner`);
     * - it is registered or eligible (`InvalidDlpStatus`).
     *
     * Emits a {DlpStatusUpdated} event.
     */
    function deregisterDlp(uint256 dlpId) external;

    /**
     * @notice Hands a DLP to `newOwner` (this project's shortcut for {updateDlp}).
     *
     * Requirements:
     * - the contract is not paused;
     * - `dlpId` exists (`DlpNotFound`);
     * - the caller owns it (`NotDlpOwner`);
     * - `newOwner` is not the zero address (`InvalidOwner`).
     *
     * Emits {DlpOwnershipTransferred} and {DlpUpdated} events.
     */
    function transferDlpOwnership(uint256 dlpId, address newOwner) external;

    /**
     * @notice Maintainer bookkeeping, as Vana's: verification block, token and LP
     * token id. A registered DLP with all three set becomes Eligible, and falls
     * back to Registered when one is cleared.
     *
     * Requirements: the caller has `MAINTAINER_ROLE`.
     *
     * Emits {DlpVerificationBlockUpdated}, {DlpTokenUpdated}, {DlpLpTokenIdUpdated}
     * and, when the status changes, {DlpStatusUpdated} events.
     */
    function updateDlpVerificationBlock(uint256 dlpId, uint256 verificationBlockNumber) external;

    /// @notice Clears the verification block; see {updateDlpVerificationBlock}.
    function unverifyDlp(uint256 dlpId) external;

    /// @notice Sets the token and LP token id; see {updateDlpVerificationBlock}.
    function updateDlpToken(uint256 dlpId, address tokenAddress, uint256 lpTokenId) external;

    /// @notice Sets token, LP token id and verification block at once; see {updateDlpVerificationBlock}.
    function updateDlpTokenAndVerification(
        uint256 dlpId,
        address tokenAddress,
        uint256 lpTokenId,
        uint256 verificationBlockNumber
    ) external;

    /**
     * @notice Sets the registration deposit (0 by default).
     *
     * Requirements: the caller has `MAINTAINER_ROLE`.
     *
     * Emits a {DlpRegistrationDepositAmountUpdated} event.
     */
    function updateDlpRegistrationDepositAmount(uint256 newDlpRegistrationDepositAmount) external;

    /// @notice Sets where registration deposits go (maintainer only; stored as given, like Vana's).
    function updateTreasury(address newTreasuryAddress) external;

    /// @notice Stores Vana's epoch contract link (maintainer only; unused here: no rewards).
    function updateVanaEpoch(address newVanaEpochAddress) external;

    /// @notice A DLP's record; the zero tuple for an unknown id.
    function dlps(uint256 dlpId) external view returns (DlpInfo memory);

    /// @notice The record of the DLP registered with `dlpAddress` (zero tuple if none).
    function dlpsByAddress(address dlpAddress) external view returns (DlpInfo memory);

    /// @notice The record of the DLP named `dlpName` (zero tuple if none).
    function dlpsByName(string calldata dlpName) external view returns (DlpInfo memory);

    /// @notice The id of the DLP registered with `dlpAddress` (0 if none).
    function dlpIds(address dlpAddress) external view returns (uint256);

    /// @notice The id of the DLP named `dlpName` (0 if none).
    function dlpNameToId(string calldata dlpName) external view returns (uint256);

    /**
     * @notice A DLP's owner.
     *
     * Requirements:
     * - `dlpId` exists (`DlpNotFound`).
     */
    function dlpOwner(uint256 dlpId) external view returns (address);

    /// @notice How many DLPs were registered (the highest id).
    function dlpsCount() external view returns (uint256);

    /// @notice The deposit {registerDlp} requires, in wei.
    function dlpRegistrationDepositAmount() external view returns (uint256);

    /// @notice Where registration deposits go.
    function treasury() external view returns (address);

    /// @notice Vana's epoch contract link (stored only).
    function vanaEpoch() external view returns (address);

    /// @notice Ids of the Eligible DLPs, in no particular order.
    function eligibleDlpsListValues() external view returns (uint256[] memory);

    /// @notice How many DLPs are Eligible.
    function eligibleDlpsListCount() external view returns (uint256);

    /// @notice The `index`-th Eligible DLP id (reverts past the end).
    function eligibleDlpsListAt(uint256 index) external view returns (uint256);

    /// @notice Whether `dlpId` is Eligible.
    function isEligibleDlp(uint256 dlpId) external view returns (bool);
}
