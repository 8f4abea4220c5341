"""The refined data the engine serves: refiner id -> one sealed SQLite file, never written after.

``DataCatalog.add`` validates the operator's file (opens as SQLite, ``PRAGMA
quick_check`` says ok), copies it with SQLite's backup API into memory (so a
database in WAL mode is copied with its committed pages, not half of them) and
seals it (registry_client/sealing.py, AES-256-GCM) with a fresh per-refiner
data key into ``<data_dir>/refiners/<id>-<n>.sealed``; the data key, wrapped
by the engine's KEK (engine/data_keys.py), is ``<id>.key``. No plaintext copy
ever touches the data dir. ``add_sealed`` takes a file a DLP owner sealed
themselves, with its data key wrapped to the engine's wallet key. Jobs get a
``SealedSource`` and open it in the query process's memory.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from engine.data_keys import Kek, unwrap_data_key, wrap_data_key, write_record
from engine.errors import JobFailure, QueryFailure, RequestError
from engine.query.model import SealedSource
from registry_client import sealing
from registry_client.errors import SealError

__all__ = ["DataCatalog", "DataEntry"]


@dataclass(frozen=True)
class DataEntry:
    refiner_id: int
    path: Path
    size: int
    kek_id: str | None = None


def _check_conn(conn: sqlite3.Connection, what: str) -> None:
    try:
        result = conn.execute("PRAGMA quick_check").fetchone()
        tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise RequestError(f"{what} is not a SQLite database ({exc})", code="DATA_INVALID") from exc
    if not result or result[0] != "ok":
        raise RequestError(f"{what} failed SQLite's quick_check", code="DATA_INVALID")
    if tables == 0:
        raise RequestError(f"{what} holds no tables", code="DATA_INVALID")


def _image_of(source: Path) -> bytes:
    """The source database as one serialized image (its committed pages), checked healthy."""
    try:
        src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise RequestError(f"{source} cannot be opened as SQLite: {exc}", code="DATA_INVALID") from exc
    mem = sqlite3.connect(":memory:")
    try:
        _check_conn(src, str(source))
        src.backup(mem)
        image = bytearray(mem.serialize())
        # A self-contained image: header bytes 18-19 say "rollback journal", not WAL
        # (a WAL-mode image cannot be opened from memory).
        image[18:20] = b"\x01\x01"
        return bytes(image)
    except sqlite3.Error as exc:
        raise RequestError(f"copying {source} failed: {exc}", code="DATA_INVALID") from exc
    finally:
        mem.close()
        src.close()


def _check_image(image: bytes, what: str) -> None:
    mem = sqlite3.connect(":memory:")
    try:
        mem.deserialize(image)
        _check_conn(mem, what)
    except sqlite3.Error as exc:
        raise RequestError(f"{what} is not a SQLite database ({exc})", code="DATA_INVALID") from exc
    finally:
        mem.close()


class DataCatalog:
    """Sealed refiner data under `<data_dir>/refiners/`; `kek` wraps the data keys."""

    def __init__(self, data_dir: Path | str, kek: Kek | None = None):
        self.root = Path(data_dir) / "refiners"
        self.kek = kek

    def _record_path(self, refiner_id: int) -> Path:
        if isinstance(refiner_id, bool) or not isinstance(refiner_id, int) or refiner_id <= 0:
            raise RequestError(f"refiner id must be a positive integer, got {refiner_id!r}", code="INVALID_REQUEST")
        return self.root / f"{refiner_id}.key"

    def _need_kek(self) -> Kek:
        if self.kek is None:
            raise RequestError("no data key-encryption key: set data_kek_file or data_kek_env",
                               code="DATA_KEK_MISSING")
        return self.kek

    def add(self, refiner_id: int, source_file: Path | str, *, replace: bool = False) -> DataEntry:
        """Seal a validated copy of `source_file` for `refiner_id`.

        Refuses (RequestError) a missing or non-SQLite file (DATA_INVALID), no KEK
        (DATA_KEK_MISSING) and, unless `replace`, a refiner that already has data
        (DATA_EXISTS). A replaced file is swapped atomically (its key record last).
        """
        source = Path(source_file)
        record_path = self._record_path(refiner_id)
        kek = self._need_kek()
        if not source.is_file():
            raise RequestError(f"{source} is not a file", code="DATA_INVALID")
        self._check_free(record_path, replace)
        image = _image_of(source)
        key = sealing.new_data_key()
        return self._store(refiner_id, kek, key, lambda out: sealing.seal_stream(
            io.BytesIO(image), out, len(image), key=key))

    def add_sealed(self, refiner_id: int, sealed_file: Path | str, wrapped_key: bytes,
                   engine_private_key: bytes, *, replace: bool = False) -> DataEntry:
        """Attach a file a DLP owner sealed (KEY mode), its data key wrapped to the engine's wallet.

        The key is unwrapped with the engine's private key, the file opened once in
        memory to check it is a healthy SQLite database, then kept as it is.
        """
        source = Path(sealed_file)
        record_path = self._record_path(refiner_id)
        kek = self._need_kek()
        if not source.is_file():
            raise RequestError(f"{source} is not a file", code="DATA_INVALID")
        self._check_free(record_path, replace)
        key = sealing.unwrap_key(wrapped_key, engine_private_key)
        plain = io.BytesIO()
        with open(source, "rb") as reader:
            sealing.open_stream(reader, plain, key=key)
        _check_image(plain.getvalue(), str(source))
        plain.seek(0)
        plain.truncate()

        def copy(out: io.BufferedWriter) -> None:
            with open(source, "rb") as reader:
                while chunk := reader.read(1 << 20):
                    out.write(chunk)

        return self._store(refiner_id, kek, key, copy)

    def _check_free(self, record_path: Path, replace: bool) -> None:
        if record_path.exists() and not replace:
            refiner = record_path.stem
            raise RequestError(f"refiner {refiner} already has data; pass replace to swap it", code="DATA_EXISTS")

    def _store(self, refiner_id: int, kek: Kek, key: bytes, write) -> DataEntry:
        self.root.mkdir(parents=True, exist_ok=True)
        record_path = self.root / f"{refiner_id}.key"
        old = self._record(refiner_id) if record_path.exists() else None
        name = f"{refiner_id}-{os.urandom(8).hex()}.sealed"
        dest = self.root / name
        tmp = dest.with_name(f".{name}.tmp")
        try:
            with open(tmp, "xb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
            tmp.chmod(0o444)
            os.replace(tmp, dest)
            write_record(record_path, wrap_data_key(kek, refiner_id, key, name))
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        finally:
            tmp.unlink(missing_ok=True)
        if old is not None and old.get("file") != name:
            (self.root / str(old.get("file"))).unlink(missing_ok=True)
        return DataEntry(refiner_id, dest, dest.stat().st_size, kek.id)

    def _record(self, refiner_id: int) -> dict:
        try:
            return json.loads(self._record_path(refiner_id).read_text())
        except (OSError, ValueError) as exc:
            raise JobFailure(f"the engine holds no data for refiner {refiner_id}", code="DATA_NOT_FOUND") from exc

    def _sealed(self, refiner_id: int) -> tuple[dict, Path]:
        record = self._record(refiner_id)
        path = self.root / str(record.get("file"))
        if "/" in str(record.get("file")) or not path.is_file():
            raise JobFailure(f"the engine holds no data for refiner {refiner_id}", code="DATA_NOT_FOUND")
        return record, path

    def source(self, refiner_id: int) -> SealedSource:
        """The refiner's sealed file and data key; DATA_NOT_FOUND / DATA_KEK_MISSING / SEAL_*."""
        record, path = self._sealed(refiner_id)
        if self.kek is None:
            raise JobFailure("the engine has no data key-encryption key configured", code="DATA_KEK_MISSING")
        try:
            key = unwrap_data_key(self.kek, refiner_id, record)
        except SealError as exc:
            raise QueryFailure(exc.message, code=exc.code) from exc
        return SealedSource(path, key)

    def path(self, refiner_id: int) -> Path:
        """The refiner's sealed data file; JobFailure(DATA_NOT_FOUND) when none is attached."""
        return self._sealed(refiner_id)[1]

    def rotate(self, new_kek: Kek) -> list[int]:
        """Re-wrap every data key under `new_kek` (the sealed files stay); return the refiner ids.

        Records already under `new_kek` are left alone, so an interrupted rotation re-runs.
        """
        old = self._need_kek()
        rotated = []
        for entry in self.list():
            record = self._record(entry.refiner_id)
            if record.get("kek_id") == new_kek.id:
                continue
            key = unwrap_data_key(old, entry.refiner_id, record)
            write_record(self._record_path(entry.refiner_id),
                         wrap_data_key(new_kek, entry.refiner_id, key, str(record["file"])))
            rotated.append(entry.refiner_id)
        return rotated

    def list(self) -> list[DataEntry]:
        """Every attached refiner, by id."""
        if not self.root.is_dir():
            return []
        entries = []
        for file in self.root.glob("*.key"):
            if not file.stem.isdigit():
                continue
            try:
                record = json.loads(file.read_text())
                sealed = self.root / str(record["file"])
                entries.append(DataEntry(int(file.stem), sealed, sealed.stat().st_size, record.get("kek_id")))
            except (OSError, ValueError, KeyError):
                continue
        return sorted(entries, key=lambda e: e.refiner_id)
