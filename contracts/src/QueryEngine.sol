// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC1967Proxy} from "@openzeppelin/contracts/proxy/ERC1967/ERC1967Proxy.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {EnumerableSet} from "@openzeppelin/contracts/utils/structs/EnumerableSet.sol";
import {ReentrancyGuardUpgradeable} from "@openzeppelin/contracts-upgradeable/utils/ReentrancyGuardUpgradeable.sol";

import {ManagedUpgradeable} from "./utils/ManagedUpgradeable.sol";
import {IManaged} from "./interfaces/IManaged.sol";
import {IDLPRegistry} from "./interfaces/IDLPRegistry.sol";
import {IDataRefinerRegistry} from "./interfaces/IDataRefinerRegistry.sol";
import {IDataAccessTreasury} from "./interfaces/IDataAccessTreasury.sol";
import {IPaymentExecutor} from "./interfaces/IPaymentExecutor.sol";
import {IQueryEngine} from "./interfaces/IQueryEngine.sol";
import {DataAccessTreasury} from "./DataAccessTreasury.sol";

/**
 * @title QueryEngine
 * @notice Query permissions of each refiner (managed by the refiner's owner) and
 * the payment of their prices: requested by the compute engine, taken from the
 * job owner's ComputeEngine deposit, split between the DLP and the treasury.
 */
contract QueryEngine is ManagedUpgradeable, ReentrancyGuardUpgradeable, IQueryEngine {
    using EnumerableSet for EnumerableSet.UintSet;
    using EnumerableSet for EnumerableSet.AddressSet;
    using SafeERC20 for IERC20;
    using Address for address payable;

    uint256 private constant VERSION = 1;
    /// @inheritdoc IQueryEngine
    bytes32 public constant QUERY_ENGINE_ROLE = keccak256("QUERY_ENGINE_ROLE");
    /// @inheritdoc IQueryEngine
    address public constant VANA = address(0);
    /// @inheritdoc IQueryEngine
    uint256 public constant ONE_HUNDRED_PERCENT = 100e18;

    /// @custom:storage-location erc7201:computetodata.storage.QueryEngine
    struct QueryEngineStorage {
        IDataRefinerRegistry refinerRegistry;
        address computeEngine;
        address vanaTreasury;
        address queryEngineTreasury;
        uint256 dlpPaymentPercentage;
        uint256 permissionsCount;
        mapping(uint256 permissionId => Permission) permissions;
        mapping(uint256 refinerId => uint256[]) refinerPermissionIds;
        // grantee address(0) holds the generic (anyone) permissions; only approved ids are in the sets.
        mapping(uint256 refinerId => mapping(address grantee => EnumerableSet.UintSet)) approved;
        mapping(uint256 dlpId => string) dlpPubKeys;
        EnumerableSet.AddressSet paymentTokens;
        mapping(uint256 dlpId => mapping(address token => uint256)) dlpBalances;
    }

    // keccak256(abi.encode(uint256(keccak256("computetodata.storage.QueryEngine")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 private constant STORAGE_LOCATION = 0xf474efe6830e144823788c679d69ea0a22618d1db5267ba76a25e394e7843400;

    /// @dev Vana's order: the owner check comes first; an unknown refiner has no owner.
    modifier onlyRefinerOwner(uint256 refinerId) {
        if (_storage().refinerRegistry.refiners(refinerId).owner != msg.sender) revert NotRefinerOwner();
        _;
    }

    /**
     * @notice Sets up the proxy: `admin` gets `DEFAULT_ADMIN_ROLE` and
     * `MAINTAINER_ROLE`; refiners come from `refinerRegistry_`; a DataAccessTreasury
     * proxy of `treasuryImplementation` is created with this contract as custodian
     * (as Vana's creates one from its factory).
     *
     * Requirements:
     * - not initialized yet;
     * - `admin` is not zero, `refinerRegistry_` and `treasuryImplementation` are contracts (`InvalidAccount`).
     *
     * Emits {RoleGranted} and {RefinerRegistryUpdated} events.
     */
    function initialize(address admin, address refinerRegistry_, address treasuryImplementation)
        external
        initializer
    {
        __Managed_init(admin);
        __ReentrancyGuard_init();
        _setRefinerRegistry(refinerRegistry_);
        _requireContract(treasuryImplementation);
        bytes memory init = abi.encodeCall(DataAccessTreasury.initialize, (admin, address(this)));
        _storage().queryEngineTreasury = address(new ERC1967Proxy(treasuryImplementation, init));
    }

    /// @dev The ComputeEngine pays native prices with a plain transfer.
    receive() external payable {}

    // ---- permissions ------------------------------------------------------------------

    /// @inheritdoc IQueryEngine
    function addPermission(
        address grantee,
        uint256 refinerId,
        string calldata tableName,
        string calldata columnName,
        address tokenAddress,
        uint256 price
    ) external returns (uint256) {
        return _addPermission(grantee, refinerId, tableName, columnName, tokenAddress, price);
    }

    /// @inheritdoc IQueryEngine
    function addGenericPermission(
        uint256 refinerId,
        string calldata tableName,
        string calldata columnName,
        address tokenAddress,
        uint256 price
    ) external returns (uint256) {
        return _addPermission(address(0), refinerId, tableName, columnName, tokenAddress, price);
    }

    /// @inheritdoc IQueryEngine
    function updatePermissionApproval(uint256 permissionId, bool approved) external {
        QueryEngineStorage storage $ = _storage();
        if (permissionId == 0 || permissionId > $.permissionsCount) revert PermissionNotFound();
        Permission storage permission = $.permissions[permissionId];
        uint256 refinerId = permission.refinerId;
        if ($.refinerRegistry.refiners(refinerId).owner != msg.sender) revert NotRefinerOwner();
        if (permission.approved == approved) return;
        permission.approved = approved;
        EnumerableSet.UintSet storage set = $.approved[refinerId][permission.grantee];
        if (approved) set.add(permissionId);
        else set.remove(permissionId);
        emit PermissionApprovalUpdated(permissionId, approved);
    }

    // ---- payments ---------------------------------------------------------------------

    /// @inheritdoc IQueryEngine
    function requestPaymentInVana(uint256 amount, uint256 jobId, uint256 refinerId)
        external
        nonReentrant
        whenNotPaused
        onlyRole(QUERY_ENGINE_ROLE)
    {
        _requestPayment(VANA, amount, jobId, refinerId);
    }

    /// @inheritdoc IQueryEngine
    function requestPaymentInToken(address token, uint256 amount, uint256 jobId, uint256 refinerId)
        external
        nonReentrant
        whenNotPaused
        onlyRole(QUERY_ENGINE_ROLE)
    {
        _requestPayment(token, amount, jobId, refinerId);
    }

    /// @inheritdoc IQueryEngine
    function requestPayment(address token, uint256 amount, bytes calldata metadata)
        external
        nonReentrant
        whenNotPaused
        onlyRole(QUERY_ENGINE_ROLE)
    {
        (uint256 jobId, uint256 refinerId) = abi.decode(metadata, (uint256, uint256));
        _requestPayment(token, amount, jobId, refinerId);
    }

    /// @inheritdoc IQueryEngine
    function claimDlpPayment(uint256 dlpId, address token) external nonReentrant whenNotPaused {
        QueryEngineStorage storage $ = _storage();
        IDLPRegistry.DlpInfo memory dlp = IDLPRegistry($.refinerRegistry.dlpRegistry()).dlps(dlpId);
        if (dlp.ownerAddress != msg.sender) revert NotDlpOwner();
        if (dlp.treasuryAddress == address(0)) revert InvalidDlpTreasuryAddress();
        uint256 amount = $.dlpBalances[dlpId][token];
        $.dlpBalances[dlpId][token] = 0;
        emit DlpPaymentClaimed(dlpId, dlp.treasuryAddress, token, amount);
        IDataAccessTreasury($.queryEngineTreasury).transfer(dlp.treasuryAddress, token, amount);
    }

    // ---- maintainer -------------------------------------------------------------------

    /// @inheritdoc IQueryEngine
    function addPaymentToken(address token) external onlyRole(MAINTAINER_ROLE) {
        if (token == VANA || !_storage().paymentTokens.add(token)) revert TokenAlreadyWhitelisted(token);
        emit PaymentTokenAdded(token);
    }

    /// @inheritdoc IQueryEngine
    function removePaymentToken(address token) external onlyRole(MAINTAINER_ROLE) {
        if (token == VANA || !_storage().paymentTokens.remove(token)) revert InvalidPaymentToken(token);
        emit PaymentTokenRemoved(token);
    }

    /// @inheritdoc IQueryEngine
    function updateDlpPubKey(uint256 dlpId, string calldata pubKey) external onlyRole(MAINTAINER_ROLE) {
        QueryEngineStorage storage $ = _storage();
        // Vana tests dlpAddress; a DLP here may have none, and every registered DLP has an id.
        if (IDLPRegistry($.refinerRegistry.dlpRegistry()).dlps(dlpId).id == 0) revert DlpNotFound();
        $.dlpPubKeys[dlpId] = pubKey;
    }

    /// @inheritdoc IQueryEngine
    function updateDlpPaymentPercentage(uint256 newDlpPaymentPercentage) external onlyRole(MAINTAINER_ROLE) {
        if (newDlpPaymentPercentage > ONE_HUNDRED_PERCENT) revert InvalidDlpPaymentPercentage();
        _storage().dlpPaymentPercentage = newDlpPaymentPercentage;
    }

    /// @inheritdoc IQueryEngine
    function updateVanaTreasury(address newVanaTreasury) external onlyRole(MAINTAINER_ROLE) {
        if (newVanaTreasury == address(0)) revert ZeroAddress();
        _storage().vanaTreasury = newVanaTreasury;
    }

    /// @inheritdoc IQueryEngine
    function updateQueryEngineTreasury(address newQueryEngineTreasury) external onlyRole(MAINTAINER_ROLE) {
        if (newQueryEngineTreasury == address(0)) revert ZeroAddress();
        _storage().queryEngineTreasury = newQueryEngineTreasury;
    }

    /// @inheritdoc IQueryEngine
    function updateComputeEngine(address newComputeEngine) external onlyRole(MAINTAINER_ROLE) {
        _storage().computeEngine = newComputeEngine;
    }

    /// @inheritdoc IQueryEngine
    function updateRefinerRegistry(address newRefinerRegistry) external onlyRole(MAINTAINER_ROLE) {
        _setRefinerRegistry(newRefinerRegistry);
    }

    // ---- views ------------------------------------------------------------------------

    /// @inheritdoc IQueryEngine
    function permissions(uint256 permissionId) external view returns (Permission memory) {
        return _storage().permissions[permissionId];
    }

    /// @inheritdoc IQueryEngine
    function getPermissions(uint256 refinerId, address grantee) external view returns (PermissionInfo[] memory list) {
        QueryEngineStorage storage $ = _storage();
        EnumerableSet.UintSet storage generic = $.approved[refinerId][address(0)];
        EnumerableSet.UintSet storage own = $.approved[refinerId][grantee];
        uint256 genericLength = generic.length();
        // For grantee 0 the "own" set is the generic set itself: do not list it twice.
        uint256 ownLength = grantee == address(0) ? 0 : own.length();
        list = new PermissionInfo[](genericLength + ownLength);
        for (uint256 i = 0; i < genericLength; ++i) {
            list[i] = _info($, generic.at(i));
        }
        for (uint256 i = 0; i < ownLength; ++i) {
            list[genericLength + i] = _info($, own.at(i));
        }
    }

    /// @inheritdoc IQueryEngine
    function permissionsCount() external view returns (uint256) {
        return _storage().permissionsCount;
    }

    /// @inheritdoc IQueryEngine
    function refinerPermissionIds(uint256 refinerId) external view returns (uint256[] memory) {
        return _storage().refinerPermissionIds[refinerId];
    }

    /// @inheritdoc IQueryEngine
    function balanceOf(uint256 dlpId, address token) external view returns (uint256) {
        return _storage().dlpBalances[dlpId][token];
    }

    /// @inheritdoc IQueryEngine
    function dlpPubKeys(uint256 dlpId) external view returns (string memory) {
        return _storage().dlpPubKeys[dlpId];
    }

    /// @inheritdoc IQueryEngine
    function dlpPaymentPercentage() external view returns (uint256) {
        return _storage().dlpPaymentPercentage;
    }

    /// @inheritdoc IQueryEngine
    function vanaTreasury() external view returns (address) {
        return _storage().vanaTreasury;
    }

    /// @inheritdoc IQueryEngine
    function queryEngineTreasury() external view returns (address) {
        return _storage().queryEngineTreasury;
    }

    /// @inheritdoc IQueryEngine
    function computeEngine() external view returns (address) {
        return _storage().computeEngine;
    }

    /// @inheritdoc IQueryEngine
    function refinerRegistry() external view returns (address) {
        return address(_storage().refinerRegistry);
    }

    /// @notice Whether `token` is accepted for payment (the native token always is).
    function isPaymentToken(address token) external view returns (bool) {
        return token == VANA || _storage().paymentTokens.contains(token);
    }

    /// @inheritdoc IManaged
    function version() external pure virtual returns (uint256) {
        return VERSION;
    }

    // ---- internals --------------------------------------------------------------------

    function _addPermission(
        address grantee,
        uint256 refinerId,
        string calldata tableName,
        string calldata columnName,
        address tokenAddress,
        uint256 price
    ) private onlyRefinerOwner(refinerId) whenNotPaused returns (uint256 permissionId) {
        if (bytes(tableName).length == 0 && bytes(columnName).length != 0) revert ColumnNameUnexpected();
        QueryEngineStorage storage $ = _storage();
        permissionId = ++$.permissionsCount;
        $.permissions[permissionId] = Permission({
            grantee: grantee,
            approved: true,
            refinerId: refinerId,
            tableName: tableName,
            columnName: columnName,
            price: price,
            tokenAddress: tokenAddress
        });
        $.refinerPermissionIds[refinerId].push(permissionId);
        $.approved[refinerId][grantee].add(permissionId);
        emit PermissionAdded(permissionId, grantee, refinerId, tableName, columnName, tokenAddress, price);
    }

    /// @dev Pulls `amount` from the ComputeEngine, checks it arrived, then splits it.
    function _requestPayment(address token, uint256 amount, uint256 jobId, uint256 refinerId) private {
        QueryEngineStorage storage $ = _storage();
        bool native = token == VANA;
        if (!native && !$.paymentTokens.contains(token)) revert InvalidPaymentToken(token);
        uint256 dlpId = $.refinerRegistry.refiners(refinerId).dlpId;
        if (dlpId == 0) revert RefinerNotFound();

        uint256 before = _balance(token);
        IPaymentExecutor($.computeEngine).executePaymentRequest(token, amount, abi.encode(jobId, dlpId));
        uint256 received = _balance(token) - before;
        if (received < amount) revert PaymentNotReceived();
        emit PaymentReceived(token, received, jobId, refinerId);

        uint256 dlpShare = (amount * $.dlpPaymentPercentage) / ONE_HUNDRED_PERCENT;
        uint256 rest = received - dlpShare;
        if (rest != 0 && $.vanaTreasury == address(0)) revert ZeroAddress();
        $.dlpBalances[dlpId][token] += dlpShare;
        _send(token, $.queryEngineTreasury, dlpShare);
        _send(token, $.vanaTreasury, rest);
    }

    function _send(address token, address to, uint256 amount) private {
        if (amount == 0) return;
        if (token == VANA) payable(to).sendValue(amount);
        else IERC20(token).safeTransfer(to, amount);
    }

    function _balance(address token) private view returns (uint256) {
        return token == VANA ? address(this).balance : IERC20(token).balanceOf(address(this));
    }

    function _info(QueryEngineStorage storage $, uint256 id) private view returns (PermissionInfo memory) {
        Permission storage p = $.permissions[id];
        return PermissionInfo({
            permissionId: id,
            grantee: p.grantee,
            approved: p.approved,
            refinerId: p.refinerId,
            tableName: p.tableName,
            columnName: p.columnName,
            price: p.price,
            tokenAddress: p.tokenAddress
        });
    }

    function _setRefinerRegistry(address newRefinerRegistry) private {
        _requireContract(newRefinerRegistry);
        _storage().refinerRegistry = IDataRefinerRegistry(newRefinerRegistry);
        emit RefinerRegistryUpdated(newRefinerRegistry);
    }

    function _storage() private pure returns (QueryEngineStorage storage $) {
        assembly {
            $.slot := STORAGE_LOCATION
        }
    }
}
