"""Deployment manifests: which chain, which contract addresses, from which block.

A manifest is the JSON file `registry deploy` writes and every client reads::

    {
      "chain_id": 31337,
      "addresses": {"dlp_registry": "0x…", "data_refiner_registry": "0x…",
                    "compute_instruction_registry": "0x…", "query_engine": "0x…",
                    "compute_engine": "0x…"},
      "implementations": {"dlp_registry": "0x…", ...},
      "deploy_block": 1,
      "deployer": "0x…"
    }

`addresses` are the ERC1967 proxies (what clients call); `implementations`
the logic contracts behind them. Validation errors name the offending field.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry_client.addresses import parse_address
from registry_client.errors import InputError, ManifestError

__all__ = ["CONTRACT_KEYS", "Deployment", "load_deployment", "save_deployment"]

# The five contracts, in deploy order; keys of `addresses` and `implementations`.
CONTRACT_KEYS: tuple[str, ...] = (
    "dlp_registry",
    "data_refiner_registry",
    "compute_instruction_registry",
    "query_engine",
    "compute_engine",
)


@dataclass(frozen=True)
class Deployment:
    """Where the registries live on one chain."""

    chain_id: int
    addresses: dict[str, str]
    implementations: dict[str, str] = field(default_factory=dict)
    deploy_block: int = 0
    deployer: str | None = None

    def address(self, key: str) -> str:
        return self.addresses[key]

    def to_dict(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "addresses": dict(self.addresses),
            "implementations": dict(self.implementations),
            "deploy_block": self.deploy_block,
            "deployer": self.deployer,
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "manifest") -> Deployment:
        """Validate `data` (parsed JSON); ManifestError names the bad field."""
        if not isinstance(data, dict):
            raise ManifestError(f"{source}: expected a JSON object")
        chain_id = _int_field(data, "chain_id", source, minimum=1)
        addresses = _address_map(data.get("addresses"), "addresses", source, required=True)
        impls = _address_map(data.get("implementations") or {}, "implementations", source, required=False)
        deploy_block = _int_field(data, "deploy_block", source, minimum=0, default=0)
        deployer = data.get("deployer")
        if deployer is not None:
            deployer = _address(deployer, "deployer", source)
        return cls(chain_id, addresses, impls, deploy_block, deployer)


def _int_field(data: dict, name: str, source: str, *, minimum: int, default: int | None = None) -> int:
    if name not in data:
        if default is not None:
            return default
        raise ManifestError(f"{source}: field '{name}' is missing")
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ManifestError(f"{source}: field '{name}' must be an integer >= {minimum}, got {value!r}")
    return value


def _address(value: Any, name: str, source: str) -> str:
    try:
        return parse_address(value, f"field '{name}'")
    except InputError as exc:
        raise ManifestError(f"{source}: {exc.message}") from exc


def _address_map(value: Any, name: str, source: str, *, required: bool) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ManifestError(f"{source}: field '{name}' must be an object of addresses")
    out: dict[str, str] = {}
    for key in CONTRACT_KEYS:
        if key not in value:
            if required:
                raise ManifestError(f"{source}: field '{name}.{key}' is missing")
            continue
        out[key] = _address(value[key], f"{name}.{key}", source)
    return out


def load_deployment(path: str | os.PathLike[str]) -> Deployment:
    """Read and validate a manifest file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ManifestError(
            f"deployment manifest {p} not found: run `registry deploy` or pass --deployment"
        ) from exc
    except OSError as exc:
        raise ManifestError(f"cannot read deployment manifest {p}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{p}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    return Deployment.from_dict(data, source=str(p))


def save_deployment(deployment: Deployment, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write the manifest atomically (temp file + rename), so a failure writes nothing."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise ManifestError(f"{p} already exists: pass --force to replace it")
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(deployment.to_dict(), fh, indent=2)
            fh.write("\n")
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
