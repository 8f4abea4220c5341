// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {DLPRegistry} from "../../src/DLPRegistry.sol";
import {DataRefinerRegistry} from "../../src/DataRefinerRegistry.sol";
import {ComputeInstructionRegistry} from "../../src/ComputeInstructionRegistry.sol";
import {QueryEngine} from "../../src/QueryEngine.sol";

// V2 implementations for upgrade tests: same storage, a new version and one new function.

contract DLPRegistryV2 is DLPRegistry {
    function version() external pure override returns (uint256) {
        return 2;
    }

    function upgradedMarker() external pure returns (uint256) {
        return 2;
    }
}

contract DataRefinerRegistryV2 is DataRefinerRegistry {
    function version() external pure override returns (uint256) {
        return 2;
    }

    function upgradedMarker() external pure returns (uint256) {
        return 2;
    }
}

contract ComputeInstructionRegistryV2 is ComputeInstructionRegistry {
    function version() external pure override returns (uint256) {
        return 2;
    }

    function upgradedMarker() external pure returns (uint256) {
        return 2;
    }
}

contract QueryEngineV2 is QueryEngine {
    function version() external pure override returns (uint256) {
        return 2;
    }

    function upgradedMarker() external pure returns (uint256) {
        return 2;
    }
}
