"""Serve the static audit of a compute instruction: chain read, verified download, cached report.

``InstructionAuditor.inspect(id)`` reads the instruction's (sha256, url) from
the ComputeInstructionRegistry, takes the archive from the engine's own
archive cache or downloads it with the same guards as a job's fetch
(engine/fetch.py: public addresses only unless allowed, wall-clock deadline,
size cap, sha256 verified against the chain before anything is read), then
audits it statically (engine/audit.py). The report is cached by sha256 in
``<data_dir>/audits``, so an image is audited once whatever its id (at most
``MAX_REPORTS`` kept, the oldest removed first).

Concurrency is bounded: requests for one sha256 share one flight (one
download, one audit; the others wait for it and get its answer or its
error), at most ``max_concurrent`` audits run at once, and at most
``4 * max_concurrent`` requests wait; past either, AUDIT_BUSY (503).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.audit import AUDIT_VERSION, audit_archive
from engine.errors import ChainCheckFailure, EngineError, FetchFailure, ImageFailure

__all__ = ["AuditError", "InstructionAuditor", "auditor_for"]

log = logging.getLogger("engine.audit")
_MAX_REPORT_BYTES = 16 * 1024 * 1024
MAX_REPORTS = 1_000  # cached reports kept; the least recently written go first


class AuditError(EngineError):
    """An inspect request the engine cannot answer; ``code`` and ``http_status`` say why."""

    headers: dict[str, str] | None = None  # added to the problem answer (Retry-After)


_FETCH_CODES = {"CHECKSUM_MISMATCH": ("IMAGE_HASH_MISMATCH", 502), "IMAGE_TOO_LARGE": ("IMAGE_TOO_LARGE", 422)}
_CHAIN_CODES = {"INSTRUCTION_NOT_FOUND": 404, "CHAIN_UNAVAILABLE": 503}


@dataclass
class _Flight:
    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0
    error: AuditError | None = None


class InstructionAuditor:
    """Audits instructions' images; ``read_instruction(id) -> (sha256 hex, url)``."""

    def __init__(self, read_instruction: Callable[[int], tuple[str, str]], cache: Any, audits_dir: Path,
                 *, max_expanded_bytes: int, max_concurrent: int = 2):
        self.read_instruction = read_instruction
        self.cache = cache  # engine.fetch.ImageCache (the engine's own: shared archives)
        self.audits_dir = Path(audits_dir)
        self.audits_dir.mkdir(parents=True, exist_ok=True)
        self.max_expanded_bytes = max_expanded_bytes
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._max_waiting = 4 * max_concurrent
        self._guard = threading.Lock()
        self._flights: dict[str, _Flight] = {}
        self._waiting = 0

    def inspect(self, instruction_id: int) -> dict[str, Any]:
        sha256, url = self._instruction(instruction_id)
        report = self._load(sha256)
        if report is None:
            report = self._shared(sha256, url)
        return {"instruction_id": instruction_id, "sha256": "0x" + sha256, "url": url, **report}

    def _instruction(self, instruction_id: int) -> tuple[str, str]:
        try:
            sha256, url = self.read_instruction(instruction_id)
        except ChainCheckFailure as exc:
            raise AuditError(exc.message, code=exc.code, http_status=_CHAIN_CODES.get(exc.code, 503)) from exc
        return sha256.lower().removeprefix("0x"), url

    def _shared(self, sha256: str, url: str) -> dict[str, Any]:
        with self._guard:
            if self._waiting >= self._max_waiting:
                raise _busy()
            self._waiting += 1
            flight = self._flights.setdefault(sha256, _Flight())
            flight.users += 1
        try:
            with flight.lock:
                if flight.error is not None:
                    raise flight.error
                report = self._load(sha256)
                if report is not None:
                    return report
                try:
                    return self._run(sha256, url)
                except AuditError as exc:
                    flight.error = exc  # the requests waiting on this flight get the same answer
                    raise
        finally:
            with self._guard:
                self._waiting -= 1
                flight.users -= 1
                if flight.users == 0:
                    self._flights.pop(sha256, None)

    def _run(self, sha256: str, url: str) -> dict[str, Any]:
        if not self._slots.acquire(blocking=False):
            raise _busy()
        try:
            try:
                archive = self.cache.fetch(url, sha256)
            except FetchFailure as exc:
                code, status = _FETCH_CODES.get(exc.code, ("IMAGE_FETCH_FAILED", 502))
                raise AuditError(exc.message, code=code, http_status=status) from exc
            try:
                report = audit_archive(archive.path, max_expanded_bytes=self.max_expanded_bytes,
                                       tmp_dir=getattr(self.cache, "tmp_dir", None),
                                       checked=archive.info is not None)  # checked as it downloaded
            except ImageFailure as exc:
                raise AuditError(exc.message, code=exc.code, http_status=422) from exc
            report = {"archive_bytes": archive.size, **report}
            self._save(sha256, report)
            return report
        finally:
            self._slots.release()

    # -- the report cache ---------------------------------------------------

    def _path(self, sha256: str) -> Path:
        return self.audits_dir / f"{sha256}.v{AUDIT_VERSION}.json"

    def _load(self, sha256: str) -> dict[str, Any] | None:
        path = self._path(sha256)
        try:
            if path.stat().st_size > _MAX_REPORT_BYTES:
                return None
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            log.warning("the cached audit %s is unreadable: auditing again", path.name)
            return None

    def _save(self, sha256: str, report: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".audit-", dir=self.audits_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(report, out)
            os.replace(tmp, self._path(sha256))
            self._prune()
        except OSError:
            log.warning("could not cache the audit of %s", sha256)
            Path(tmp).unlink(missing_ok=True)

    def _prune(self) -> None:
        reports = sorted(self.audits_dir.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for old in reports[: max(0, len(reports) - MAX_REPORTS)]:
            old.unlink(missing_ok=True)  # audited again if asked for again


def _busy() -> AuditError:
    error = AuditError("the engine is auditing as many images as it allows at once; retry shortly",
                       code="AUDIT_BUSY", http_status=503)
    error.headers = {"Retry-After": "5"}
    return error


def auditor_for(service: Any) -> InstructionAuditor | None:
    """The auditor over a JobService's chain verifier and archive cache (None: a service without them)."""
    chain, cache, settings = (getattr(service, name, None) for name in ("chain", "images", "settings"))
    if not callable(getattr(chain, "instruction", None)) or not hasattr(cache, "fetch") or settings is None:
        return None
    return InstructionAuditor(chain.instruction, cache, Path(settings.data_dir) / "audits",
                              max_expanded_bytes=settings.image_max_expanded_bytes,
                              max_concurrent=getattr(settings, "audit_max_concurrent", 2))
