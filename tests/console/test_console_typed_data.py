"""The console's JobRequest message and digest, computed by its own JS (node + viem) against Python's.

`messageFor` (console/src/wallet.js) builds the message from the types the
engine serves; viem's `hashTypedData` over that document must equal
registry_client.eip712.job_request_digest (what the engine recovers against),
and a field the console does not know (a newer engine's) is signed as its
type's zero value.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from registry_client.eip712 import JobRequest, job_request_digest, job_request_typed_data
from tests.conftest import ROOT

REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
SCRIPT = """
import { hashTypedData } from "viem";
import { messageFor } from "./console/src/wallet.js";
let input = "";
for await (const chunk of process.stdin) input += chunk;
const { shape, values } = JSON.parse(input);
const message = messageFor(shape, values);
const types = Object.fromEntries(Object.entries(shape.types).filter(([k]) => k !== "EIP712Domain"));
const digest = hashTypedData({ domain: shape.domain, types, primaryType: shape.primaryType, message });
console.log(JSON.stringify({ message, digest }));
"""


def run_console_js(shape: dict, values: dict) -> dict:
    node = shutil.which("node")
    if node is None or not (ROOT / "node_modules" / "viem").is_dir():
        pytest.skip("node and the npm packages (make setup) are needed")
    out = subprocess.run([node, "--input-type=module", "-e", SCRIPT], input=json.dumps({"shape": shape, "values": values}),
                         capture_output=True, text=True, cwd=ROOT, timeout=60, check=True)
    return json.loads(out.stdout)


def shape_of(typed: dict) -> dict:
    return {k: v for k, v in typed.items() if k != "message"}


def test_the_console_signs_the_digest_the_engine_verifies():
    req = JobRequest.create(3, 7, "SELECT kind FROM activities WHERE duration_s > ?", [300], 2**40 + 5,
                            1_900_000_000, 12)
    typed = job_request_typed_data(31337, REGISTRY, req)
    got = run_console_js(shape_of(typed), typed["message"])
    assert got["message"] == typed["message"]
    assert got["digest"] == job_request_digest(31337, REGISTRY, req)


def test_a_field_the_console_does_not_know_is_signed_as_zero():
    typed = job_request_typed_data(31337, REGISTRY, JobRequest.create(1, 2, "SELECT 1", None, 1, 2))
    shape = shape_of(typed)
    shape["types"] = {**shape["types"], "JobRequest": [*shape["types"]["JobRequest"],
                                                       {"name": "outputRecipient", "type": "address"},
                                                       {"name": "sealed", "type": "bool"},
                                                       {"name": "salt", "type": "bytes32"}]}
    got = run_console_js(shape, typed["message"])
    assert got["message"]["outputRecipient"] == "0x" + "00" * 20
    assert got["message"]["sealed"] is False and got["message"]["salt"] == "0x" + "00" * 32
