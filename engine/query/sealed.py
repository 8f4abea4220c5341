"""Open a sealed refiner database in this process's memory, for one query only.

The query process (child.py) reads the sealed file 64 KiB at a time, decrypts
it into one buffer, hands that to SQLite (`Connection.deserialize`, SQLite's
own copy, counted by its heap limit) and zeroes the buffer. No plaintext is
written to any disk or tmpfs; it dies with the process, which runs one query.
"""

from __future__ import annotations

import ctypes
import os
import sqlite3

from engine.errors import QueryFailure
from registry_client import sealing
from registry_client.errors import SealError, SealTruncated

from .model import SealedSource

__all__ = ["open_sealed", "sealed_length"]


class _Buffer:
    """A write-only sink growing one bytearray (no intermediate copies)."""

    def __init__(self, size: int):
        self.data = bytearray(size)
        self.at = 0

    def write(self, chunk: bytes) -> int:
        self.data[self.at:self.at + len(chunk)] = chunk
        self.at += len(chunk)
        return len(chunk)

    def wipe(self) -> None:
        if self.data:
            ctypes.memset((ctypes.c_char * len(self.data)).from_buffer(self.data), 0, len(self.data))


def _failure(exc: SealError) -> QueryFailure:
    return QueryFailure(f"the refiner's sealed database does not open: {exc.message}", code=exc.code)


def sealed_length(source: SealedSource) -> int:
    """The plaintext size the header declares (what the query process must make room for)."""
    try:
        with open(source.path, "rb") as reader:
            length = sealing.read_header(reader).length
            # The header is checked only with the first tag: never let a changed length
            # size the memory limit past what the file could hold.
            if length > os.fstat(reader.fileno()).st_size:
                raise SealTruncated("the sealed file is shorter than the length its header declares")
            return length
    except OSError as exc:
        raise QueryFailure("the refiner's database file is missing", code="DATA_NOT_FOUND") from exc
    except SealError as exc:
        raise _failure(exc) from exc


def open_sealed(source: SealedSource) -> sqlite3.Connection:
    """A read-only in-memory connection to the sealed database (QueryFailure SEAL_* if it fails)."""
    length = sealed_length(source)
    buffer = _Buffer(length)
    try:
        with open(source.path, "rb") as reader:
            sealing.open_stream(reader, buffer, key=source.key, max_length=length)
        conn = sqlite3.connect(":memory:", isolation_level=None)
        try:
            # No query_only: the results are written through this connection (ATTACH);
            # the authorizer refuses every write to `main`, and this copy is private anyway.
            conn.deserialize(buffer.data)
        except sqlite3.Error as exc:
            conn.close()
            raise QueryFailure("the refiner's sealed database is not SQLite", code="DATA_NOT_FOUND") from exc
        return conn
    except OSError as exc:
        raise QueryFailure("the refiner's database file is missing", code="DATA_NOT_FOUND") from exc
    except SealError as exc:
        raise _failure(exc) from exc
    finally:
        buffer.wipe()
