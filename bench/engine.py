"""Benchmark: the compute engine's job path against the bare Docker operations under it.

Stands up a real stack (anvil, the five contracts, a DLP + refiner with the
demo's sample data, approved instructions, permissions, `compute-engine serve`
as a process, archives served over loopback HTTP) and times, N runs each,
interleaved so machine noise hits both sides alike:

1. warm path: a trivial busybox job end to end through the API
   (EngineClient.submit -> wait (long-poll) until SUCCEEDED -> artifacts listed), image
   already cached, against a bare hardened `docker run --rm` of the same image
   with the same flags, mounts and env (bench/engine_bare.py). Target <= 1.10x.
2. cold path: the first job of an instruction with an empty engine image cache:
   fetch over HTTP + sha256 + docker load, read from the job's own step
   timestamps (FETCHING -> QUERYING), against bare `sha256sum` + `docker load`
   of the same archive. Before every run the cached archive is deleted and the
   image removed. The archive is the job template's image when the local
   Python base exists (else busybox), flattened into one fresh layer so no
   other image shares its layers (a truly cold load). Target <= 1.05x.
3. throughput: batches of trivial jobs kept ``c`` in flight (c = 2 and 4; the
   engine runs with 4 workers) against bare hardened `docker run`s ``c`` at a
   time, in jobs per second. Target >= 0.9x of bare. For reference, the
   engine's DockerRunner alone ``c`` at a time (the same containers, no job
   around them): the engine creates them with ``NetworkDisabled``, which the
   docker CLI cannot ask for (bench/engine_bare.py), so the runner is the
   floor under the engine's own figure.

Prints medians and ratios; exits 0 (a benchmark, not a test), 1 when the
stack cannot start. Everything it starts or creates is removed at the end.

    .venv/bin/python bench/engine.py [--runs N] [--poll S] [--cold-image auto|busybox]
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# This file is bench/engine.py: with bench/ first on sys.path, `import engine`
# would find this script, not the engine package. Put the repo root first.
sys.path[0] = str(ROOT)
sys.path.append(str(ROOT / "tests"))  # tests/images.py: local image builders

import docker
from images import build_image, busybox_image, export_archive

from bench.common import flatten_image, median_or_nan, paired_ratio, print_table, say
from bench.engine_bare import bare_docker_run, bare_docker_runs, bare_verify_and_load, remove_image
from demo.story import (
    DEMO_PARAMS,
    DEMO_QUERY,
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
from engine.images import inspect_archive
from engine.runner import DockerRunner, RunLimits, RunSpec
from registry_client.contracts import connect
from registry_client.devchain import start_anvil
from registry_client.engine_client import EngineClient

WORK = ROOT / "bench" / ".work" / "engine"
TRIVIAL_TAG = "c2d-bench/trivial:1"
TEMPLATE_TAG = "c2d-bench/job:latest"
COLD_TAG = "c2d-bench/job:cold"
PYTHON_BASE = "c2d/python-base:bookworm"
TRIVIAL_DOCKERFILE = (
    "FROM c2d-test/busybox:1\n"
    'LABEL org.c2d.bench="engine-warm"\n'
    'CMD ["/bin/sh", "-c", "echo ok > /mnt/output/result.txt"]\n'
)
TRIVIAL_QUERY = "SELECT id FROM users WHERE id = ?"
TRIVIAL_PARAMS = [1]
JOB_TIMEOUT_S = 300.0
ENGINE_WORKERS = 4  # the throughput bench's highest concurrency
CONCURRENCIES = (2, 4)
JOBS_PER_WORKER = 4  # a throughput batch is concurrency x this many jobs
TARGETS = {"warm": 1.10, "cold": 1.05, "throughput": 0.90}
BENCHES = ("warm", "cold", "throughput")


class StackError(RuntimeError):
    """The bench's stack (Docker, images, chain, engine) could not be set up."""


@dataclass
class Images:
    """What the bench built, and what it must remove at the end."""

    trivial_id: str = ""
    trivial_archive: Path | None = None
    cold_id: str = ""
    cold_archive: Path | None = None
    cold_kind: str = ""
    created: list[str] = field(default_factory=list)  # refs to force-remove
    untag: list[str] = field(default_factory=list)  # tags to drop without -f


@dataclass
class Stack:
    client: EngineClient
    new_client: Callable[[], EngineClient]  # one per bench thread
    warm_instruction: int
    cold_instruction: int
    refiner_id: int
    data_dir: Path


# ------------------------------------------------------------------ images


def build_images(docker_client, images: Images, cold: str = "auto") -> None:
    """The trivial warm-path image and the cold-path image, each exported to an archive."""
    archives = WORK / "archives"
    archives.mkdir(parents=True, exist_ok=True)
    busybox_image(docker_client)
    images.trivial_id = build_image(docker_client, TRIVIAL_DOCKERFILE, TRIVIAL_TAG)
    images.created.append(TRIVIAL_TAG)
    images.trivial_archive = archives / "trivial.tar.gz"
    export_archive(docker_client, TRIVIAL_TAG, images.trivial_archive)
    say(f"trivial job image {images.trivial_id[:19]} exported "
        f"({images.trivial_archive.stat().st_size // 1024} KiB)")

    source = (_template_image(images) if cold == "auto" else None) or TRIVIAL_TAG
    images.cold_kind = "job template" if source == TEMPLATE_TAG else "busybox"
    images.cold_id = flatten_image(source, COLD_TAG)
    images.created.append(images.cold_id)
    images.cold_archive = archives / "cold.tar.gz"
    export_archive(docker_client, COLD_TAG, images.cold_archive)
    say(f"cold-path image ({images.cold_kind}, flattened to one fresh layer) "
        f"{images.cold_id[:19]} exported ({images.cold_archive.stat().st_size / 2**20:.1f} MiB)")


def _template_image(images: Images) -> str | None:
    """Build the job template as TEMPLATE_TAG when the local Python base exists."""
    probe = subprocess.run(["docker", "image", "inspect", PYTHON_BASE], capture_output=True,
                           check=False)
    if probe.returncode != 0:
        say(f"{PYTHON_BASE} missing: the cold path uses the busybox image instead")
        return None
    env = {**os.environ, "IMAGE": TEMPLATE_TAG, "BASE_IMAGE": PYTHON_BASE}
    built = subprocess.run([str(ROOT / "job_template" / "image-build.sh")], env=env,
                           capture_output=True, text=True, check=False)
    if built.returncode != 0:
        raise StackError(f"job_template/image-build.sh failed:\n{built.stderr[-1500:]}")
    images.untag.append(TEMPLATE_TAG)
    say(f"built the job template image as {TEMPLATE_TAG}")
    return TEMPLATE_TAG


def remove_images(images: Images) -> None:
    for ref in images.created:
        remove_image(ref)
    for tag in images.untag:
        # No -f: when another tag names the same image, only this tag goes.
        subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)


# ------------------------------------------------------------------ stack


def start_stack(stack: ExitStack, images: Images) -> Stack:
    """Chain, contracts, data, two approved instructions, permissions, a running engine."""
    chain = start_anvil()
    stack.callback(chain.stop)
    say(f"anvil at {chain.url}")
    cfg = StoryConfig(rpc_url=chain.url, work_dir=WORK, say=say,
                      engine_env={"ENGINE_MAX_CONCURRENT_JOBS": str(ENGINE_WORKERS)})
    deployment, manifest = deploy_contracts(cfg)
    owner = connect(chain.url, deployment, cfg.actors.dlp_owner)
    builder = connect(chain.url, deployment, cfg.actors.builder)
    dlp_id, refiner_id, db = register_data(cfg, owner)
    assert images.trivial_archive is not None and images.cold_archive is not None
    files_url = stack.enter_context(serve_directory(images.trivial_archive.parent))
    warm = publish_and_approve(cfg, builder, owner, f"{files_url}/{images.trivial_archive.name}",
                               _sha256(images.trivial_archive), dlp_id)
    cold = publish_and_approve(cfg, builder, owner, f"{files_url}/{images.cold_archive.name}",
                               _sha256(images.cold_archive), dlp_id)
    grant_permissions(cfg, owner, refiner_id, cfg.actors.builder.address)
    # Free reads for the bench's jobs (the cheapest covering permission prices a read): a
    # priced query needs an on-chain job paid per run, which is not what is measured here.
    owner.add_permission(refiner_id, cfg.actors.builder.address, "", "", 0)
    data_dir = WORK / "engine-data"
    attach_data(cfg, manifest, data_dir, refiner_id, db)
    engine_url = stack.enter_context(running_engine(cfg, manifest, data_dir))
    say(f"engine up at {engine_url}")
    def new_client() -> EngineClient:
        made = EngineClient(engine_url, cfg.actors.builder, deployment.chain_id,
                            deployment.address("compute_instruction_registry"))
        stack.callback(made.close)
        # As a long-lived builder app does: sign in once, so reads carry the session
        # token instead of an EIP-712 signature each (a submit is still signed).
        made.sign_in()
        return made

    return Stack(new_client(), new_client, warm, cold, refiner_id, data_dir)


def run_job(s: Stack, instruction_id: int, query: str, params: list, poll_s: float) -> dict:
    job = s.client.submit(instruction_id, s.refiner_id, query, params)
    job = s.client.wait(job["id"], poll_s=poll_s, timeout_s=JOB_TIMEOUT_S)
    if job["status"] != "SUCCEEDED":
        raise RuntimeError(f"bench job {job['id']} ended {job['status']}: {job.get('failure')}")
    return job


def step_spans(job: dict) -> dict[str, float]:
    """Seconds spent in each status, from the job's own step timestamps."""
    steps = job.get("steps") or []
    return {a["status"]: b["at"] - a["at"] for a, b in itertools.pairwise(steps)}


# ------------------------------------------------------------------ benches


@dataclass
class WarmTimes:
    ours: list[float] = field(default_factory=list)  # submit -> artifacts listed
    inside: list[float] = field(default_factory=list)  # the job's created_at -> finished_at
    runner: list[float] = field(default_factory=list)  # DockerRunner.run alone, in process
    bare: list[float] = field(default_factory=list)  # docker run --rm, same flags
    spans: list[dict[str, float]] = field(default_factory=list)


def bench_warm(s: Stack, images: Images, runs: int, poll_s: float, docker_client) -> WarmTimes:
    """Interleaved: engine job end to end, the engine's runner alone, a bare hardened docker run."""
    job = run_job(s, s.warm_instruction, TRIVIAL_QUERY, TRIVIAL_PARAMS, poll_s)
    say(f"warm-up job {job['id']} SUCCEEDED (image {job['image_id'][:19]} now cached)")
    input_db = _bare_input()
    times = WarmTimes()
    runner = DockerRunner(docker_client)
    for i in range(runs):
        t0 = time.perf_counter()
        job = run_job(s, s.warm_instruction, TRIVIAL_QUERY, TRIVIAL_PARAMS, poll_s)
        listed = s.client.artifacts(job["id"])
        times.ours.append(time.perf_counter() - t0)
        if not any(a["name"] == "result.txt" for a in listed):
            raise RuntimeError(f"job {job['id']} lists no result.txt: {listed}")
        times.spans.append(step_spans(job))
        times.inside.append(job["finished_at"] - job["created_at"])
        out = WORK / "bare" / f"runner-{i}"
        t0 = time.perf_counter()
        result = runner.run(RunSpec(f"bench-runner-{i}", images.trivial_id, input_db, out, 1,
                                    RunLimits()))
        elapsed = time.perf_counter() - t0  # whole call: duration_s omits the removal
        if result.exit_code != 0 or not (out / "result.txt").is_file():
            raise RuntimeError(f"DockerRunner.run of the trivial image failed: {result}")
        times.runner.append(elapsed)
        out = WORK / "bare" / f"out-{i}"
        times.bare.append(bare_docker_run(images.trivial_id, input_db, out, RunLimits()))
        if not (out / "result.txt").is_file():
            raise RuntimeError("the bare run wrote no result.txt")
        say(f"warm {i + 1}/{runs}: engine job {times.ours[-1]:.3f} s "
            f"({times.inside[-1]:.3f} s inside the engine), "
            f"engine runner alone {times.runner[-1]:.3f} s, bare docker run {times.bare[-1]:.3f} s")
    return times


def _bare_input() -> Path:
    """The bare runs' input: ``query_results.db`` alone in its folder, as the engine mounts it."""
    input_db = WORK / "bare" / "input" / "query_results.db"
    if not input_db.exists():
        input_db.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(input_db) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS results (id INTEGER)")
            conn.execute("INSERT INTO results VALUES (1)")
        conn.close()
    return input_db


def _engine_batch(s: Stack, clients: list[EngineClient], n: int, poll_s: float) -> float:
    """Seconds for ``n`` trivial engine jobs, one client thread per job in flight."""
    def one(i: int) -> None:
        c = clients[i % len(clients)]
        job = c.submit(s.warm_instruction, s.refiner_id, TRIVIAL_QUERY, TRIVIAL_PARAMS)
        job = c.wait(job["id"], poll_s=poll_s, timeout_s=JOB_TIMEOUT_S)
        if job["status"] != "SUCCEEDED":
            raise RuntimeError(f"bench job {job['id']} ended {job['status']}: {job.get('failure')}")

    def lane(k: int) -> None:
        for i in range(k, n, len(clients)):
            one(i)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        list(pool.map(lane, range(len(clients))))
    return time.perf_counter() - started


def _runner_batch(runner: DockerRunner, image_id: str, input_db: Path, work: Path, n: int,
                  concurrency: int) -> float:
    """Seconds for ``n`` DockerRunner.run calls, ``concurrency`` at a time: the engine's
    container alone (its create body, through the Engine API), without the job around it."""
    def one(i: int) -> None:
        out = work / f"runner-{i}"
        result = runner.run(RunSpec(f"bench-tp-{i}", image_id, input_db, out, 1, RunLimits()))
        if result.exit_code != 0:
            raise RuntimeError(f"DockerRunner.run of the trivial image failed: {result}")

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(n)))
    return time.perf_counter() - started


def bench_throughput(s: Stack, images: Images, runs: int, poll_s: float,
                     docker_client) -> dict[int, tuple]:
    """Interleaved per concurrency: jobs/s through the engine, of bare docker runs, and of
    the engine's runner alone (the same containers without the job around them)."""
    input_db = _bare_input()
    runner = DockerRunner(docker_client)
    out: dict[int, tuple[list[float], list[float], list[float]]] = {}
    for c in CONCURRENCIES:
        n = c * JOBS_PER_WORKER
        ours, bare, alone = [], [], []
        for i in range(runs):
            # Fresh clients each round: a connection left idle through the bare round
            # (several seconds) races the engine's 5 s keep-alive close.
            clients = [s.new_client() for _ in range(c)]
            ours.append(n / _engine_batch(s, clients, n, poll_s))
            for client in clients:
                client.close()
            work = WORK / "bare" / f"tp-{c}-{i}"
            bare.append(n / bare_docker_runs(images.trivial_id, input_db, work, n, c))
            alone.append(n / _runner_batch(runner, images.trivial_id, input_db, work, n, c))
            shutil.rmtree(work, ignore_errors=True)
            say(f"throughput c={c} {i + 1}/{runs}: engine {ours[-1]:.2f} jobs/s, "
                f"bare docker run {bare[-1]:.2f} jobs/s, runner alone {alone[-1]:.2f} jobs/s "
                f"({n} jobs each)")
        out[c] = (ours, bare, alone)
    return out


def forget_cached(s: Stack, images: Images) -> None:
    """Empty the engine's image cache for the cold image: archive file and Docker image."""
    for path in (s.data_dir / "images" / "archives").glob(f"{_sha256(images.cold_archive)}*"):
        path.unlink()
    remove_image(images.cold_id)


def bench_cold(s: Stack, images: Images, runs: int, poll_s: float) -> tuple[list, list, list]:
    """Engine fetch+verify+load (step timestamps) and sha256sum + docker load, in turns.

    Each side starts from its own removal of the image, and both leave the same
    history for the next: the engine's job runs a container from the image it
    loaded, so the bare side runs one too (untimed) after its load. Here a load
    right after removing an image that was only loaded took 1.5-2x as long as one
    after removing an image a container ran from (perf: the time is in ext4's
    inode allocator, find_inode_bit / recently_deleted, in dockerd's untar), so
    without that the side following a bare load paid for it. The side that goes
    first still alternates round by round.
    """
    assert images.cold_archive is not None
    query, params = ((DEMO_QUERY, DEMO_PARAMS) if images.cold_kind == "job template"
                     else (TRIVIAL_QUERY, TRIVIAL_PARAMS))
    ours: list[float] = []
    bare: list[float] = []
    spans: list[dict[str, float]] = []

    def engine_side() -> None:
        forget_cached(s, images)
        s.client = s.new_client()  # not a connection left idle for seconds (keep-alive race)
        job = run_job(s, s.cold_instruction, query, params, poll_s)
        at = {step["status"]: step["at"] for step in job["steps"]}
        ours.append(at["QUERYING"] - at["FETCHING"])
        spans.append(step_spans(job))

    def bare_side() -> None:
        remove_image(images.cold_id)
        bare.append(bare_verify_and_load(images.cold_archive))
        subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "true",
                        images.cold_id], check=True, capture_output=True)  # as the engine's job does

    bare_side()  # untimed: the first measured load gets the same history as every other
    bare.clear()
    for i in range(runs):
        for side in ((engine_side, bare_side) if i % 2 == 0 else (bare_side, engine_side)):
            side()
        # Where the load step's time goes: the manifest check alone (it reads the whole tar).
        t0 = time.perf_counter()
        inspect_archive(images.cold_archive)
        spans[-1]["inspect_archive"] = time.perf_counter() - t0
        say(f"cold {i + 1}/{runs} ({'engine' if i % 2 == 0 else 'bare'} first): engine "
            f"fetch+verify+load {ours[-1]:.3f} s (fetch {spans[-1]['FETCHING']:.3f} + load "
            f"{spans[-1]['LOADING']:.3f}), bare sha256sum+docker load {bare[-1]:.3f} s")
    remove_image(images.cold_id)
    return ours, bare, spans


# ------------------------------------------------------------------ main


def _print_spans(title: str, spans: list[dict[str, float]], statuses: tuple[str, ...]) -> None:
    print(f"\n{title}, median seconds per step (from the job's step timestamps):")
    for status in statuses:
        print(f"  {status:11s} {median_or_nan([sp[status] for sp in spans if status in sp]):.3f}")


def _verdict(ratio: float, target: float, higher_is_better: bool = False) -> str:
    met = ratio >= target if higher_is_better else ratio <= target
    return f"{'>=' if higher_is_better else '<='} {target:.2f}x: {'met' if met else 'NOT met'}"


def report(warm: WarmTimes | None, cold: tuple[list, list, list] | None,
           throughput: dict[int, tuple] | None, images: Images, poll_s: float) -> None:
    """The step medians, then every ratio against its target (benches not run are left out)."""
    rows, paired = [], []
    if warm is not None:
        _print_spans("warm job", warm.spans, ("PENDING", "VERIFYING", "FETCHING", "LOADING",
                                              "QUERYING", "RUNNING", "COLLECTING"))
        print(f"  created_at -> finished_at {median_or_nan(warm.inside):.3f} (the rest of the "
              "end-to-end figure is submit, the long-poll and the artifact listing over HTTP)")
        warm_r = median_or_nan(warm.ours) / median_or_nan(warm.bare)
        rows += [("warm: trivial job submit->artifacts vs docker run", median_or_nan(warm.ours),
                  median_or_nan(warm.bare), _verdict(warm_r, TARGETS["warm"])),
                 ("warm: engine runner alone vs docker run", median_or_nan(warm.runner),
                  median_or_nan(warm.bare), "-")]
        paired += [f"warm {paired_ratio(warm.ours, warm.bare):.2f}x",
                   f"runner alone {paired_ratio(warm.runner, warm.bare):.2f}x"]
    if cold is not None:
        ours_c, bare_c, spans_c = cold
        _print_spans("cold job", spans_c, ("FETCHING", "LOADING"))
        print(f"  for reference, inspect_archive alone over the cached file (timed separately; "
              f"the engine checks while downloading) "
              f"{median_or_nan([sp['inspect_archive'] for sp in spans_c]):.3f}")
        size = images.cold_archive.stat().st_size / 2**20 if images.cold_archive else 0.0
        cold_r = median_or_nan(ours_c) / median_or_nan(bare_c)
        rows.append((f"cold: fetch+verify+load ({images.cold_kind}, {size:.0f} MiB gz)",
                     median_or_nan(ours_c), median_or_nan(bare_c), _verdict(cold_r, TARGETS["cold"])))
        paired.append(f"cold {paired_ratio(ours_c, bare_c):.2f}x")
    print(f"\nEngineClient.wait long-polls until the job ends (one request per job); --poll {poll_s:g} s "
          "only paces retries\n")
    if rows:
        print_table(rows)
    if throughput is not None:
        print("\nthroughput, trivial jobs (jobs/s; ratio = engine / bare, higher is better):")
        tp_rows = []
        for c, (ours, bare, alone) in throughput.items():
            ratio = median_or_nan(ours) / median_or_nan(bare)
            tp_rows.append((f"throughput: concurrency {c}", median_or_nan(ours), median_or_nan(bare),
                            _verdict(ratio, TARGETS["throughput"], higher_is_better=True)))
            tp_rows.append((f"throughput: runner alone, concurrency {c}", median_or_nan(alone),
                            median_or_nan(bare), "-"))
            paired.append(f"throughput c={c} {paired_ratio(ours, bare):.2f}x")
            paired.append(f"engine / its runner alone c={c} {paired_ratio(ours, alone):.2f}x")
        print_table(tp_rows, unit="jobs/s")
    print(f"\nmedian of per-round ratios (robust to load drifting between rounds): "
          f"{', '.join(paired)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="timed runs per bench (default 7)")
    ap.add_argument("--poll", type=float, default=0.05,
                    help="EngineClient.wait retry pacing in seconds (it long-polls; default 0.05)")
    ap.add_argument("--cold-image", choices=("auto", "busybox"), default="auto",
                    help="auto: the job template when the local Python base exists")
    ap.add_argument("--only", choices=BENCHES, action="append",
                    help="run only this bench (repeatable; default: all three)")
    args = ap.parse_args(argv)
    images = Images()
    with ExitStack() as stack:
        stack.callback(lambda: shutil.rmtree(WORK, ignore_errors=True))
        stack.callback(remove_images, images)
        try:
            shutil.rmtree(WORK, ignore_errors=True)
            WORK.mkdir(parents=True)
            docker_client = docker.from_env(timeout=300)
            docker_client.ping()
            build_images(docker_client, images, args.cold_image)
            s = start_stack(stack, images)
        except Exception as exc:  # noqa: BLE001 - one clear line, not a traceback
            print(f"bench/engine: cannot start the stack: {exc}", file=sys.stderr)
            return 1
        try:
            only = set(args.only or BENCHES)
            warm = cold = throughput = None
            if "warm" in only:
                say(f"warm path: {args.runs} runs, poll interval {args.poll:g} s")
                warm = bench_warm(s, images, args.runs, args.poll, docker_client)
            if "cold" in only:
                say(f"cold path: {args.runs} runs ({images.cold_kind} image)")
                cold = bench_cold(s, images, args.runs, args.poll)
            if "throughput" in only:
                say(f"throughput: {args.runs} rounds at concurrency {CONCURRENCIES}")
                throughput = bench_throughput(s, images, args.runs, args.poll, docker_client)
        except Exception as exc:  # noqa: BLE001 - one clear line; cleanup still runs
            print(f"bench/engine: a bench run failed: {exc}", file=sys.stderr)
            return 1
        report(warm, cold, throughput, images, args.poll)
    say("cleaned up: engine, anvil, bench images and bench/.work/engine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
