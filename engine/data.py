"""The refined data the engine serves: refiner id -> one SQLite file, never written after.

``DataCatalog.add`` validates the operator's file (opens as SQLite, ``PRAGMA
quick_check`` says ok), copies it with SQLite's backup API (so a database in
WAL mode is copied with its committed pages, not half of them) into
``<data_dir>/refiners/<id>.db``, then makes it read-only. Jobs only ever read
it (the query module opens it read-only).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from engine.errors import JobFailure, RequestError

__all__ = ["DataCatalog", "DataEntry"]


@dataclass(frozen=True)
class DataEntry:
    refiner_id: int
    path: Path
    size: int


def _check_sqlite(path: Path) -> None:
    """Raise RequestError(DATA_INVALID) unless `path` is a healthy SQLite database."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise RequestError(f"{path} cannot be opened as SQLite: {exc}", code="DATA_INVALID") from exc
    try:
        result = conn.execute("PRAGMA quick_check").fetchone()
        tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise RequestError(f"{path} is not a SQLite database ({exc})", code="DATA_INVALID") from exc
    finally:
        conn.close()
    if not result or result[0] != "ok":
        raise RequestError(f"{path} failed SQLite's quick_check", code="DATA_INVALID")
    if tables == 0:
        raise RequestError(f"{path} holds no tables", code="DATA_INVALID")


class DataCatalog:
    """Refiner data files under `<data_dir>/refiners/`."""

    def __init__(self, data_dir: Path | str):
        self.root = Path(data_dir) / "refiners"

    def _file(self, refiner_id: int) -> Path:
        if isinstance(refiner_id, bool) or not isinstance(refiner_id, int) or refiner_id <= 0:
            raise RequestError(f"refiner id must be a positive integer, got {refiner_id!r}", code="INVALID_REQUEST")
        return self.root / f"{refiner_id}.db"

    def add(self, refiner_id: int, source_file: Path | str, *, replace: bool = False) -> DataEntry:
        """Attach a validated copy of `source_file` to `refiner_id`.

        Refuses (RequestError) a missing or non-SQLite file (DATA_INVALID) and, unless
        `replace`, a refiner that already has data (DATA_EXISTS). A replaced file is
        swapped atomically; jobs already reading the old one keep their copy.
        """
        source = Path(source_file)
        dest = self._file(refiner_id)
        if not source.is_file():
            raise RequestError(f"{source} is not a file", code="DATA_INVALID")
        if dest.exists() and not replace:
            raise RequestError(
                f"refiner {refiner_id} already has data; pass replace to swap it", code="DATA_EXISTS"
            )
        _check_sqlite(source)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        try:
            self._copy(source, tmp)
            _check_sqlite(tmp)
            tmp.chmod(0o444)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return DataEntry(refiner_id, dest, dest.stat().st_size)

    @staticmethod
    def _copy(source: Path, dest: Path) -> None:
        src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
        dst = sqlite3.connect(str(dest))
        try:
            src.backup(dst)
            # A self-contained file: no -wal/-shm companions next to it.
            dst.execute("PRAGMA journal_mode=DELETE")
        except sqlite3.Error as exc:
            raise RequestError(f"copying {source} failed: {exc}", code="DATA_INVALID") from exc
        finally:
            dst.close()
            src.close()

    def path(self, refiner_id: int) -> Path:
        """The refiner's data file; JobFailure(DATA_NOT_FOUND) when none is attached."""
        path = self.root / f"{refiner_id}.db"
        if not path.is_file():
            raise JobFailure(
                f"the engine holds no data for refiner {refiner_id}", code="DATA_NOT_FOUND"
            )
        return path

    def list(self) -> list[DataEntry]:
        """Every attached refiner, by id."""
        if not self.root.is_dir():
            return []
        entries = []
        for file in self.root.glob("*.db"):
            if file.stem.isdigit():
                entries.append(DataEntry(int(file.stem), file, file.stat().st_size))
        return sorted(entries, key=lambda e: e.refiner_id)
