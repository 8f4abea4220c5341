// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

// Why: makes forge compile OpenZeppelin's ERC1967Proxy so its bytecode ships
// in registry_client/abi for Python deployments. No code of our own.
// (forge prints "AST source not found" for this file because it declares no
// contract; the warning is harmless.)
// solhint-disable-next-line no-unused-import
import {ERC1967Proxy} from "@openzeppelin/contracts/proxy/ERC1967/ERC1967Proxy.sol";
