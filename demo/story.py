"""The product's story end to end, as code: the demo and its test run this.

One function per chapter, each printing one line of what it does:
chain -> contracts -> DLP + refiner + sample data -> template image built,
exported and served over HTTP -> instruction published by the builder and
approved by the DLP owner -> permissions granted -> the engine's wallet
authorised to charge, the builder's deposit and on-chain job -> engine started
-> job submitted, charged, followed, downloaded -> the DLP owner claims the
DLP's share to its treasury. `make demo` runs it on a fresh anvil chain;
tests/integration/test_demo_story.py runs the same code against the test
session's chain.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account

from demo.sample_data import make_sample_db
from registry_client.contracts import Registries, connect
from registry_client.deploy import deploy
from registry_client.devchain import ANVIL_DEV_KEYS
from registry_client.engine_client import EngineClient
from registry_client.manifest import Deployment, save_deployment
from registry_client.payments import Payments
from registry_client.rpc import make_web3
from registry_client.sealing import read_header

__all__ = ["ENGINE_KEY", "ROOT", "Actors", "StoryConfig", "StoryResult", "authorize_engine", "run_story"]

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "job_template"
IMAGE_TAG = "c2d-demo/job:latest"

# The builder's query: activity per locale, never the users' names or emails.
DEMO_QUERY = (
    "SELECT u.locale AS locale, a.kind AS kind, a.duration_s AS duration_s "
    "FROM activities a JOIN users u ON u.id = a.user_id WHERE a.duration_s >= ?"
)
DEMO_PARAMS = [300]
# A query the DLP owner did not grant: it reads users.email.
DENIED_QUERY = "SELECT email FROM users"
DEPOSIT_WEI = 10_000  # the builder's ComputeEngine deposit; the demo query costs 1,600
ENGINE_KEY = ANVIL_DEV_KEYS[4]  # the engine's wallet: attests results and charges prices
# Where the DLP's earnings land: anvil's dev account 5 (funded, holds nothing else here).
TREASURY = "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc"


@dataclass(frozen=True)
class Actors:
    """The demo's wallets: anvil's well-known PUBLIC dev keys, for local chains only."""

    deployer: Any
    dlp_owner: Any
    builder: Any

    @classmethod
    def dev(cls) -> Actors:
        keys = [Account.from_key(k) for k in ANVIL_DEV_KEYS[:3]]
        return cls(*keys)


@dataclass
class StoryConfig:
    rpc_url: str
    work_dir: Path
    say: Callable[[str], None] = print
    actors: Actors = field(default_factory=Actors.dev)
    engine_env: dict[str, str] = field(default_factory=dict)
    job_timeout_s: float = 300.0


@dataclass
class StoryResult:
    deployment: Deployment
    dlp_id: int
    refiner_id: int
    instruction_id: int
    job: dict
    downloaded: list[Path]
    stats: dict
    denied_job: dict
    timings: dict[str, float]
    money: dict[str, int] = field(default_factory=dict)  # balances before/after, in wei
    sealed_to: str | None = None  # the wallet the stored artifacts are sealed to (the builder)


# ------------------------------------------------------------------ helpers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _template_fingerprint() -> str:
    """Hash of the template files the image is built from: a changed template rebuilds."""
    digest = hashlib.sha256()
    for name in ("Dockerfile", "worker.py", "requirements.txt"):
        digest.update(name.encode() + b"\0" + (TEMPLATE / name).read_bytes())
    return digest.hexdigest()[:16]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve `directory` over real HTTP on loopback; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def running_engine(cfg: StoryConfig, manifest: Path, data_dir: Path) -> Iterator[str]:
    """`compute-engine serve` as a real process; yields its URL once /health answers."""
    port = _free_port()
    env = {
        **os.environ,
        "ENGINE_RPC_URL": cfg.rpc_url,
        "ENGINE_DEPLOYMENT": str(manifest),
        "ENGINE_DATA_DIR": str(data_dir),
        "ENGINE_DATA_KEK_FILE": str(demo_kek(data_dir.parent)),  # refiner data sealed at rest
        "ENGINE_PORT": str(port),
        # The engine attests its results; the demo key is anvil's public dev key 4
        # (published with Foundry: never use it for anything real).
        "ENGINE_SIGNING_KEY_ENV": "ENGINE_DEMO_SIGNING_KEY",
        "ENGINE_DEMO_SIGNING_KEY": ENGINE_KEY,
        # The demo serves its archive from 127.0.0.1, which the engine refuses by default.
        "ENGINE_ALLOW_PRIVATE_FETCH": "true",
        **cfg.engine_env,
    }
    log_path = data_dir.parent / "engine.log"
    exe = Path(sys.executable).with_name("compute-engine")
    with log_path.open("ab") as log:
        proc = subprocess.Popen([str(exe), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log_path)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_healthy(url: str, proc: subprocess.Popen, log_path: Path, timeout_s: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the engine exited with {proc.returncode}; its log ends:\n{tail}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the engine did not become healthy within {timeout_s:.0f} s (log: {log_path})")


def demo_kek(work_dir: Path) -> Path:
    """The engine's data key-encryption key: a 0600 file beside (not in) its data dir."""
    path = work_dir / "engine.kek"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return path


def _run(cmd: list[str], **kwargs: Any) -> str:
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stdout


# ------------------------------------------------------------------ chapters


def deploy_contracts(cfg: StoryConfig) -> tuple[Deployment, Path]:
    w3 = make_web3(cfg.rpc_url)
    deployment = deploy(w3, cfg.actors.deployer)
    manifest = save_deployment(deployment, cfg.work_dir / "deployment.json", overwrite=True)
    cfg.say(f"deployed the five contracts on chain {deployment.chain_id} -> {manifest}")
    return deployment, manifest


def register_data(cfg: StoryConfig, owner: Registries) -> tuple[int, int, Path]:
    dlp_id = owner.register_dlp("Demo Fitness DLP", treasury=TREASURY)
    db = make_sample_db(cfg.work_dir / "refined" / "fitness.db")
    refiner_id = owner.add_refiner(
        dlp_id, "fitness-v1", "https://example.org/schemas/fitness-v1.json", ""
    )
    cfg.say(f"DLP {dlp_id} registered by its owner {owner.account.address}; refiner {refiner_id} "
            f"with sample data {db.name} (2,000 users, 10,000 activities)")
    return dlp_id, refiner_id, db


def build_job_archive(cfg: StoryConfig) -> Path:
    """Build and export the template image; reuse the archive while the template is unchanged."""
    archive_dir = cfg.work_dir / "archives"
    archive_dir.mkdir(parents=True, exist_ok=True)
    archive = archive_dir / f"job-{_template_fingerprint()}.tar.gz"
    if archive.exists():
        cfg.say(f"job image archive cached: {archive.name}")
        return archive
    env = {**os.environ, "IMAGE": IMAGE_TAG}
    _run([str(TEMPLATE / "image-build.sh")], env=env)
    _run([str(TEMPLATE / "image-export.sh")], env={**env, "ARCHIVE": str(archive)})
    cfg.say(f"built the template job image and exported {archive.name} "
            f"({archive.stat().st_size // 1024} KiB)")
    return archive


def publish_and_approve(cfg: StoryConfig, builder: Registries, owner: Registries,
                        archive_url: str, sha256: str, dlp_id: int) -> int:
    instruction_id = builder.add_instruction(sha256, archive_url)
    cfg.say(f"builder {builder.account.address} published instruction {instruction_id} "
            f"(sha256 {sha256[:12]}…, {archive_url})")
    owner.update_instruction(instruction_id, dlp_id, True)
    assert owner.is_approved(instruction_id, dlp_id)
    cfg.say(f"DLP owner approved instruction {instruction_id} for DLP {dlp_id}")
    return instruction_id


def grant_permissions(cfg: StoryConfig, owner: Registries, refiner_id: int, grantee: str) -> None:
    owner.add_permission(refiner_id, grantee, "activities", "", 1_000)
    owner.add_permission(refiner_id, grantee, "users", "locale", 500)
    owner.add_permission(refiner_id, grantee, "users", "id", 100)
    cfg.say("granted the builder: activities (every column, 1000 wei), users.locale (500 wei), "
            "users.id (100 wei) - not users.name or users.email")


def authorize_engine(cfg: StoryConfig, deployment: Deployment) -> None:
    """The deployer (the QueryEngine's admin) lets the engine's wallet charge jobs."""
    admin = Payments(connect(cfg.rpc_url, deployment, cfg.actors.deployer))
    engine_address = Account.from_key(ENGINE_KEY).address
    admin.authorize_engine(engine_address)
    cfg.say(f"the engine's wallet {engine_address} may charge jobs (QueryEngine QUERY_ENGINE_ROLE)")


def fund_the_job(cfg: StoryConfig, deployment: Deployment, builder: Registries,
                 instruction_id: int) -> tuple[Payments, int]:
    """The engine may charge; the builder deposits and opens an on-chain job."""
    authorize_engine(cfg, deployment)
    payer = Payments(builder)
    payer.deposit(DEPOSIT_WEI)
    compute_job = payer.submit_job(instruction_id, 600)
    cfg.say(f"builder deposited {DEPOSIT_WEI} wei in the ComputeEngine and opened on-chain job {compute_job} "
            f"(balance {payer.balance()} wei)")
    return payer, compute_job


def claim_earnings(cfg: StoryConfig, owner: Registries, dlp_id: int) -> tuple[int, int]:
    """The DLP owner sends the DLP's accrued share to its treasury; (claimed, treasury gain)."""
    before = owner.w3.eth.get_balance(TREASURY)
    claimed = Payments(owner).claim(dlp_id)
    gained = owner.w3.eth.get_balance(TREASURY) - before
    cfg.say(f"DLP owner claimed {claimed} wei for DLP {dlp_id}: it landed in the DLP's treasury {TREASURY}")
    return claimed, gained


def attach_data(cfg: StoryConfig, manifest: Path, data_dir: Path, refiner_id: int, db: Path) -> None:
    env = {**os.environ, "ENGINE_RPC_URL": cfg.rpc_url, "ENGINE_DEPLOYMENT": str(manifest),
           "ENGINE_DATA_DIR": str(data_dir), "ENGINE_DATA_KEK_FILE": str(demo_kek(data_dir.parent))}
    exe = Path(sys.executable).with_name("compute-engine")
    _run([str(exe), "data", "add", "--refiner", str(refiner_id), str(db)], env=env)
    cfg.say(f"engine holds refiner {refiner_id}'s data, sealed at rest (AES-256-GCM under its KEK)")


def download_with_cli(cfg: StoryConfig, manifest: Path, engine_url: str, job_id: str, data_dir: Path,
                      out_dir: Path) -> tuple[list[Path], str | None]:
    """`registry job download`: the stored artifacts are sealed to the builder; its wallet opens them."""
    stored = sorted(p for p in (data_dir / "artifacts" / job_id).rglob("*") if p.is_file())
    with stored[0].open("rb") as fh:
        sealed_to = read_header(fh).recipient
    cfg.say(f"the engine stores {len(stored)} artifacts sealed to {sealed_to} (only ciphertext on its disk)")
    env = {**os.environ, "REGISTRY_DEPLOYMENT": str(manifest), "REGISTRY_RPC": cfg.rpc_url,
           "REGISTRY_ENGINE_URL": engine_url, "DEMO_BUILDER_KEY": "0x" + bytes(cfg.actors.builder.key).hex()}
    exe = Path(sys.executable).with_name("registry")
    out = _run([str(exe), "--json", "job", "download", job_id, "--out", str(out_dir), "--key-env",
                "DEMO_BUILDER_KEY"], env=env)
    return [Path(p) for p in json.loads(out)["files"]], sealed_to


def submit_and_follow(cfg: StoryConfig, client: EngineClient, instruction_id: int,
                      refiner_id: int, compute_job: int) -> dict:
    job = client.submit(instruction_id, refiner_id, DEMO_QUERY, DEMO_PARAMS, compute_job_id=compute_job)
    cfg.say(f"builder submitted job {job['id']} (signed EIP-712 request)")

    def on_change(current: dict, step: dict) -> None:
        cfg.say(f"  job {step['status']}")

    job = client.wait(job["id"], timeout_s=cfg.job_timeout_s, on_change=on_change)
    if job["status"] != "SUCCEEDED":
        raise RuntimeError(f"the demo job ended {job['status']}: {job.get('failure')}")
    report = job.get("access_report") or {}
    paid = "charged to on-chain job " + str(compute_job) if (job.get("payment") or {}).get("charged") else "not charged"
    cfg.say(f"job SUCCEEDED at block {job['block_number']}: {report.get('row_count')} rows, "
            f"price {job['price_wei']} wei ({paid}), exit code {job['exit_code']}")
    attestation = job.get("attestation")
    if attestation:
        signer = client.verify_attestation(job, client.artifacts(job["id"]))
        cfg.say(f"attested by {signer} (the engine's EIP-712 JobResult signature over the artifact hashes)")
    return job


def denied_job(cfg: StoryConfig, client: EngineClient, instruction_id: int, refiner_id: int,
               compute_job: int) -> dict:
    from registry_client.errors import EngineApiError

    try:  # the engine refuses it at submit (its preflight), before any job or charge exists
        job = client.submit(instruction_id, refiner_id, DENIED_QUERY, None, compute_job_id=compute_job)
        job = client.wait(job["id"], timeout_s=cfg.job_timeout_s)
    except EngineApiError as exc:
        job = {"status": "REFUSED", "http_status": exc.status,
               "failure": {"code": exc.code, "message": exc.detail}}
    failure = job.get("failure") or {}
    cfg.say(f"a job reading users.email is {job['status']} {failure.get('code')}: "
            f"{failure.get('message')} (never charged)")
    return job


def run_story(cfg: StoryConfig) -> StoryResult:
    """Run the whole story against the chain at cfg.rpc_url; return what it produced."""
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    deployment, manifest = deploy_contracts(cfg)
    owner = connect(cfg.rpc_url, deployment, cfg.actors.dlp_owner)
    builder = connect(cfg.rpc_url, deployment, cfg.actors.builder)
    dlp_id, refiner_id, db = register_data(cfg, owner)
    timings["chain"] = time.monotonic() - t0

    t1 = time.monotonic()
    archive = build_job_archive(cfg)
    timings["image"] = time.monotonic() - t1
    sha256 = _sha256(archive)

    data_dir = cfg.work_dir / "engine-data"
    with serve_directory(archive.parent) as files_url:
        archive_url = f"{files_url}/{archive.name}"
        cfg.say(f"serving the archive over HTTP at {archive_url}")
        instruction_id = publish_and_approve(cfg, builder, owner, archive_url, sha256, dlp_id)
        grant_permissions(cfg, owner, refiner_id, cfg.actors.builder.address)
        attach_data(cfg, manifest, data_dir, refiner_id, db)
        payer, compute_job = fund_the_job(cfg, deployment, builder, instruction_id)
        money = {"deposit_before": payer.balance(), "dlp_before": payer.dlp_earnings(dlp_id)}
        with running_engine(cfg, manifest, data_dir) as engine_url:
            cfg.say(f"engine up at {engine_url} (OpenAPI at {engine_url}/docs)")
            client = EngineClient(engine_url, cfg.actors.builder, deployment.chain_id,
                                  deployment.address("compute_instruction_registry"))
            t2 = time.monotonic()
            job = submit_and_follow(cfg, client, instruction_id, refiner_id, compute_job)
            timings["job"] = time.monotonic() - t2
            out_dir = cfg.work_dir / "downloads" / job["id"]
            downloaded, sealed_to = download_with_cli(cfg, manifest, engine_url, job["id"], data_dir, out_dir)
            cfg.say(f"downloaded {len(downloaded)} artifacts to {out_dir} with `registry job download` "
                    "(opened with the builder's wallet): " + ", ".join(p.name for p in downloaded))
            money.update(deposit_after_job=payer.balance(), dlp_after_job=payer.dlp_earnings(dlp_id))
            cfg.say(f"the money moved: builder's deposit {money['deposit_before']} -> "
                    f"{money['deposit_after_job']} wei, DLP {dlp_id}'s earnings {money['dlp_before']} -> "
                    f"{money['dlp_after_job']} wei (its {payer.dlp_share_percent():g}% share)")
            refused = denied_job(cfg, client, instruction_id, refiner_id, compute_job)
            money["deposit_after_denied"] = payer.balance()
    money["claimed"], money["treasury_gain"] = claim_earnings(cfg, owner, dlp_id)
    money["dlp_after_claim"] = payer.dlp_earnings(dlp_id)
    stats = json.loads((out_dir / "stats.json").read_text())
    timings["total"] = time.monotonic() - t0
    return StoryResult(deployment, dlp_id, refiner_id, instruction_id, job, downloaded, stats,
                       refused, timings, money, sealed_to)


def clean_work_dir(work_dir: Path) -> None:
    """Remove the previous run's chain-bound state; keep the caches that make a rerun fast.

    Kept: the exported archives (keyed by the template's content), the engine's
    content-addressed image cache (archives by sha256, sha256 -> loaded image id)
    and demo.lock (demo/guard.py: the lock the running command holds).
    """
    keep = {work_dir / "archives", work_dir / "engine-data" / "images",
            work_dir / "engine-data" / "image-state", work_dir / "demo.lock"}
    if not work_dir.exists():
        return
    for child in work_dir.iterdir():
        if child in keep:
            continue
        if child.is_dir() and any(k.is_relative_to(child) for k in keep):
            clean_work_dir_children(child, keep)
        elif child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


def clean_work_dir_children(folder: Path, keep: set[Path]) -> None:
    for child in folder.iterdir():
        if child in keep:
            continue
        shutil.rmtree(child) if child.is_dir() else child.unlink()
