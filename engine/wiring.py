"""Wiring: the job service built from settings with the real components.

The one place that opens connections (chain RPC, Docker) and reads the
engine's key, so engine/service.py stays free of set-up and can be tested
with fakes. `create_app(settings)` calls `build_service` when given no service.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from engine.data import DataCatalog
from engine.errors import EngineError
from engine.service import JobService
from engine.settings import Settings
from engine.store import JobStore

__all__ = ["build_service", "engine_id", "load_signer"]


def engine_id(data_dir: Path) -> str:
    """This engine's stable id, kept in its data dir (labels its containers)."""
    path = data_dir / "engine-id"
    if not path.exists():
        path.write_text(secrets.token_hex(8))
    return path.read_text().strip()


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


def build_service(settings: Settings) -> JobService:
    """The service wired to real components: chain via web3, Docker, files under data_dir."""
    import docker

    from engine.chain import ChainVerifier
    from engine.fetch import ImageCache
    from engine.images import ImageLoader
    from engine.runner import DockerRunner
    from engine.scratch import output_fs_ready
    from registry_client.contracts import connect
    from registry_client.errors import RegistryError
    from registry_client.manifest import load_deployment

    if settings.deployment is None:
        raise EngineError("set the deployment manifest (ENGINE_DEPLOYMENT or `deployment` in the config file)",
                          code="CONFIG_INVALID")
    signer = load_signer(settings)  # once, before any connection: a bad key fails start-up fast
    try:
        registries = connect(settings.rpc_url, load_deployment(settings.deployment))
    except RegistryError as exc:
        raise EngineError(f"cannot use the chain: {exc}", code="CHAIN_UNAVAILABLE") from exc
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        raise EngineError(f"cannot reach the Docker engine: {exc}", code="DOCKER_UNAVAILABLE") from exc

    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    return JobService(
        settings,
        JobStore(settings.store_path),
        ChainVerifier(registries),
        ImageCache(
            data_dir / "images",
            max_bytes=settings.image_max_bytes,
            allow_file_urls=settings.allow_file_urls,
            timeout_s=settings.fetch_timeout_s,
        ),
        ImageLoader(client, data_dir / "image-state"),
        DockerRunner(client, engine_id(data_dir), settings.docker_retry_s),
        DataCatalog(data_dir),
        probes={"chain": registries.block_number, "docker": client.ping,
                "output_fs": lambda: output_fs_ready(settings.run_output_fs)},
        domain=(registries.chain_id, registries.deployment.address("compute_instruction_registry")),
        signer=signer,
    )
