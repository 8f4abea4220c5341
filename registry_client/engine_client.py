"""HTTP client for the compute engine API: submit signed jobs, follow them, fetch their artifacts.

Every call is signed by the wallet: submit with an EIP-712 ``JobRequest``,
everything else with an ``EngineRead`` over (method, path, timestamp) in the
``X-Wallet-*`` headers, or after ``sign_in()`` (one EIP-4361 message) with the
session token the engine gave. Problem JSON answers become ``EngineApiError`` (code,
status, detail); a connection failure becomes ``EngineUnreachable``.

    client = EngineClient("http://127.0.0.1:8000", account, chain_id, registry)
    job = client.submit(1, 1, "SELECT locale, count(*) FROM users GROUP BY locale")
    job = client.wait(job["id"], on_change=lambda job, step: print(step["status"]))
    paths = client.download(job["id"], Path("out"))   # checks sha256s and the attestation
    signer = client.verify_attestation(job, client.artifacts(job["id"]))

An attestation (present when the engine has a signing key) is the engine's
EIP-712 ``JobResult`` signature over the job, its image, block and artifact
hashes: ``verify_attestation`` recomputes the digest from the listed artifacts
and recovers the engine's address (ATTESTATION_INVALID when it does not hold).

Sealed results (registry_client/sealing.py): an artifact listed with a
``sealed_sha256`` arrives as ciphertext sealed to the job's recipient; the
download checks the ciphertext's sha256, opens it with this client's wallet
key (SEAL_WRONG_KEY when it is sealed to another wallet) and checks the
plaintext's sha256; only the plaintext is kept. Sealed logs are opened alike.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

import httpx
from eth_utils import to_checksum_address

from registry_client import sealing
from registry_client.addresses import parse_address
from registry_client.artifact_files import Refused, plan, write_atomically
from registry_client.eip712 import (
    ZERO_ADDRESS,
    ZERO_BYTES32,
    JobRequest,
    JobResult,
    artifacts_digest,
    read_headers,
    recover_job_result_signer,
    sign_job_request,
)
from registry_client.errors import EngineApiError, EngineUnreachable, InputError, RegistryError

__all__ = ["DEFAULT_DEADLINE_S", "TERMINAL_STATUSES", "EngineClient"]

TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
DEFAULT_DEADLINE_S = 600
# How long one status request may be held by the engine (it caps this at 30 s);
# kept below the HTTP timeout so a held request never reads as "unreachable".
LONG_POLL_S = 15.0
_CHUNK = 1024 * 1024
# A request is sent at most this often: retried on 429 TOO_MANY_WAITERS (after its
# Retry-After, capped) and when the server had closed the kept-alive connection.
_ATTEMPTS = 3
_MAX_RETRY_AFTER_S = 5.0
_SESSION_MARGIN_S = 30  # a token this close to its expiry is not used: reads are signed again

StepCallback = Callable[[dict[str, Any], dict[str, Any]], None]


def default_nonce() -> int:
    """Time in ns with random low bits: unique per wallet without any stored counter."""
    return (time.time_ns() << 16) | secrets.randbits(16)


def _problem(resp: httpx.Response) -> EngineApiError:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "code" in body:
        detail = str(body.get("detail") or body.get("title") or "")
        return EngineApiError(detail or str(body["code"]), code=str(body["code"]), status=resp.status_code,
                              detail=detail)
    text = resp.text.strip().splitlines()[0][:200] if resp.text.strip() else resp.reason_phrase
    return EngineApiError(f"engine answered HTTP {resp.status_code}: {text}", code=f"HTTP_{resp.status_code}",
                          status=resp.status_code, detail=text)


def _too_many_waiters(resp: httpx.Response) -> bool:
    if resp.status_code != 429:
        return False
    try:
        body = resp.read() and resp.json()
    except (ValueError, httpx.HTTPError):
        return False
    return isinstance(body, dict) and body.get("code") == "TOO_MANY_WAITERS"


def _retry_after(resp: httpx.Response) -> float:
    """The answer's Retry-After in seconds (1 when absent or a date), within [0, 5]."""
    try:
        seconds = float(resp.headers.get("retry-after", "1"))
    except ValueError:
        seconds = 1.0
    if math.isnan(seconds):
        seconds = 1.0
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_S)



def _check_sha(name: str, got: str, expected: str, header: str | None) -> None:
    if got != expected or (header and header != expected):
        raise EngineApiError(f"artifact {name!r} arrived with sha256 {got}, expected {expected}",
                             code="CHECKSUM_MISMATCH")


class _HashingWriter:
    """A file writer that hashes what it writes (the opened plaintext)."""

    def __init__(self, fh: Any):
        self.fh, self.hash = fh, hashlib.sha256()

    def write(self, chunk: bytes) -> int:
        self.hash.update(chunk)
        return self.fh.write(chunk)

    def hexdigest(self) -> str:
        return self.hash.hexdigest()

    def close(self) -> None:
        self.fh.close()


def _same_address(a: str, b: str) -> bool:
    try:
        return to_checksum_address(a) == to_checksum_address(b)
    except ValueError:
        return False


Progress = Callable[[int, "int | None"], None]  # (bytes so far, total or None)


class _Counter:
    """Bytes downloaded so far, handed to a progress callback."""

    def __init__(self, progress: Progress | None, total: int | None):
        self.progress, self.total, self.done = progress, total, 0

    def add(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.total)


class EngineClient:
    """A wallet's session with one engine (bound to one chain and registry)."""

    def __init__(
        self,
        base_url: str,
        account: Any,
        chain_id: int,
        registry_address: str,
        http: httpx.Client | None = None,
        *,
        timeout_s: float = 30.0,
    ):
        self.base_url = base_url.rstrip("/")
        try:
            url = httpx.URL(self.base_url)
        except httpx.InvalidURL as exc:
            raise InputError(f"engine URL {base_url[:80]!r} is not a valid URL ({exc})") from exc
        if url.scheme not in ("http", "https") or not url.host:
            raise InputError(f"engine URL {base_url[:80]!r} must be http(s)://host[:port][/path]")
        self.account = account
        self.chain_id = chain_id
        self.registry_address = parse_address(registry_address, "the registry address")
        self._http = http or httpx.Client(timeout=timeout_s)
        self._prefix = url.path.rstrip("/")
        self._session: tuple[str, int] | None = None  # (token, expires_at) from sign_in()

    # ---- plumbing ----------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _url(self, path: str) -> str:
        return self.base_url + quote(path, safe="/")

    def _signed(self, method: str, path: str) -> dict[str, str]:
        if self._session is not None and self._session[1] > time.time() + _SESSION_MARGIN_S:
            return {"Authorization": f"Bearer {self._session[0]}"}
        # Sign the decoded path as the server sees it (prefix of base_url included).
        return read_headers(self.account, self.chain_id, self.registry_address, method, self._prefix + path)

    @contextmanager
    def _request(self, method: str, path: str, *, sign: bool = True, stream: bool = False,
                 **kwargs: Any) -> Iterator[httpx.Response]:
        resp = self._send(method, path, sign, stream, kwargs)
        try:
            if resp.status_code >= 400:
                if stream:
                    resp.read()
                raise _problem(resp)
            yield resp
        finally:
            resp.close()

    def _send(self, method: str, path: str, sign: bool, stream: bool, kwargs: dict[str, Any]) -> httpx.Response:
        """Send, retried (bounded) on 429 TOO_MANY_WAITERS and on a kept-alive connection the
        server had closed. Safe for every call here: a submit replay returns the same job
        (idempotent by nonce), reads change nothing and a repeated cancel answers the same."""
        for attempt in range(1, _ATTEMPTS + 1):
            headers = self._signed(method, path) if sign else {}  # a fresh timestamp each time
            request = self._http.build_request(method, self._url(path), headers=headers, **kwargs)
            try:
                resp = self._http.send(request, stream=stream)
            except httpx.RemoteProtocolError as exc:
                if attempt < _ATTEMPTS:
                    continue  # closed before any answer (keep-alive race): a new connection
                raise EngineUnreachable(f"the engine at {self.base_url} closed the connection: {exc}") from exc
            except httpx.TimeoutException as exc:
                raise EngineUnreachable(f"the engine at {self.base_url} did not answer in time") from exc
            except httpx.TransportError as exc:
                raise EngineUnreachable(f"cannot reach the engine at {self.base_url}: {exc}") from exc
            if attempt == _ATTEMPTS or not _too_many_waiters(resp):
                return resp
            resp.close()
            time.sleep(_retry_after(resp))
        raise AssertionError("unreachable")  # the loop returns or raises

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        with self._request(method, path, **kwargs) as resp:
            try:
                return resp.json()
            except ValueError as exc:
                raise EngineApiError(f"the engine's answer to {method} {path} is not JSON",
                                     code="BAD_RESPONSE", status=resp.status_code) from exc

    # ---- jobs --------------------------------------------------------------

    def submit(
        self,
        instruction_id: int,
        refiner_id: int,
        query: str,
        params: list | dict | None = None,
        nonce: int | None = None,
        deadline: int | None = None,
        compute_job_id: int = 0,
        recipient: str | None = None,
        recipient_public_key: str | None = None,
    ) -> dict[str, Any]:
        """Sign and submit a job request; returns the job (the same one on a replay).

        `compute_job_id`: the signer's on-chain ComputeEngine job that pays a priced query (0: free).
        `recipient` / `recipient_public_key`: seal the results to that wallet instead of the signer.
        """
        req = self.request(instruction_id, refiner_id, query, params, nonce, deadline, compute_job_id)
        if recipient is not None or recipient_public_key is not None:
            req = dataclasses.replace(req, recipient=recipient, recipient_public_key=recipient_public_key)
        return self.submit_request(req)

    def request(self, instruction_id: int, refiner_id: int, query: str, params: list | dict | None = None,
                nonce: int | None = None, deadline: int | None = None, compute_job_id: int = 0) -> JobRequest:
        """The JobRequest `submit` would sign (for a quote of exactly that request)."""
        return JobRequest.create(
            instruction_id, refiner_id, query, [] if params is None else params,
            default_nonce() if nonce is None else nonce,
            int(time.time()) + DEFAULT_DEADLINE_S if deadline is None else deadline,
            compute_job_id,
        )

    def submit_request(self, req: JobRequest) -> dict[str, Any]:
        return self._json("POST", "/jobs", sign=False, json=self._signed_body(req))

    def quote_request(self, req: JobRequest) -> dict[str, Any]:
        """POST /jobs/quote: the access report and price, or the refusal submit would answer."""
        return self._json("POST", "/jobs/quote", sign=False, json=self._signed_body(req))

    def _signed_body(self, req: JobRequest) -> dict[str, Any]:
        return {
            "request": req.to_message(),
            "signature": sign_job_request(self.account, self.chain_id, self.registry_address, req),
            "signer": self.account.address,
            "chainId": self.chain_id,
            "verifyingContract": self.registry_address,
        }

    def jobs(self, *, status: str | None = None, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        """GET /jobs: {"jobs": [...newest first], "next_cursor": str | None}."""
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        if cursor:
            params["cursor"] = cursor
        return self._json("GET", "/jobs", params=params)

    def refiner_schema(self, refiner_id: int) -> dict[str, Any]:
        """GET /refiners/{id}/schema: tables, columns, types, and this wallet's coverage and prices."""
        return self._json("GET", f"/refiners/{int(refiner_id)}/schema")

    def status(self, job_id: str, *, wait_s: float = 0, known_status: str | None = None,
               until_end: bool = False) -> dict[str, Any]:
        """The job; with `wait_s` and `known_status`, the engine answers once the status changes.

        With `wait_s` and `until_end`, once the job has finished (`known_status`
        optional): one held request for the whole job. Either way the engine
        answers after `wait_s` seconds at the latest, with the job as it is.
        """
        params: dict[str, Any] | None = None
        if wait_s and until_end:
            # The status too: an engine that predates `until` ignores it and waits for a change instead.
            params = {"wait": wait_s, "until": "end", **({"status": known_status} if known_status else {})}
        elif wait_s and known_status:
            params = {"wait": wait_s, "status": known_status}
        return self._json("GET", f"/jobs/{job_id}", params=params)

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._json("POST", f"/jobs/{job_id}/cancel")

    def wait(
        self,
        job_id: str,
        poll_s: float = 0.5,
        timeout_s: float | None = None,
        on_change: StepCallback | None = None,
    ) -> dict[str, Any]:
        """Follow the job until it ends; `on_change(job, step)` runs once per new step, in order.

        Long-polls: without `on_change` the engine answers when the job has ended
        (`until=end`: one request per job, another only each LONG_POLL_S); with
        it, when the status changes (one request per step, each step reported as
        it happens). `poll_s` only paces retries against an engine that answers
        at once without a change (one that predates `until=end`).
        """
        seen = 0
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        known: str | None = None
        until_end = on_change is None  # nobody to tell about the steps in between
        while True:
            hold = LONG_POLL_S if deadline is None else max(0.0, min(LONG_POLL_S, deadline - time.monotonic()))
            asked = time.monotonic()
            job = self.status(job_id, wait_s=hold, known_status=known, until_end=until_end)
            held_s = time.monotonic() - asked
            changed = job.get("status") != known
            known = job.get("status")
            steps = job.get("steps") or []
            for step in steps[seen:]:
                if on_change is not None:
                    on_change(job, step)
            seen = max(seen, len(steps))
            if job.get("status") in TERMINAL_STATUSES:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise EngineApiError(f"job {job_id} still {job.get('status')} after {timeout_s:g} s",
                                     code="WAIT_TIMEOUT")
            if not changed and held_s < hold:
                time.sleep(poll_s)  # answered early with no news: an engine that does not hold requests

    def logs(self, job_id: str) -> str:
        """The kept logs; sealed ones are opened with this client's wallet (SEAL_* errors)."""
        with self._request("GET", f"/jobs/{job_id}/logs") as resp:
            body = resp.content
        if body.startswith(sealing.MAGIC):
            body = sealing.open_bytes(body, private_key=bytes(self.account.key))
        return body.decode("utf-8", errors="replace")

    # ---- artifacts ---------------------------------------------------------

    def artifacts(self, job_id: str) -> list[dict[str, Any]]:
        return list(self.artifact_listing(job_id).get("artifacts", []))

    def artifact_listing(self, job_id: str) -> dict[str, Any]:
        """GET /jobs/{id}/artifacts as served: {job_id, expires_at, artifacts: [...]}."""
        return dict(self._json("GET", f"/jobs/{job_id}/artifacts"))

    def download(self, job_id: str, out_dir: Path | str, *, force: bool = False,
                 progress: Progress | None = None) -> list[Path]:
        """Stream every artifact into out_dir (sub-folders kept), each sha256-checked; absolute paths.

        Strict: any unsafe name (UNSAFE_ARTIFACT_NAME, NAME_TOO_LONG) or existing
        file without `force` (FILE_EXISTS) is refused before anything is written.
        `download_report` writes the rest instead. `progress(bytes_so_far, total)`
        runs after every chunk (total: the listed sizes' sum). Then, when the job
        carries an attestation, it must recover to its stated signer over exactly
        these hashes (ATTESTATION_INVALID otherwise; the files stay on disk, checked).
        """
        return self.download_report(job_id, out_dir, force=force, strict=True, progress=progress)[0]

    def download_report(self, job_id: str, out_dir: Path | str, *, force: bool = False,
                        strict: bool = False, progress: Progress | None = None) -> tuple[list[Path], list[Refused]]:
        """Like `download`, but refuses unsafe names one by one and writes the rest: (paths, refused)."""
        out = Path(out_dir)
        listing = self.artifacts(job_id)
        targets, refused = plan(out, [a["name"] for a in listing], force)  # FILE_EXISTS before any write
        if strict and refused:
            raise EngineApiError(refused[0].reason, code=refused[0].code)
        by_name = {a["name"]: a for a in listing}
        wanted = {name for name, _ in targets}
        counter = _Counter(progress, sum(int(a.get("sealed_size") or a.get("size") or 0)
                                         for a in listing if a["name"] in wanted))
        paths = [self._download_one(job_id, by_name[name], target, force, counter) for name, target in targets]
        job = self.status(job_id)
        if job.get("attestation"):
            self.verify_attestation(job, listing)
        return paths, refused

    def verify_attestation(self, job: dict[str, Any], artifacts: list[dict[str, Any]],
                           expected_signer: str | None = None) -> str:
        """The engine address that attested `job` with these artifacts (name, sha256 each).

        Recomputes the artifacts digest, rebuilds the signed `JobResult` and
        recovers its signer under this client's domain; it must equal the stated
        signer and `expected_signer` when given. ATTESTATION_MISSING when the job
        has none, ATTESTATION_INVALID on any mismatch.
        """
        att = job.get("attestation")
        if not att:
            raise EngineApiError(f"job {job.get('id')} carries no attestation (the engine has no signing key)",
                                 code="ATTESTATION_MISSING")
        try:
            digest = artifacts_digest((a["name"], a["sha256"]) for a in artifacts)
            recipient = att.get("recipient") or ZERO_ADDRESS
            sealed = (artifacts_digest((a["name"], a["sealed_sha256"]) for a in artifacts)
                      if int(recipient, 16) else ZERO_BYTES32)
            result = JobResult(job["id"], job["owner"], int(job["instruction_id"]), int(job["refiner_id"]),
                               job["image_sha256"], int(job["block_number"]), digest, int(att["finished_at"]),
                               recipient, sealed)
            signer = recover_job_result_signer(self.chain_id, self.registry_address, result, att["signature"])
        except (KeyError, TypeError, ValueError, RegistryError) as exc:
            raise EngineApiError(f"job {job.get('id')}: the attestation cannot be checked: {exc}",
                                 code="ATTESTATION_INVALID") from exc
        if digest != str(att.get("artifacts_digest", "")).lower() or sealed != str(
                att.get("sealed_digest", ZERO_BYTES32)).lower():
            raise EngineApiError(f"job {job['id']}: the artifacts do not match the attested digest",
                                 code="ATTESTATION_INVALID")
        for claimed in (att.get("signer"), expected_signer):
            if claimed is not None and _same_address(claimed, signer) is False:
                raise EngineApiError(f"job {job['id']}: the attestation recovers to {signer}, not {claimed}",
                                     code="ATTESTATION_INVALID")
        return signer

    def _download_one(self, job_id: str, artifact: dict[str, Any], target: Path, force: bool,
                      counter: _Counter | None = None) -> Path:
        """Stream one artifact, check the sha256 of what arrived; open a sealed one with the wallet.

        Plaintext never lands under its own name before its sha256 matched
        (write_atomically); a sealed artifact's ciphertext waits in a short
        temporary file beside it and is removed either way.
        """
        name, sealed_sha = artifact["name"], artifact.get("sealed_sha256")
        if not sealed_sha:
            with write_atomically(target, force) as (fh, commit):
                self._fetch_artifact(job_id, name, fh, artifact["sha256"], counter)
                commit()
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, sealed_name = tempfile.mkstemp(prefix=".dl-", suffix=".sealed", dir=target.parent)
        sealed_part = Path(sealed_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                self._fetch_artifact(job_id, name, fh, sealed_sha, counter)
            with write_atomically(target, force) as (fh, commit):
                hasher = _HashingWriter(fh)
                with open(sealed_part, "rb") as reader:
                    sealing.open_stream(reader, hasher, private_key=bytes(self.account.key))
                _check_sha(name, hasher.hexdigest(), artifact["sha256"], None)
                commit()
        finally:
            sealed_part.unlink(missing_ok=True)
        return target

    def _fetch_artifact(self, job_id: str, name: str, fh: Any, expected_sha: str, counter: _Counter | None) -> None:
        digest = hashlib.sha256()
        with self._request("GET", f"/jobs/{job_id}/artifacts/{name}", stream=True) as resp:
            header = resp.headers.get("x-content-sha256")
            for chunk in resp.iter_bytes(_CHUNK):
                digest.update(chunk)
                fh.write(chunk)
                if counter is not None:
                    counter.add(len(chunk))
        _check_sha(name, digest.hexdigest(), expected_sha, header)

    def download_zip(self, job_id: str, out_path: Path | str, *, force: bool = False,
                     progress: Progress | None = None) -> Path:
        """Stream the whole-job zip to out_path (absolute path returned; FILE_EXISTS without `force`).

        Of a sealed job, the zip holds the sealed files as stored (not opened).
        `progress(bytes_so_far, Content-Length)` runs after every chunk.
        """
        target = Path(out_path).resolve()
        if not force and target.exists():
            raise EngineApiError(f"{target} already exists: pass --force to replace it", code="FILE_EXISTS")
        with self._request("GET", f"/jobs/{job_id}/artifacts.zip", stream=True) as resp, \
                write_atomically(target, force) as (fh, commit):
            length = resp.headers.get("content-length", "")
            counter = _Counter(progress, int(length) if length.isdigit() else None)
            for chunk in resp.iter_bytes(_CHUNK):
                fh.write(chunk)
                counter.add(len(chunk))
            commit()
        return target

    def inspect_instruction(self, instruction_id: int, *, timeout_s: float = 330.0) -> dict[str, Any]:
        """GET /instructions/{id}/inspect: the static audit of the instruction's image (public, unsigned).

        The first audit of an image may download it: the timeout is the engine's fetch deadline and then some.
        """
        return self._json("GET", f"/instructions/{int(instruction_id)}/inspect", sign=False, timeout=timeout_s)

    def sign_in(self, lifetime_s: int = 3600) -> dict[str, Any]:
        """Sign in once (EIP-4361 via GET /session/nonce, POST /session); later reads carry the token.

        ``lifetime_s`` is capped by what the engine allows; near its end reads fall back to signatures.
        """
        from eth_account.messages import encode_defunct

        from registry_client.siwe import SiweMessage, build_siwe

        nonce = self._json("GET", "/session/nonce", sign=False)
        now = int(time.time())
        text = build_siwe(SiweMessage(
            domain=nonce["domain"], address=self.account.address, statement="Sign in to the compute engine.",
            uri=self.base_url, version="1", chain_id=self.chain_id, nonce=nonce["nonce"], issued_at=now,
            expiration_time=now + min(int(lifetime_s), int(nonce["max_lifetime_s"]))))
        signature = "0x" + bytes(self.account.sign_message(encode_defunct(text=text)).signature).hex()
        session = self._json("POST", "/session", sign=False, json={"message": text, "signature": signature})
        self._session = (session["token"], int(session["expires_at"]))
        return session

    def health(self) -> dict[str, Any]:
        """GET /health; a 503 answer is returned too (it carries the failing checks)."""
        try:
            resp = self._http.get(self._url("/health"))
        except httpx.TransportError as exc:
            raise EngineUnreachable(f"cannot reach the engine at {self.base_url}: {exc}") from exc
        if resp.status_code not in (200, 503):
            raise _problem(resp)
        return resp.json()
