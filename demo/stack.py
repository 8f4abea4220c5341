"""`make up`: the demo's stack left running for hands-on use (`make down` stops it).

Same chapters as the demo (demo/story.py) up to a running engine, but the
chain, the archive server and the engine are detached processes whose pids
are written to .demo/stack.json.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from demo.story import (
    ENGINE_KEY,
    StoryConfig,
    _free_port,
    _sha256,
    _wait_healthy,
    attach_data,
    authorize_engine,
    build_job_archive,
    clean_work_dir,
    demo_kek,
    deploy_contracts,
    grant_permissions,
    publish_and_approve,
    register_data,
)
from registry_client.contracts import connect
from registry_client.devchain import ANVIL_DEV_KEYS, find_anvil

__all__ = ["start_stack"]


def _detached(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def _anvil(work: Path) -> tuple[subprocess.Popen, str]:
    log = work / "anvil.log"
    log.write_text("")
    proc = _detached([find_anvil(), "--port", "0"], log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = re.search(r"Listening on ([\d.]+:\d+)", log.read_text())
        if match:
            return proc, f"http://{match.group(1)}"
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"anvil did not start (log: {log})")


def export_lines(rpc_url: str, manifest: Path, engine_url: str, data_dir: Path, archive: Path, archive_url: str,
                 db: Path, cfg: StoryConfig) -> list[str]:
    """The `export` lines README's stories start from (docs: README, Stories)."""
    bin_dir = Path(sys.executable).parent  # `registry` and `compute-engine` live next to the venv's python
    return [
        f'export PATH="{bin_dir}:$PATH"',
        f"export REGISTRY_RPC={rpc_url} REGISTRY_DEPLOYMENT={manifest}",
        f"export REGISTRY_ENGINE_URL={engine_url}",
        f"export ENGINE_RPC_URL={rpc_url} ENGINE_DEPLOYMENT={manifest} ENGINE_DATA_DIR={data_dir}",
        f"export ENGINE_DATA_KEK_FILE={demo_kek(data_dir.parent)}   # the engine's KEK: refiner data is sealed at rest",
        f"export DEPLOYER_KEY={ANVIL_DEV_KEYS[0]}   # deployer  {cfg.actors.deployer.address}",
        f"export OWNER_KEY={ANVIL_DEV_KEYS[1]}   # DLP owner {cfg.actors.dlp_owner.address}",
        f"export BUILDER_KEY={ANVIL_DEV_KEYS[2]}   # builder   {cfg.actors.builder.address}",
        f"export BUILDER_ADDRESS={cfg.actors.builder.address}",
        f"export SAMPLE_DB={db}   # a refined SQLite file (users, activities)",
        f"export JOB_ARCHIVE={archive} JOB_ARCHIVE_URL={archive_url}   # the template job, built and served",
    ]


def start_stack(work: Path, say: Callable[[str], None]) -> int:
    """Set the stack up; the caller holds the work dir (demo.guard.exclusive)."""
    clean_work_dir(work)
    work.mkdir(parents=True, exist_ok=True)
    pids: dict[str, int] = {}
    anvil, rpc_url = _anvil(work)
    pids["anvil"] = anvil.pid
    (work / "stack.json").write_text(json.dumps({"pids": pids}))
    say(f"local anvil chain at {rpc_url} (chain id 31337)")
    cfg = StoryConfig(rpc_url=rpc_url, work_dir=work, say=say)

    deployment, manifest = deploy_contracts(cfg)
    owner = connect(rpc_url, deployment, cfg.actors.dlp_owner)
    builder = connect(rpc_url, deployment, cfg.actors.builder)
    dlp_id, refiner_id, db = register_data(cfg, owner)
    archive = build_job_archive(cfg)

    files_port = _free_port()
    files = _detached([sys.executable, "-m", "http.server", str(files_port), "--bind", "127.0.0.1",
                       "--directory", str(archive.parent)], work / "files.log")
    pids["archive-server"] = files.pid
    archive_url = f"http://127.0.0.1:{files_port}/{archive.name}"
    instruction_id = publish_and_approve(cfg, builder, owner, archive_url, _sha256(archive), dlp_id)
    grant_permissions(cfg, owner, refiner_id, cfg.actors.builder.address)

    data_dir = work / "engine-data"
    attach_data(cfg, manifest, data_dir, refiner_id, db)
    authorize_engine(cfg, deployment)
    port = _free_port()
    env = {**os.environ, "ENGINE_RPC_URL": rpc_url, "ENGINE_DEPLOYMENT": str(manifest),
           "ENGINE_DATA_DIR": str(data_dir), "ENGINE_PORT": str(port), "ENGINE_SHARE_LOGS": "true",
           "ENGINE_DATA_KEK_FILE": str(demo_kek(work)),
           # The archive is served from 127.0.0.1, which the engine refuses by default.
           "ENGINE_ALLOW_PRIVATE_FETCH": "true",
           # Its key (anvil's public dev key 4) attests results and charges prices.
           "ENGINE_SIGNING_KEY_ENV": "ENGINE_DEMO_SIGNING_KEY", "ENGINE_DEMO_SIGNING_KEY": ENGINE_KEY}
    engine = _detached([str(Path(sys.executable).with_name("compute-engine")), "serve"],
                       work / "engine.log", env)
    pids["engine"] = engine.pid
    (work / "stack.json").write_text(json.dumps({"pids": pids}))
    engine_url = f"http://127.0.0.1:{port}"
    _wait_healthy(engine_url, engine, work / "engine.log")

    state = {
        "pids": pids, "rpc_url": rpc_url, "engine_url": engine_url, "deployment": str(manifest),
        "dlp_id": dlp_id, "refiner_id": refiner_id, "instruction_id": instruction_id,
        "wallets": {"deployer": cfg.actors.deployer.address, "dlp_owner": cfg.actors.dlp_owner.address,
                    "builder": cfg.actors.builder.address},
    }
    (work / "stack.json").write_text(json.dumps(state, indent=2))
    say(f"engine up at {engine_url} (OpenAPI: {engine_url}/docs); logs in {work}")
    exports = export_lines(rpc_url, manifest, engine_url, data_dir, archive, archive_url, db, cfg)
    (work / "env.sh").write_text("".join(f"{line}\n" for line in exports))
    shown = "\n".join(f"  {line}" for line in exports)
    print(f"""
The stack is up. anvil's dev keys are PUBLIC test keys: never use them on a real network.
Paste these exports (or `. {work / "env.sh"}`) to run README's stories as written:

{shown}

  registry instruction show {instruction_id} --dlp {dlp_id}
  registry permission list --refiner {refiner_id}

Stop it with: make down
""")
    return 0
