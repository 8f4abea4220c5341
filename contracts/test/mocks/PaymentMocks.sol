// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

import {IPaymentExecutor} from "../../src/interfaces/IPaymentExecutor.sol";

/// @dev A plain mintable ERC-20 for payment tests.
contract MockToken is ERC20 {
    constructor() ERC20("Mock", "MOCK") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}

/// @dev Pays what a query engine asks from its own balance, or `shortBy` less; records the last request.
contract MockPaymentExecutor is IPaymentExecutor {
    uint256 public shortBy;
    bytes public lastMetadata;

    receive() external payable {}

    function setShortBy(uint256 amount) external {
        shortBy = amount;
    }

    function executePaymentRequest(address token, uint256 amount, bytes calldata metadata) external {
        lastMetadata = metadata;
        uint256 paid = amount - shortBy;
        if (token == address(0)) {
            (bool sent,) = payable(msg.sender).call{value: paid}("");
            require(sent, "mock: native payment failed");
        } else {
            require(MockToken(token).transfer(msg.sender, paid), "mock: token payment failed");
        }
    }
}
