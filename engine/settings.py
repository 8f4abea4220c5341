"""The engine operator's settings: environment (`ENGINE_*`) and an optional config file.

Precedence, highest first: explicit keyword arguments, `ENGINE_*` environment
variables, the config file (TOML or JSON, `compute-engine serve --config FILE`),
then the defaults below. The defaults are the safe choice; validators refuse
unsafe values (a non-loopback bind without `allow_remote`, a root container
user, non-positive limits). docs/configuration.md documents every field.

Secrets never live in this object: `signing_key_env` names the environment
variable that holds the engine's signing key and `signing_key()` reads it as a
`SecretStr`, so it never shows in a repr, a log or a dump.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from engine.errors import EngineError

if TYPE_CHECKING:
    from engine.query.model import QueryLimits
    from engine.runner import RunLimits

__all__ = ["Settings", "SettingsError", "load_settings", "read_config_file"]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

_ROOT_NAMES = {"0", "root"}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$")


class SettingsError(EngineError, ValueError):
    """The settings (environment or config file) are unreadable or unsafe."""

    code = "CONFIG_INVALID"


class Settings(BaseSettings):
    """Everything the operator can set. Field docs are the short "why"."""

    model_config = SettingsConfigDict(
        env_prefix="ENGINE_", extra="forbid", validate_default=True, frozen=True
    )

    # --- where things are ------------------------------------------------------
    rpc_url: str = Field("http://127.0.0.1:8545", description="chain RPC used to verify jobs")
    chain_retry_window_s: float = Field(
        30.0, ge=0, le=3600, description="how long transient chain errors are retried before a job fails"
    )
    deployment: Path | None = Field(None, description="deployment manifest JSON (addresses)")
    data_dir: Path = Field(Path("./engine-data"), description="state, data, images, artifacts")
    store_url: str = Field("", description="job store: empty = SQLite in data_dir; postgresql://... "
                           "(no password: PGPASSFILE, or store_url_env)")
    store_url_env: str | None = Field(None, description="NAME of the env var holding the store URL")
    artifact_dir: Path | None = Field(None, description="artifacts and kept logs; a folder every "
                                      "engine mounts when several share a store (default data_dir)")
    disk_min_free_bytes: int = Field(256 * MiB, ge=0, description="/health fails below this free space")

    # --- HTTP ------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="bind address; loopback unless allow_remote")
    port: int = Field(8000, ge=0, le=65535)
    allow_remote: bool = Field(False, description="permit binding a non-loopback address")
    # Request limits, enforced before a request is parsed (engine/api/limits.py, server.py).
    api_max_body_bytes: int = Field(2 * MiB, ge=64 * KiB, description="413 over this")
    api_max_url_bytes: int = Field(8 * KiB, ge=1 * KiB, le=64 * KiB, description="414 over this")
    api_max_header_bytes: int = Field(16 * KiB, ge=4 * KiB, le=1 * MiB, description="431 over this")
    api_json_max_depth: int = Field(32, ge=4, le=256, description="400 JSON_TOO_DEEP deeper than this")
    api_header_timeout_s: float = Field(10.0, gt=0, le=300, description="close a slow request head")
    api_max_waiters_per_owner: int = Field(16, gt=0, le=10_000, description="concurrent long-polls")

    # --- policy ----------------------------------------------------------------
    allow_file_urls: bool = Field(False, description="accept file:// instruction URLs")
    share_logs: bool = Field(False, description="keep container logs for the job owner")
    signing_key_env: str | None = Field(None, description="NAME of the env var holding the key")
    # The key-encryption key of refiner data (engine/data_keys.py): a 0600 file or a NAME of an
    # env var, never the key itself. Neither set: `data add` refuses (DATA_KEK_MISSING).
    data_kek_file: Path | None = Field(None, description="file (mode 0600) holding the data KEK, 64 hex")
    data_kek_env: str | None = Field(None, description="NAME of the env var holding the data KEK, 64 hex")
    vana_plaintext_results: bool = Field(
        False, description="store and serve the results of jobs submitted through Vana's client API "
        "unsealed (Vana's unmodified client cannot open sealed files); false: sealed to the job's owner")
    charge_prices: bool = Field(
        True, description="charge a priced query to the signer's on-chain compute job (needs the key, "
        "holding QUERY_ENGINE_ROLE); false: priced queries run free (a private engine, tests)")

    # --- queue -----------------------------------------------------------------
    max_concurrent_jobs: int = Field(2, gt=0, le=64)
    queue_size: int = Field(100, gt=0)
    lease_s: float = Field(
        15.0, ge=1.0, le=600.0, description="how long a claimed job is this engine's without a renewal "
        "(renewed every lease_s/3); past it another engine fails the job ENGINE_LOST")
    role: Literal["api", "worker", "all"] = Field(
        "all", description="api: HTTP only, claims no job; worker: claims and runs jobs, serves /health only; all: both")

    # --- image fetch -----------------------------------------------------------
    image_max_bytes: int = Field(2 * GiB, gt=0)
    image_max_expanded_bytes: int = Field(
        8 * GiB, gt=0, description="cap on what an archive unpacks to in Docker"
    )
    image_cache_max_bytes: int = Field(
        20 * GiB, gt=0, description="Docker storage of engine-loaded images, LRU beyond it"
    )
    archive_cache_max_bytes: int = Field(
        20 * GiB, gt=0, description="verified archives kept on disk, LRU beyond it"
    )
    fetch_timeout_s: float = Field(300.0, gt=0, description="wall clock of one download")
    allow_private_fetch: bool = Field(
        False, description="fetch from loopback/private/link-local addresses (demos, tests)"
    )
    audit_max_concurrent: int = Field(
        2, gt=0, le=16, description="static image audits (GET /instructions/{id}/inspect) at once"
    )

    # --- container run ---------------------------------------------------------
    run_cpus: float = Field(1.0, gt=0)
    run_memory_bytes: int = Field(512 * MiB, ge=6 * MiB)  # Docker's own minimum is 6 MiB
    run_pids: int = Field(256, gt=0)
    run_tmpfs_bytes: int = Field(64 * MiB, gt=0)
    run_timeout_s: float = Field(600.0, gt=0)
    run_log_bytes: int = Field(1 * MiB, gt=0)
    run_user: str = Field("65534:65534", description="uid:gid of the container; never root")
    run_output_fs: Literal["loop", "bind"] = Field(
        "loop", description="loop: a capped filesystem per job; bind: a plain folder, capped after")
    docker_retry_s: float = Field(30.0, ge=0, description="how long to retry an unreachable Docker")

    # --- query -----------------------------------------------------------------
    query_max_rows: int = Field(100_000, gt=0)
    query_timeout_s: float = Field(30.0, gt=0)
    query_max_result_bytes: int = Field(256 * MiB, gt=0)
    query_max_value_bytes: int = Field(16 * MiB, gt=0, description="largest single string or blob")
    query_max_memory_bytes: int = Field(512 * MiB, ge=16 * MiB, description="memory of one query's process")
    query_max_chars: int = Field(100_000, gt=0, description="longest SQL text accepted")
    params_max_chars: int = Field(100_000, gt=0, description="longest params JSON accepted")

    # --- output and retention --------------------------------------------------
    output_max_bytes: int = Field(100 * MiB, gt=0)
    output_max_files: int = Field(10_000, gt=0, description="files and folders a job may write")
    artifact_retention_s: float = Field(7 * 24 * 3600.0, gt=0)
    sweep_interval_s: float = Field(60.0, gt=0, description="how often expired artifacts go")

    # --- auth ------------------------------------------------------------------
    auth_window_s: float = Field(60.0, gt=0, le=3600)
    deadline_max_s: float = Field(24 * 3600.0, gt=0, description="furthest allowed deadline")
    session_max_s: int = Field(3600, ge=60, le=24 * 3600, description="longest sign-in session (EIP-4361)")
    session_nonce_ttl_s: float = Field(300.0, gt=0, le=3600, description="how long a sign-in nonce stays usable")
    session_max_nonces: int = Field(10_000, gt=0, le=1_000_000, description="unused sign-in nonces held at once")
    session_key_file: Path | None = Field(
        None, description="HMAC key of session tokens (default <data_dir>/session.key, created 0600); "
        "engines sharing it accept each other's sessions")
    session_domain: str | None = Field(
        None, max_length=255, description="the EIP-4361 domain (host[:port]) to expect; default: the request's Host")

    @field_validator("rpc_url")
    @classmethod
    def _rpc_scheme(cls, value: str) -> str:
        if not re.match(r"^(https?|wss?)://[^\s]+$", value):
            raise ValueError(f"rpc_url must be an http(s) or ws(s) URL, got {value!r}")
        return value

    @field_validator("run_user")
    @classmethod
    def _not_root(cls, value: str) -> str:
        value = value.strip()
        if not _USER.match(value):
            raise ValueError(f"run_user must look like UID[:GID], got {value!r}")
        if any(part in _ROOT_NAMES for part in value.split(":")):
            raise ValueError("run_user must not be root (uid or gid 0); use e.g. 65534:65534")
        return value

    @field_validator("signing_key_env", "data_kek_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and (not _ENV_NAME.match(value) or re.fullmatch(r"(0x)?[0-9a-fA-F]{64}", value)):
            # A key pasted here by mistake must not be echoed back in the error.
            raise ValueError("an *_env setting must be the NAME of an environment variable")
        return value

    @field_validator("store_url_env")
    @classmethod
    def _store_env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError("store_url_env must be the NAME of an environment variable")  # never echo a URL
        return value

    @field_validator("store_url")
    @classmethod
    def _store_url(cls, value: str) -> str:
        return _checked_store_url(value, "store_url", allow_password=False)

    def store_url_value(self) -> SecretStr | None:
        """The job store's URL (store_url_env's variable first), or None for SQLite in data_dir."""
        if self.store_url_env:
            raw = os.environ.get(self.store_url_env, "")
            if not raw:
                raise SettingsError(f"store_url_env names {self.store_url_env}, which is not set")
            return SecretStr(_checked_store_url(raw, self.store_url_env, allow_password=True))
        return SecretStr(self.store_url) if self.store_url else None

    @model_validator(mode="after")
    def _loopback_unless_allowed(self) -> Settings:
        if not self.allow_remote and not _is_loopback(self.host):
            raise ValueError(
                f"host {self.host!r} is not a loopback address; "
                "set allow_remote=true (ENGINE_ALLOW_REMOTE=1) to expose the engine"
            )
        return self

    # --- derived views ---------------------------------------------------------
    def signing_key(self) -> SecretStr | None:
        """The engine's signing key from the named env var, or None when unset."""
        if not self.signing_key_env:
            return None
        raw = os.environ.get(self.signing_key_env)
        return SecretStr(raw) if raw else None

    def run_limits(self, max_timeout_s: float | None = None) -> RunLimits:
        """The container limits; `max_timeout_s` (the on-chain job's) may only lower the timeout."""
        from engine.runner import RunLimits

        return RunLimits(
            cpus=self.run_cpus,
            memory_bytes=self.run_memory_bytes,
            pids=self.run_pids,
            tmpfs_bytes=self.run_tmpfs_bytes,
            timeout_s=self.run_timeout_s if max_timeout_s is None else min(self.run_timeout_s, max_timeout_s),
            log_bytes=self.run_log_bytes,
            user=self.run_user,
        )

    def query_limits(self) -> QueryLimits:
        from engine.query.model import QueryLimits

        return QueryLimits(
            max_rows=self.query_max_rows,
            timeout_s=self.query_timeout_s,
            max_result_bytes=self.query_max_result_bytes,
            max_value_bytes=self.query_max_value_bytes,
            max_memory_bytes=self.query_max_memory_bytes,
        )

    @property
    def store_path(self) -> Path:
        return self.data_dir / "jobs.db"


def _checked_store_url(url: str, where: str, *, allow_password: bool) -> str:
    """An empty or postgresql:// URL; messages never repeat it (it may hold a password)."""
    from urllib.parse import urlsplit

    if not url:
        return url
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        raise SettingsError(f"{where} is not a URL") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise SettingsError(f"{where} must be empty (SQLite in data_dir) or a postgresql:// URL")
    if password is not None and not allow_password:
        raise SettingsError(f"{where} must not hold a password (settings are shown and logged): "
                            "use PGPASSFILE, or put the URL in the variable named by store_url_env")
    return url


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: could resolve anywhere


class _FileSource(PydanticBaseSettingsSource):
    """Values read from the config file; below the environment in precedence."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]):
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a TOML (.toml) or JSON (.json) config file into a flat mapping."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(raw)
        else:
            data = tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise SettingsError(f"config file {path} is not valid {path.suffix or 'TOML'}: {exc}") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path} must hold a table/object of settings")
    # Accept an [engine] table so one file can hold other tools' sections too.
    if set(data) == {"engine"} and isinstance(data["engine"], dict):
        data = data["engine"]
    unknown = sorted(set(data) - set(Settings.model_fields))
    if unknown:
        raise SettingsError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return data


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Settings from keyword overrides > ENGINE_* env > config file > defaults.

    Raises SettingsError with one readable line per problem.
    """
    data = read_config_file(Path(config_file)) if config_file is not None else {}

    class _Configured(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, _FileSource(settings_cls, data))

    try:
        return _Configured(**overrides)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from exc


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {msg}" if where != "settings" else msg)
    return "invalid settings: " + "; ".join(lines)
