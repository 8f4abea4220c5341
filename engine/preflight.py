"""Preflight: every check of a job request that needs no image, before any job exists.

``Preflight.quote`` is what ``POST /jobs/quote`` answers and what ``POST /jobs``
runs before it creates the job row (and so before the nonce is used): the
request rules (engine/submission.py), the chain (refiner, instruction, approval,
the owner's permissions, at one block), the data the engine holds, the SQL
compiled and priced under the query step's own authorizer in a capped query
process (engine/query, never run: no row is read), and the payment
preconditions (engine/payment.py, dry run: nothing is sent). A refusal is the
``JobFailure``/``RequestError`` the job would have failed with, so submit
answers it at once (4xx) instead of after the image was fetched.

The job's story keeps its own checks: the chain, the data and the deposit may
change between submit and run.

Only the compile is remembered (engine/preflight_memo.py): the same request
again (a dashboard's fixed query) reuses the successful ``AccessReport`` of an
identical analysis instead of a new query process, while the request rules,
the chain and the payment dry run still run on every request. Safe because the
key is everything the report depends on (the data file's path, inode, size and
mtime, never its key; the SQL; the params' exact values; the owner's
permissions; the query limits; refiner and grantee), so a re-attached or
re-sealed file or a changed grant is a new key; a refusal is never remembered
(it is compiled again each time); and the job's worker re-checks the SQL in
its own query process when it runs it.

Bounded: at most ``max(2, max_concurrent_jobs)`` preflights at once (each may
hold a query process of up to ``query_max_memory_bytes`` and a few chain
reads); a caller waits up to ``BUSY_WAIT_S`` for a turn, then gets
PREFLIGHT_BUSY (503, retry).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from eth_utils import to_checksum_address

from engine.errors import ChainCheckFailure, JobFailure, RequestError
from engine.preflight_memo import AnalysisMemo, DataIdentity, analysis_key
from engine.query.model import SealedSource
from engine.store import CANCELLED, FAILED
from engine.submission import validate_request

if TYPE_CHECKING:
    from engine.chain import ChainCheck
    from engine.data import DataCatalog
    from engine.payment import Charger
    from engine.query import AccessReport
    from engine.settings import Settings
    from engine.store import JobStore
    from registry_client.eip712 import JobRequest

__all__ = ["BUSY_WAIT_S", "Preflight", "Quote"]

BUSY_WAIT_S = 10.0


class _Chain(Protocol):
    def verify(self, instruction_id: int, refiner_id: int, owner: str, *, cancel: Any = None,
               once: bool = False) -> ChainCheck: ...


@dataclass(frozen=True)
class Quote:
    """What a request would cost and read, as the job would then report it."""

    price_wei: int
    token: str | None  # None = the native token
    access_report: dict[str, Any]  # JobPublic.access_report's shape; row_count None (nothing ran)
    compute_job_id_required: bool
    refiner_id: int
    dlp_id: int
    block_number: int

    def public(self) -> dict[str, Any]:
        return {"price_wei": str(self.price_wei), "token": self.token, "access_report": self.access_report,
                "compute_job_id_required": self.compute_job_id_required, "instruction_approved": True,
                "refiner_id": self.refiner_id, "dlp_id": self.dlp_id, "block_number": self.block_number}


class Preflight:
    """The image-free checks of one engine (its chain, data, query limits and charger)."""

    def __init__(self, settings: Settings, store: JobStore, chain: _Chain, data: DataCatalog,
                 charger: Charger | None, *, clock: Callable[[], float],
                 analyse: Callable[..., AccessReport] | None = None):
        self.settings = settings
        self.store = store
        self.chain = chain
        self.data = data
        self.charger = charger
        self.clock = clock
        self._analyse = analyse  # engine.query.analyse_query unless a test injects one
        self._turns = threading.BoundedSemaphore(max(2, settings.max_concurrent_jobs))
        self._memo = AnalysisMemo()  # successful analyses only (engine/preflight_memo.py)

    def quote(self, request: JobRequest, signer: str, *, strict: bool = False) -> Quote:
        """The quote, or the refusal submit would answer (JobFailure / RequestError).

        A priced query that names no compute job (computeJobId 0) is quoted with
        ``compute_job_id_required`` (the builder opens one, then submits); with
        `strict` (submit) it is refused PAYMENT_REQUIRED, as the job would be.
        """
        validate_request(request, self.settings, self.clock())
        if not self._turns.acquire(timeout=BUSY_WAIT_S):
            raise RequestError("the engine is checking too many requests at once; retry shortly",
                               code="PREFLIGHT_BUSY", http_status=503)
        try:
            return self._quote(request, to_checksum_address(signer), strict)
        finally:
            self._turns.release()

    def _quote(self, request: JobRequest, owner: str, strict: bool) -> Quote:
        # One attempt: an HTTP request must not wait out the chain's retry window (the story does).
        check = self.chain.verify(request.instruction_id, request.refiner_id, owner, once=True)
        source = self.data.source(request.refiner_id)  # sealed: opened in the query process's memory
        report = self._report(source, request, check.permissions, owner)
        token = self._payment(request, owner, check.dlp_id, report, strict)
        access = {"columns": [list(c) for c in report.columns],
                  "permissions_used": list(report.permissions_used),
                  "price": str(report.price), "row_count": None}
        return Quote(report.price, token, access, report.price > 0 and self.charger is not None,
                     request.refiner_id, check.dlp_id, check.block_number)

    def check(self, request: JobRequest, signer: str) -> None:
        """Submit's preflight: refuse what the quote refuses; a chain outage lets the job queue.

        The story retries the chain for its whole retry window; submit must not
        hang on it nor refuse a job a short outage would only delay.
        """
        try:
            self.quote(request, signer, strict=True)
        except ChainCheckFailure as exc:
            if exc.code != "CHAIN_UNAVAILABLE":
                raise
        except JobFailure as exc:
            # An API engine, or one of a fleet sharing a store, may take a job for data it does
            # not hold: the engine that holds it claims the job and checks the SQL then.
            if exc.code != "DATA_NOT_FOUND" or not self._data_may_be_elsewhere():
                raise

    def _data_may_be_elsewhere(self) -> bool:
        s = self.settings
        return s.role == "api" or bool(s.store_url or s.store_url_env)

    def _report(self, path: Any, request: JobRequest, permissions: Any, owner: str) -> AccessReport:
        if self._analyse is None:
            from engine.query import analyse_query

            self._analyse = analyse_query
        mine = [p for p in permissions if p.refiner_id == request.refiner_id]
        params, limits = request.params, self.settings.query_limits()
        key = analysis_key(_data_identity(path), request.query, params, mine, limits,
                           refiner_id=request.refiner_id, grantee=owner)
        remembered = self._memo.get(key) if key is not None else None
        if remembered is not None:
            return remembered
        report = self._analyse(path, request.query, params, mine, limits,
                               refiner_id=request.refiner_id, grantee=owner)
        # A file swapped while it was analysed may have been read as either: not remembered.
        if key is not None and _data_identity(path) == key.data:
            self._memo.put(key, report)
        return report

    def _payment(self, request: JobRequest, owner: str, dlp_id: int, report: AccessReport,
                 strict: bool) -> str | None:
        if self.charger is None:
            return None  # this engine does not charge: every job runs free
        if request.compute_job_id == 0 and report.price > 0 and not strict:
            return self.charger.token(list(report.permissions_used))  # compute_job_id_required
        charge = self.charger.charge(
            owner=owner, instruction_id=request.instruction_id, refiner_id=request.refiner_id, dlp_id=dlp_id,
            compute_job_id=request.compute_job_id, amount=report.price,
            permission_ids=list(report.permissions_used),
            earlier_run_failed=lambda: self._earlier_run_failed(request.compute_job_id, owner), dry_run=True)
        return charge.token

    def _earlier_run_failed(self, compute_job_id: int, owner: str) -> bool:
        # engine.payment.earlier_run_failed, for a job not created yet.
        others = self.store.by_compute_job(compute_job_id)
        return bool(others) and all(j.owner == owner and j.status in (FAILED, CANCELLED) for j in others)


def _data_identity(source: Any) -> DataIdentity | None:
    """The data file as it is now (resolved path and stat), None when it cannot be read.

    A sealed source is identified by its file alone, never its key: the catalog
    writes every (re-)attached file under a new name, and AES-GCM opens a file
    with the one key it was sealed with.
    """
    sealed = isinstance(source, SealedSource)
    path = source.path if sealed else source
    try:
        resolved = os.path.realpath(path)
        st = os.stat(resolved)
    except (OSError, TypeError, ValueError):
        return None
    return ("sealed" if sealed else "plain", resolved, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
