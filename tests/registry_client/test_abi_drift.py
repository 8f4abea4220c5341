"""The ABIs shipped in registry_client/abi match a fresh `forge build`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_abis_match_fresh_compile():
    script = ROOT / "tools" / "export_abi.py"
    forge = ROOT / "node_modules" / ".bin" / "forge"
    if not script.exists():
        pytest.skip("tools/export_abi.py is missing")
    if not forge.exists():
        pytest.skip("forge is not installed (run `make setup`)")
    build = subprocess.run([str(forge), "build"], cwd=ROOT, check=False, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    check = subprocess.run([sys.executable, str(script), "--check"], cwd=ROOT, check=False, capture_output=True, text=True,
                           timeout=120)
    assert check.returncode == 0, f"shipped ABIs drifted (run `make abi`):\n{check.stdout}{check.stderr}"
