"""Copy each deployable contract's ABI and bytecode from forge's output into registry_client/abi.

`make abi` runs `forge build` and then this script. With `--check` nothing is
written: the script exits 1 and names every shipped file that differs from a
fresh compile (or is missing), so a test can catch ABIs that drifted.

Output per contract: registry_client/abi/<Name>.json =
{"abi": [...], "bytecode": "0x...", "contractName": "<Name>"}, written with
indent=1 and sorted keys so diffs stay readable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["CONTRACTS", "ExportError", "drifted", "export", "main", "render"]

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "contracts" / "out"
ABI_DIR = ROOT / "registry_client" / "abi"

# contract name -> source file name forge used for its output folder
CONTRACTS: dict[str, str] = {
    "DLPRegistry": "DLPRegistry.sol",
    "DataRefinerRegistry": "DataRefinerRegistry.sol",
    "ComputeInstructionRegistry": "ComputeInstructionRegistry.sol",
    "QueryEngine": "QueryEngine.sol",
    "DataAccessTreasury": "DataAccessTreasury.sol",
    "ComputeEngine": "ComputeEngine.sol",
    "ERC1967Proxy": "ERC1967Proxy.sol",
}


class ExportError(Exception):
    """forge's output is missing or not what this script expects."""


def _artifact(out_dir: Path, name: str) -> dict:
    path = out_dir / CONTRACTS[name] / f"{name}.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ExportError(f"{path} not found: run `forge build` first") from exc
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path} is not valid JSON: {exc}") from exc
    try:
        bytecode = data["bytecode"]["object"]
        abi = data["abi"]
    except (KeyError, TypeError) as exc:
        raise ExportError(f"{path} has no abi/bytecode.object") from exc
    if not bytecode.startswith("0x"):
        bytecode = "0x" + bytecode
    if len(bytecode) <= 2:
        raise ExportError(f"{path}: empty bytecode (abstract contract?)")
    return {"contractName": name, "abi": abi, "bytecode": bytecode}


def render(out_dir: Path, name: str) -> str:
    """The exact text shipped for contract `name`, from forge output in `out_dir`."""
    return json.dumps(_artifact(out_dir, name), indent=1, sort_keys=True) + "\n"


def export(out_dir: Path = OUT_DIR, abi_dir: Path = ABI_DIR) -> list[Path]:
    """Write every contract's JSON into `abi_dir`; returns the files written."""
    abi_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in CONTRACTS:
        target = abi_dir / f"{name}.json"
        target.write_text(render(out_dir, name))
        written.append(target)
    return written


def drifted(out_dir: Path = OUT_DIR, abi_dir: Path = ABI_DIR) -> list[Path]:
    """Shipped files that are missing or differ from what `export` would write."""
    stale = []
    for name in CONTRACTS:
        target = abi_dir / f"{name}.json"
        if not target.exists() or target.read_text() != render(out_dir, name):
            stale.append(target)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if shipped ABIs differ from forge output")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR, help="forge output folder")
    parser.add_argument("--abi-dir", type=Path, default=ABI_DIR, help="where the ABIs are shipped")
    args = parser.parse_args(argv)
    try:
        if args.check:
            stale = drifted(args.out_dir, args.abi_dir)
            for path in stale:
                print(f"drifted: {path} (run `make abi`)", file=sys.stderr)
            return 1 if stale else 0
        for path in export(args.out_dir, args.abi_dir):
            print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    except ExportError as exc:
        print(f"export_abi: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
