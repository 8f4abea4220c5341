"""Benchmark: trivial jobs through 1, 2 and 3 worker engines sharing one PostgreSQL store.

Stands up a real stack with the demo's own functions (demo/story.py): anvil,
the contracts, a DLP + refiner with the demo's sample data, a trivial busybox
instruction approved, permissions granted; a private PostgreSQL cluster
(tests/postgres_cluster.py); one `compute-engine serve --role api` engine
taking every submission, and 1, 2 then 3 `--role worker` engines (each
`max_concurrent_jobs` 2, each its own data dir holding the same refiner data,
all on the same store and one shared artifact folder) claiming the jobs.

Per worker count, ``--runs`` rounds of ``--jobs`` trivial jobs submitted at
once and followed to SUCCEEDED: throughput in jobs per second (first submit ->
last end). And the claim latency: the PENDING -> VERIFYING step gap (a worker
claims, then makes its first transition) of jobs submitted one at a time to
idle workers. Printed as ratios against 1 worker: the target is throughput
scaling with the workers (2 workers ~2x, 3 ~3x, when the host has the cores:
on a 2-core machine expect less) at an unchanged claim latency.

    .venv/bin/python bench/scale.py [--runs N] [--jobs N]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # `import engine` must find the package, not bench/engine.py
sys.path.append(str(ROOT / "tests"))  # images.py, postgres_cluster.py

import docker
from images import build_image, busybox_image, export_archive

from bench.common import median_or_nan, say
from bench.engine_bare import remove_image
from demo.story import (
    StoryConfig,
    _sha256,
    attach_data,
    deploy_contracts,
    grant_permissions,
    publish_and_approve,
    register_data,
    running_engine,
    serve_directory,
)
from registry_client.contracts import connect
from registry_client.devchain import start_anvil
from registry_client.engine_client import EngineClient

WORK = ROOT / "bench" / ".work" / "scale"
TAG = "c2d-bench/scale-trivial:1"
DOCKERFILE = ('FROM c2d-test/busybox:1\nLABEL org.c2d.bench="scale"\n'
              'CMD ["/bin/sh", "-c", "echo ok > /mnt/output/result.txt"]\n')
QUERY, PARAMS = "SELECT id FROM users WHERE id = ?", [1]
WORKERS = (1, 2, 3)
CONCURRENCY = 2  # each worker engine's max_concurrent_jobs
TIMEOUT_S = 300.0


def _ended(client: EngineClient, job_id: str) -> dict:
    job = client.wait(job_id, poll_s=0.05, timeout_s=TIMEOUT_S)
    if job["status"] != "SUCCEEDED":
        raise RuntimeError(f"bench job {job_id} ended {job['status']}: {job.get('failure')}")
    return job


def _round(client: EngineClient, instruction: int, refiner: int, jobs: int) -> float:
    """Jobs per second for `jobs` trivial jobs submitted at once."""
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda _: client.submit(instruction, refiner, QUERY, PARAMS)["id"], range(jobs)))
    for job_id in ids:
        _ended(client, job_id)
    return jobs / (time.perf_counter() - started)


def _claim_latency(client: EngineClient, instruction: int, refiner: int, samples: int) -> list[float]:
    """PENDING -> VERIFYING of single jobs on idle workers, in seconds."""
    gaps = []
    for _ in range(samples):
        job = _ended(client, client.submit(instruction, refiner, QUERY, PARAMS)["id"])
        at = {step["status"]: step["at"] for step in job["steps"]}
        gaps.append(at["VERIFYING"] - at["PENDING"])
    return gaps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="rounds per worker count (default 3)")
    ap.add_argument("--jobs", type=int, default=24, help="jobs per round (default 24)")
    args = ap.parse_args(argv)
    results: dict[int, tuple[list[float], list[float]]] = {}
    with ExitStack() as stack:
        stack.callback(lambda: shutil.rmtree(WORK, ignore_errors=True))
        stack.callback(remove_image, TAG)
        try:
            shutil.rmtree(WORK, ignore_errors=True)
            WORK.mkdir(parents=True)
            client_docker = docker.from_env(timeout=300)
            busybox_image(client_docker)
            build_image(client_docker, DOCKERFILE, TAG)
            archive = WORK / "trivial.tar.gz"
            export_archive(client_docker, TAG, archive)
            setup = _stack(stack, archive)
        except Exception as exc:  # noqa: BLE001 - one clear line, not a traceback
            print(f"bench/scale: cannot start the stack: {exc}", file=sys.stderr)
            return 1
        cfg, manifest, api, instruction, refiner, db = setup
        try:
            for n in WORKERS:
                with ExitStack() as workers:
                    for k in range(n):
                        data_dir = WORK / f"worker-{n}-{k}"
                        attach_data(cfg, manifest, data_dir, refiner, db)
                        env = {**cfg.engine_env, "ENGINE_ROLE": "worker",
                               "ENGINE_MAX_CONCURRENT_JOBS": str(CONCURRENCY)}
                        workers.enter_context(running_engine(dataclasses.replace(cfg, engine_env=env),
                                                             manifest, data_dir))
                    _round(api, instruction, refiner, CONCURRENCY * n)  # warm-up: each caches the archive
                    rates = [_round(api, instruction, refiner, args.jobs) for _ in range(args.runs)]
                    latency = _claim_latency(api, instruction, refiner, 5)
                    results[n] = (rates, latency)
                    say(f"{n} worker(s): {median_or_nan(rates):.2f} jobs/s, "
                        f"claim latency {median_or_nan(latency) * 1000:.0f} ms")
        except Exception as exc:  # noqa: BLE001 - one clear line; cleanup still runs
            print(f"bench/scale: a bench run failed: {exc}", file=sys.stderr)
            return 1
    _report(results, args.jobs)
    return 0


def _stack(stack: ExitStack, archive: Path):
    """anvil, contracts, data, the instruction, PostgreSQL and the API engine."""
    from postgres_cluster import Cluster

    chain = start_anvil()
    stack.callback(chain.stop)
    cluster = Cluster()
    stack.callback(cluster.stop)
    engine_env = {"ENGINE_STORE_URL": cluster.url(), "ENGINE_ARTIFACT_DIR": str(WORK / "shared-artifacts"),
                  "ENGINE_QUEUE_SIZE": "10000", "ENGINE_CHARGE_PRICES": "false"}  # trivial, free jobs
    cfg = StoryConfig(rpc_url=chain.url, work_dir=WORK, say=say, engine_env=engine_env)
    deployment, manifest = deploy_contracts(cfg)
    owner = connect(chain.url, deployment, cfg.actors.dlp_owner)
    builder = connect(chain.url, deployment, cfg.actors.builder)
    dlp_id, refiner_id, db = register_data(cfg, owner)
    files_url = stack.enter_context(serve_directory(archive.parent))
    instruction = publish_and_approve(cfg, builder, owner, f"{files_url}/{archive.name}", _sha256(archive), dlp_id)
    grant_permissions(cfg, owner, refiner_id, cfg.actors.builder.address)
    api_cfg = dataclasses.replace(cfg, engine_env={**engine_env, "ENGINE_ROLE": "api"})
    url = stack.enter_context(running_engine(api_cfg, manifest, WORK / "api-data"))
    client = EngineClient(url, cfg.actors.builder, deployment.chain_id,
                          deployment.address("compute_instruction_registry"))
    stack.callback(client.close)
    say(f"API engine at {url}; PostgreSQL on port {cluster.port}")
    return cfg, manifest, client, instruction, refiner_id, db


def _report(results: dict[int, tuple[list[float], list[float]]], jobs: int) -> None:
    base_rate = median_or_nan(results[1][0])
    base_latency = median_or_nan(results[1][1])
    print(f"\nworkers  jobs/s (median, {jobs}/round)  vs 1 worker  claim latency ms  vs 1 worker", flush=True)
    for n, (rates, latency) in results.items():
        rate, lat = median_or_nan(rates), median_or_nan(latency)
        ratio = f"{rate / base_rate:.2f}x"
        print(f"{n:<7}  {rate:<26.2f}  {ratio:<11}  {lat * 1000:<16.0f}  {lat / base_latency:.2f}x", flush=True)


if __name__ == "__main__":
    sys.exit(main())
