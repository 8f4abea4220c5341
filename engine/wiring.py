"""Wiring: the job service built from settings with the real components.

The one place that opens connections (chain RPC, Docker) and reads the
engine's key, so engine/service.py stays free of set-up and can be tested
with fakes. `create_app(settings)` calls `build_service` when given no service.

One engine per data dir: `build_service` first takes an exclusive `flock` on
`<data_dir>/engine.lock` (writing its pid there) and keeps it for the life of
the process, before anything reads or cleans the dir. A second engine on the
same dir would otherwise reconcile the first one's jobs and remove its
containers as "leftovers"; it refuses to start instead (DATA_DIR_LOCKED).
`service.stop()` releases the lock once the service's threads have ended
(one that is still running a job keeps it: a new engine on the dir would
reconcile that job), so one process can stop an engine and start another on
the same dir. `compute-engine data add` takes no lock: it only adds a file to
`refiners/` with an atomic rename, which a running engine reads safely.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path
from typing import IO, Any

from engine.data import DataCatalog
from engine.data_keys import load_kek
from engine.errors import EngineError
from engine.service import JobService
from engine.settings import Settings, SettingsError
from engine.store import JobStore
from engine.store_api import JobStore as AnyJobStore
from engine.story import JobFiles

__all__ = ["build_service", "engine_id", "load_signer", "open_store", "read_only_web3"]

log = logging.getLogger(__name__)

LOCK_FILE = "engine.lock"
# Locks this process holds, by resolved data dir: kept open until the service stops.
_held: dict[Path, IO[str]] = {}


def _lock_data_dir(data_dir: Path) -> None:
    """Hold `<data_dir>/engine.lock` exclusively; EngineError(DATA_DIR_LOCKED) if another engine does."""
    data_dir.mkdir(parents=True, exist_ok=True)
    key = data_dir.resolve()
    if key in _held:
        raise _locked(data_dir, os.getpid())
    handle = (data_dir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read(32).strip()
        handle.close()
        raise _locked(data_dir, int(holder) if holder.isdigit() else None) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    _held[key] = handle


def _unlock_data_dir(data_dir: Path) -> None:
    handle = _held.pop(data_dir.resolve(), None)
    if handle is not None:
        handle.close()  # closing the file releases the flock


def _locked(data_dir: Path, pid: int | None) -> EngineError:
    holder = f" (pid {pid})" if pid is not None else ""
    return EngineError(
        f"another engine{holder} is using the data dir {data_dir}: one engine per data dir; "
        "stop it or set a different ENGINE_DATA_DIR",
        code="DATA_DIR_LOCKED",
    )


def engine_id(data_dir: Path) -> str:
    """This engine's stable id, kept in its data dir (labels its containers)."""
    return JobFiles(data_dir).engine_id()


def load_signer(settings: Settings) -> Any | None:
    """The engine's attestation key as an eth_account account, or None when not configured."""
    from eth_account import Account

    secret = settings.signing_key()
    if secret is None:
        return None
    try:
        return Account.from_key(secret.get_secret_value().strip())
    except Exception:  # noqa: BLE001 - any parse failure; its message could quote the key
        # `from None`: the underlying exception (and its traceback) may contain the key.
        raise EngineError(
            f"the signing key in ${settings.signing_key_env} is not a valid secp256k1 private key "
            "(expected 32 bytes of hex)",
            code="CONFIG_INVALID",
        ) from None


def read_only_web3(w3: Any) -> None:
    """Drop web3's validation middleware from the engine's (read-only) connection.

    That middleware asks the node for ``eth_chainId`` before every ``eth_call``
    (to validate a transaction's chainId, which a read has none of): it doubled
    the RPCs of every job's chain checks. ``connect`` checked the chain id once;
    the engine never sends a transaction.
    """
    try:
        w3.middleware_onion.remove("validation")
    except ValueError:
        pass  # a web3 without it: nothing to drop


def open_store(settings: Settings) -> AnyJobStore:
    """The job store the settings select: SQLite in data_dir (default) or PostgreSQL (store_url)."""
    try:
        url = settings.store_url_value()
    except SettingsError as exc:
        raise EngineError(str(exc), code="CONFIG_INVALID") from exc
    if url is None:
        return JobStore(settings.store_path)
    from engine.store_postgres import PostgresJobStore

    return PostgresJobStore(url.get_secret_value())


def build_service(settings: Settings) -> JobService:
    """The service wired to real components: chain via web3, Docker, files under data_dir."""
    if settings.deployment is None:
        raise EngineError("set the deployment manifest (ENGINE_DEPLOYMENT or `deployment` in the config file)",
                          code="CONFIG_INVALID")
    signer = load_signer(settings)  # once, before any connection: a bad key fails start-up fast
    data_dir = Path(settings.data_dir)
    _lock_data_dir(data_dir)  # before anything reads, reconciles or cleans the dir
    try:
        service = _build(settings, data_dir, signer)
    except BaseException:
        _unlock_data_dir(data_dir)  # nothing started: the dir is free again
        raise
    _unlock_on_stop(service, data_dir)
    return service


def _unlock_on_stop(service: JobService, data_dir: Path) -> None:
    """Make ``service.stop()`` release the data dir's lock once its threads have ended."""
    stop = service.stop

    def stop_and_unlock(timeout: float = 10.0) -> None:
        threads = [t for t in (*getattr(service, "_workers", ()), getattr(service, "_sweeper", None))
                   if t is not None]
        stop(timeout)
        if any(t.is_alive() for t in threads):
            log.warning("a job thread outlived stop(); the data dir %s stays locked", data_dir)
            return
        _unlock_data_dir(data_dir)

    service.stop = stop_and_unlock  # type: ignore[method-assign]


def _build(settings: Settings, data_dir: Path, signer: Any | None) -> JobService:
    import functools

    from engine.archive_check import inspect_stream
    from engine.chain import ChainVerifier, RetryPolicy
    from engine.fetch import ImageCache
    from engine.preflight import Preflight
    from registry_client.contracts import connect
    from registry_client.errors import RegistryError
    from registry_client.manifest import load_deployment

    assert settings.deployment is not None
    try:
        registries = connect(settings.rpc_url, load_deployment(settings.deployment))
    except RegistryError as exc:
        raise EngineError(f"cannot use the chain: {exc}", code="CHAIN_UNAVAILABLE") from exc
    read_only_web3(registries.w3)
    store = open_store(settings)
    eid = engine_id(data_dir)
    if settings.role == "api":  # runs no container: needs no Docker
        loader, runner, probes = None, NoContainers(), {}
    else:
        loader, runner, probes = _docker_parts(settings, data_dir, store, eid)
    retry = RetryPolicy(window_s=settings.chain_retry_window_s)
    chain, data = ChainVerifier(registries, retry=retry), DataCatalog(data_dir, load_kek(settings))
    charger = _charger(settings, registries, signer, retry)
    return JobService(
        settings,
        store,
        chain,
        ImageCache(
            data_dir / "images",
            max_bytes=settings.image_max_bytes,
            allow_file_urls=settings.allow_file_urls,
            timeout_s=settings.fetch_timeout_s,
            allow_private=settings.allow_private_fetch,
            cache_max_bytes=settings.archive_cache_max_bytes,
            # The archive check runs on the download as it arrives: no second pass.
            check_stream=functools.partial(inspect_stream,
                                           max_expanded_bytes=settings.image_max_expanded_bytes),
            stage_expanded=True,  # Docker loads the check's tar: no second gunzip
        ),
        loader,
        runner,
        data,
        probes={"chain": registries.block_number, **probes},
        domain=(registries.chain_id, registries.deployment.address("compute_instruction_registry")),
        signer=signer,
        charger=charger,
        preflight=Preflight(settings, store, chain, data, charger, clock=time.time),
        engine_id=eid,
    )


class NoContainers:
    """The runner of an engine with ``role = "api"``: it starts no container, so it has none to stop."""

    def remove_leftovers(self) -> list[str]:
        return []

    def cancel(self, job_id: str) -> bool:
        return False  # the engine running the job stops it (engine/worker.py)


def _docker_parts(settings: Settings, data_dir: Path, store: Any, eid: str) -> tuple[Any, Any, dict[str, Any]]:
    """The image loader, the runner and their /health probes, on the Docker host DOCKER_HOST names."""
    import docker

    from engine.docker_calls import docker_calls
    from engine.docker_pool import share_one_pool
    from engine.images import ImageLoader
    from engine.runner import DockerRunner
    from engine.scratch import output_fs_ready

    try:
        client = docker.from_env(timeout=120)
        share_one_pool(client)  # keep-alive across containers (engine/docker_pool.py)
        client.ping()
    except docker.errors.DockerException as exc:
        raise EngineError(f"cannot reach the Docker engine: {exc}", code="DOCKER_UNAVAILABLE") from exc
    calls = docker_calls(client)  # one kept-alive socket pool for the loader's and the runner's calls
    loader = ImageLoader(
        client,
        data_dir / "image-state",
        max_expanded_bytes=settings.image_max_expanded_bytes,
        cache_max_bytes=settings.image_cache_max_bytes,
        busy=lambda: {job.image_id for job in store.unfinished() if job.image_id},
        calls=calls,
    )
    probes = {"docker": client.ping, "output_fs": lambda: output_fs_ready(settings.run_output_fs)}
    return loader, DockerRunner(client, eid, settings.docker_retry_s, calls=calls), probes


def _charger(settings: Settings, registries: Any, signer: Any | None, retry: Any) -> Any | None:
    """The engine's payment wallet is its signing key (it must hold QUERY_ENGINE_ROLE)."""
    if not settings.charge_prices:
        return None
    from engine.payment import Charger
    from registry_client.contracts import Registries
    from registry_client.payments import Payments

    if signer is None:
        return Charger(None, retry=retry)  # priced jobs fail PAYMENT_UNAVAILABLE
    return Charger(Payments(Registries(registries.w3, registries.deployment, signer)), retry=retry)
