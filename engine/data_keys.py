"""The data key-encryption key (KEK) and the per-refiner data keys it wraps.

The KEK (32 bytes, 64 hex characters) comes from a file only its owner can read
(``data_kek_file``, mode 0600 or stricter) or from an environment variable whose
NAME is a setting (``data_kek_env``); the key itself is never a setting. Each
refiner's data key is random, wrapped with AES-256-GCM under the KEK (the
refiner id and the KEK's id in the AAD, so a key record cannot be moved to
another refiner) and kept beside its sealed database as ``<id>.key`` (JSON).
Rotating the KEK re-wraps these small records; the sealed databases are not
rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from engine.errors import RequestError

__all__ = ["Kek", "load_kek", "read_kek_file", "unwrap_data_key", "wrap_data_key"]

_RECORD_VERSION = 1


@dataclass(frozen=True, repr=False)
class Kek:
    """The engine's key-encryption key; `id` (16 hex) names it in key records, never the key."""

    key: bytes

    @property
    def id(self) -> str:
        return hashlib.sha256(b"c2d-kek-id\x00" + self.key).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"Kek(id={self.id})"


def _parse(text: str, where: str) -> Kek:
    value = text.strip().removeprefix("0x")
    try:
        key = bytes.fromhex(value)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise RequestError(f"{where} must hold 64 hex characters (32 bytes)", code="DATA_KEK_INVALID")
    return Kek(key)


def read_kek_file(path: Path) -> Kek:
    """The KEK in `path`; DATA_KEK_INVALID when missing, readable by others, or malformed."""
    try:
        info = path.stat()
    except OSError as exc:
        raise RequestError(f"the data KEK file {path} cannot be read", code="DATA_KEK_INVALID") from exc
    if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o077:
        raise RequestError(f"the data KEK file {path} must be a regular file of mode 0600 (or stricter)",
                           code="DATA_KEK_INVALID")
    return _parse(path.read_text(errors="replace"), f"the data KEK file {path}")


def load_kek(settings: Any, *, required: bool = False) -> Kek | None:
    """The KEK the settings name (file first, then env var); None, or DATA_KEK_MISSING if `required`."""
    if settings.data_kek_file is not None:
        return read_kek_file(Path(settings.data_kek_file))
    if settings.data_kek_env:
        raw = os.environ.get(settings.data_kek_env)
        if not raw:
            raise RequestError(f"the environment variable {settings.data_kek_env} (data_kek_env) is not set",
                               code="DATA_KEK_INVALID")
        return _parse(raw, f"the environment variable {settings.data_kek_env}")
    if required:
        raise RequestError("no data key-encryption key: set data_kek_file (a 0600 file of 64 hex) or "
                           "data_kek_env (the NAME of a variable holding it)", code="DATA_KEK_MISSING")
    return None


def _aad(refiner_id: int, kek: Kek) -> bytes:
    return f"c2d-data-key|refiner={refiner_id}|kek={kek.id}".encode()


def wrap_data_key(kek: Kek, refiner_id: int, data_key: bytes, file_name: str) -> dict[str, Any]:
    """The JSON record of a refiner's data key wrapped under `kek`."""
    nonce = os.urandom(12)
    sealed = AESGCM(kek.key).encrypt(nonce, data_key, _aad(refiner_id, kek))
    return {"version": _RECORD_VERSION, "refiner_id": refiner_id, "file": file_name,
            "kek_id": kek.id, "wrapped": (nonce + sealed).hex()}


def unwrap_data_key(kek: Kek, refiner_id: int, record: dict[str, Any]) -> bytes:
    """The data key of a record; SEAL_WRONG_KEY under another KEK, SEAL_TAMPERED if changed."""
    from registry_client.errors import SealTampered, SealWrongKey

    if record.get("kek_id") != kek.id:
        raise SealWrongKey(f"refiner {refiner_id}'s data key is wrapped by KEK {record.get('kek_id')}, "
                           f"not by this engine's KEK {kek.id}")
    try:
        raw = bytes.fromhex(str(record["wrapped"]))
        return AESGCM(kek.key).decrypt(raw[:12], raw[12:], _aad(refiner_id, kek))
    except (KeyError, ValueError, InvalidTag) as exc:
        raise SealTampered(f"refiner {refiner_id}'s data key record does not open") from exc


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write a key record atomically (mode 0600)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(record, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
