"""HTTP client for the compute engine API: submit signed jobs, follow them, fetch their artifacts.

Every call is signed by the wallet: submit with an EIP-712 ``JobRequest``,
everything else with an ``EngineRead`` over (method, path, timestamp) in the
``X-Wallet-*`` headers. Problem JSON answers become ``EngineApiError`` (code,
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
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, Self
from urllib.parse import quote

import httpx
from eth_utils import to_checksum_address

from registry_client import sealing
from registry_client.addresses import parse_address
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
        return EngineApiError(f"{body['code']}: {detail}", code=str(body["code"]), status=resp.status_code,
                              detail=detail)
    text = resp.text.strip().splitlines()[0][:200] if resp.text.strip() else resp.reason_phrase
    return EngineApiError(f"engine answered HTTP {resp.status_code}: {text}", code=f"HTTP_{resp.status_code}",
                          status=resp.status_code, detail=text)


def _safe_target(out_dir: Path, name: str) -> Path:
    """out_dir/name, refusing names that are absolute or climb out of out_dir."""
    parts = PurePosixPath(name).parts
    if (not name or "\\" in name or "\x00" in name or PurePosixPath(name).is_absolute()
            or any(p in ("..", "") for p in parts)):
        raise EngineApiError(f"refusing artifact name {name!r}: it would leave {out_dir}", code="UNSAFE_ARTIFACT_NAME")
    root = out_dir.resolve()
    target = (root / Path(*parts)).resolve()
    if root != target and root not in target.parents:
        raise EngineApiError(f"refusing artifact name {name!r}: it would leave {out_dir}", code="UNSAFE_ARTIFACT_NAME")
    return target


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
        # Sign the decoded path as the server sees it (prefix of base_url included).
        return read_headers(self.account, self.chain_id, self.registry_address, method, self._prefix + path)

    @contextmanager
    def _request(self, method: str, path: str, *, sign: bool = True, stream: bool = False,
                 **kwargs: Any) -> Iterator[httpx.Response]:
        headers = self._signed(method, path) if sign else {}
        request = self._http.build_request(method, self._url(path), headers=headers, **kwargs)
        try:
            resp = self._http.send(request, stream=stream)
        except httpx.TimeoutException as exc:
            raise EngineUnreachable(f"the engine at {self.base_url} did not answer in time") from exc
        except httpx.TransportError as exc:
            raise EngineUnreachable(f"cannot reach the engine at {self.base_url}: {exc}") from exc
        try:
            if resp.status_code >= 400:
                if stream:
                    resp.read()
                raise _problem(resp)
            yield resp
        finally:
            resp.close()

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
        req = JobRequest.create(
            instruction_id, refiner_id, query, [] if params is None else params,
            default_nonce() if nonce is None else nonce,
            int(time.time()) + DEFAULT_DEADLINE_S if deadline is None else deadline,
            compute_job_id,
        )
        if recipient is not None or recipient_public_key is not None:
            req = dataclasses.replace(req, recipient=recipient, recipient_public_key=recipient_public_key)
        return self.submit_request(req)

    def submit_request(self, req: JobRequest) -> dict[str, Any]:
        body = {
            "request": req.to_message(),
            "signature": sign_job_request(self.account, self.chain_id, self.registry_address, req),
            "signer": self.account.address,
            "chainId": self.chain_id,
            "verifyingContract": self.registry_address,
        }
        return self._json("POST", "/jobs", sign=False, json=body)

    def status(self, job_id: str, *, wait_s: float = 0, known_status: str | None = None) -> dict[str, Any]:
        """The job; with `wait_s` and `known_status`, the engine answers once the status changes."""
        params = {"wait": wait_s, "status": known_status} if wait_s and known_status else None
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

        Long-polls (the engine answers when the status changes), so `poll_s` only
        paces retries against an engine that answers at once.
        """
        seen = 0
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        known: str | None = None
        while True:
            hold = LONG_POLL_S if deadline is None else max(0.0, min(LONG_POLL_S, deadline - time.monotonic()))
            job = self.status(job_id, wait_s=hold, known_status=known)
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
            if not changed:
                time.sleep(poll_s)

    def logs(self, job_id: str) -> str:
        """The kept logs; sealed ones are opened with this client's wallet (SEAL_* errors)."""
        with self._request("GET", f"/jobs/{job_id}/logs") as resp:
            body = resp.content
        if body.startswith(sealing.MAGIC):
            body = sealing.open_bytes(body, private_key=bytes(self.account.key))
        return body.decode("utf-8", errors="replace")

    # ---- artifacts ---------------------------------------------------------

    def artifacts(self, job_id: str) -> list[dict[str, Any]]:
        return list(self._json("GET", f"/jobs/{job_id}/artifacts").get("artifacts", []))

    def download(self, job_id: str, out_dir: Path | str) -> list[Path]:
        """Stream every artifact into out_dir (sub-folders kept), each sha256-checked.

        Then, when the job carries an attestation, it must recover to its stated
        signer over exactly these hashes (ATTESTATION_INVALID otherwise; the
        files stay on disk, already checked against the listing).
        """
        out = Path(out_dir)
        listing = self.artifacts(job_id)
        targets = [(a, _safe_target(out, a["name"])) for a in listing]  # refuse before writing anything
        paths = [self._download_one(job_id, a, target) for a, target in targets]
        job = self.status(job_id)
        if job.get("attestation"):
            self.verify_attestation(job, listing)
        return paths

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

    def _download_one(self, job_id: str, artifact: dict[str, Any], target: Path) -> Path:
        """Stream one artifact, check the sha256 of what arrived; open a sealed one with the wallet."""
        name, sealed_sha = artifact["name"], artifact.get("sealed_sha256")
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        sealed_part = target.with_name(target.name + ".sealed.part")
        digest = hashlib.sha256()
        try:
            first = sealed_part if sealed_sha else part
            with self._request("GET", f"/jobs/{job_id}/artifacts/{name}", stream=True) as resp, \
                    open(first, "wb") as fh:
                header = resp.headers.get("x-content-sha256")
                for chunk in resp.iter_bytes(_CHUNK):
                    digest.update(chunk)
                    fh.write(chunk)
            _check_sha(name, digest.hexdigest(), sealed_sha or artifact["sha256"], header)
            if sealed_sha:
                self._open_sealed(name, sealed_part, part, artifact["sha256"])
            os.replace(part, target)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        finally:
            sealed_part.unlink(missing_ok=True)
        return target

    def _open_sealed(self, name: str, sealed_part: Path, part: Path, plain_sha: str) -> None:
        hasher = _HashingWriter(open(part, "wb"))  # noqa: SIM115 - closed below
        try:
            with open(sealed_part, "rb") as reader:
                sealing.open_stream(reader, hasher, private_key=bytes(self.account.key))
        finally:
            hasher.close()
        _check_sha(name, hasher.hexdigest(), plain_sha, None)

    def download_zip(self, job_id: str, out_path: Path | str) -> Path:
        """Stream the whole-job zip to out_path."""
        target = Path(out_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        try:
            with self._request("GET", f"/jobs/{job_id}/artifacts.zip", stream=True) as resp, open(part, "wb") as fh:
                fh.writelines(resp.iter_bytes(_CHUNK))
            os.replace(part, target)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return target

    def health(self) -> dict[str, Any]:
        """GET /health; a 503 answer is returned too (it carries the failing checks)."""
        try:
            resp = self._http.get(self._url("/health"))
        except httpx.TransportError as exc:
            raise EngineUnreachable(f"cannot reach the engine at {self.base_url}: {exc}") from exc
        if resp.status_code not in (200, 503):
            raise _problem(resp)
        return resp.json()
