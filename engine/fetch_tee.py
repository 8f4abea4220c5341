"""Feed a download, as it arrives, to a checker reading it in another thread: one pass, not two.

``StreamCheck(check)`` runs ``check(reader)`` in a thread; ``feed(chunk)``
hands it each chunk the download writes to disk, ``finish()`` ends the
stream and returns what ``check`` returned. The checker reads through a
bounded queue, so a slow checker slows the download (memory stays at a few
chunks) instead of buffering it.

The checker only reads: its verdict is used only once the whole download's
sha256 matched the expected hash (the caller decides). When the checker
fails (an ImageFailure: the archive is not one Docker image within the
caps), the download goes on, hashed only; ``finish()`` returns None and the
caller's later, ordinary check of the verified file reports the failure in
its usual step. So the outcome of an archive that does not match its hash is
still CHECKSUM_MISMATCH, never something learnt from its content.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from engine.errors import EngineError

__all__ = ["StreamCheck"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_DEPTH = 8  # chunks in flight between the download and the checker
_PUT_SLICE_S = 0.25  # a feed waiting on a full queue re-looks at the checker this often


class _QueueReader:
    """A file-like ``read`` over chunks arriving in a queue (None: the end)."""

    def __init__(self, chunks: queue.Queue[bytes | None]):
        self._chunks = chunks
        self._buf = memoryview(b"")
        self._ended = False

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            parts = [bytes(self._buf)]
            self._buf = memoryview(b"")
            while (more := self._next()) is not None:
                parts.append(more)
            return b"".join(parts)
        while not self._buf:
            more = self._next()
            if more is None:
                return b""
            self._buf = memoryview(more)
        out, self._buf = self._buf[:size], self._buf[size:]
        return bytes(out)

    @property
    def ended(self) -> bool:
        """True once the end of the stream was read (everything was seen)."""
        return self._ended and not self._buf

    def _next(self) -> bytes | None:
        if self._ended:
            return None
        chunk = self._chunks.get()
        if chunk is None:
            self._ended = True
        return chunk


class StreamCheck(Generic[T]):
    """``check(reader)`` over the bytes given to ``feed``, in its own thread."""

    def __init__(self, check: Callable[[_QueueReader], T], name: str = "archive-check"):
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=_DEPTH)
        self._check = check
        self._result: T | None = None
        self._failed = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        reader = _QueueReader(self._chunks)
        try:
            self._result = self._check(reader)
            if not reader.ended:
                # A verdict on part of the stream is no verdict on the file.
                self._failed = True
                log.warning("the archive check returned before the end of the download")
        except EngineError as exc:
            self._failed = True
            log.info("the archive check while downloading refused it: %s", exc.code)
        except Exception:  # the later check of the file decides; never fail the download
            self._failed = True
            log.warning("the archive check while downloading failed", exc_info=True)
        finally:
            self._done.set()

    def feed(self, chunk: bytes) -> None:
        """Hand one chunk to the checker (blocks while it is _DEPTH chunks behind)."""
        while not self._done.is_set():
            try:
                self._chunks.put(chunk, timeout=_PUT_SLICE_S)
                return
            except queue.Full:
                continue

    def finish(self) -> T | None:
        """End the stream; the checker's result, or None when it refused or failed."""
        self.feed_end()
        self._done.wait()
        return None if self._failed else self._result

    def feed_end(self) -> None:
        self.feed(None)  # type: ignore[arg-type]

    def abandon(self) -> None:
        """The download failed: end the stream and let the checker thread go."""
        self.feed_end()
