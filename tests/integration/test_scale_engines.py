"""Many engines act as one: three `compute-engine serve` processes, one PostgreSQL, two Docker hosts.

Real parts only: PostgreSQL from the session fixture (tests/conftest.py), the
machine's Docker and a second, private `dockerd` (its own socket, data root,
exec root and its OWN bridge: never ``--bridge=none``, which deletes the host's
docker0), three engine processes each with its own data dir holding the same
refiner data, one shared artifact folder, anvil for the chain. Engines 0 and 1
use the machine's Docker, engine 2 the private one (``DOCKER_HOST``).

What "ran exactly once" rests on: every Docker host's event stream lists the
containers it created (labelled with the job id), so each job id must appear
in exactly one ``create`` across both hosts, and each job's steps show one
pass (one VERIFYING). Kill -9 of engine 2 mid-job: its running jobs end
ENGINE_LOST once their short lease lapses, jobs queued through it run on the
others. Cancel and download go through another engine than the one that ran
the job. About a minute on two cores.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from engine.data import DataCatalog
from engine.data_keys import read_kek_file
from engine.runner import LABEL
from engine.scratch import clear_leftovers
from tests.conftest import make_kek_file
from tests.dockerd import private_dockerd
from tests.integration.conftest import (
    GRANTS,
    SIMPLE_QUERY,
    container_of,
    free_port,
    step_statuses,
    wait_for,
)
from tests.integration.test_engine_restart import engine_process

pytestmark = [pytest.mark.docker, pytest.mark.chain]

EXE = Path(sys.executable).with_name("compute-engine")
QUICK_SCRIPT = 'echo "ran $COMPUTE_JOB_ID" > /mnt/output/ran.txt\n'
LONG_SCRIPT = "sleep 40\n"
JOBS = 100
LEASE_S = 3


@pytest.fixture(scope="module")
def second_docker(docker_client) -> Iterator[tuple[str, object]]:
    """A private dockerd with its own bridge; (DOCKER_HOST, client). The job images come as archives."""
    with private_dockerd(docker_client, "scale", "10.213.78.1/24") as (daemon, client):
        yield f"unix://{daemon.sock}", client


@pytest.fixture(scope="module")
def store_url(postgres_cluster) -> Iterator[str]:
    """A fresh database every engine of this module shares."""
    import psycopg

    name = f"scale_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_cluster.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield postgres_cluster.url(name)
    with psycopg.connect(postgres_cluster.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Fleet:
    """Three engines: their URLs, clients, data dirs, processes and ids."""

    def __init__(self, world, root: Path, store_url: str, docker_hosts: list[str], refiners: list[list[int]]):
        self.world = world
        self.root = root
        self.artifacts = root / "shared-artifacts"  # what every host would mount (NFS, a volume)
        self.kek_file = root / "fleet.kek"  # one KEK for the fleet, outside every data dir
        make_kek_file(self.kek_file)
        self.envs, self.clients, self.procs, self.ids = [], [], [], []
        for n, (docker_host, held) in enumerate(zip(docker_hosts, refiners, strict=True)):
            data_dir = root / f"engine-{n}"
            env = self._env(data_dir, free_port(), store_url, docker_host)
            for refiner_id in held:  # the same refiner data in every data dir (what `data add` stores)
                DataCatalog(data_dir, read_kek_file(self.kek_file)).add(refiner_id, world.data_db)
            self.envs.append(env)
            self.clients.append(world.client(f"http://127.0.0.1:{env['ENGINE_PORT']}"))

    def _env(self, data_dir: Path, port: int, store_url: str, docker_host: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "DOCKER_HOST"))}
        return {
            **base,
            "DOCKER_HOST": docker_host,
            "ENGINE_RPC_URL": self.world.rpc_url,
            "ENGINE_DEPLOYMENT": str(self.world.manifest),
            "ENGINE_DATA_DIR": str(data_dir),
            "ENGINE_PORT": str(port),
            "ENGINE_STORE_URL": store_url,  # trust auth in the test cluster: no password anywhere
            "ENGINE_ARTIFACT_DIR": str(self.artifacts),
            "ENGINE_DATA_KEK_FILE": str(self.kek_file),
            "ENGINE_LEASE_S": str(LEASE_S),
            "ENGINE_MAX_CONCURRENT_JOBS": "2",
            "ENGINE_QUEUE_SIZE": "1000",
            "ENGINE_RUN_TIMEOUT_S": "60",
            "ENGINE_RUN_MEMORY_BYTES": str(32 * 1024 * 1024),
            "ENGINE_ALLOW_PRIVATE_FETCH": "true",
            "ENGINE_CHARGE_PRICES": "false",
        }

    def engine_id(self, n: int) -> str:
        return (Path(self.envs[n]["ENGINE_DATA_DIR"]) / "engine-id").read_text().strip()


@pytest.fixture(scope="module")
def scale_refiner(world) -> int:
    """A second refiner only engine 2 holds data for: its jobs can only run there."""
    refiner_id = world.owner.add_refiner(world.dlp_id, "scale-only", "https://example.org/schema.json", "")
    for table, column, price in GRANTS:
        world.owner.add_permission(refiner_id, world.accounts.builder.address, table, column, price)
    return refiner_id


@pytest.fixture(scope="module")
def fleet(world, store_url, second_docker, scale_refiner, tmp_path_factory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    hosts = ["unix:///var/run/docker.sock", "unix:///var/run/docker.sock", second_docker[0]]
    fleet = Fleet(world, root, store_url, hosts, [[world.refiner_id]] * 2 + [[world.refiner_id, scale_refiner]])
    with ThreadPoolExecutor(3) as pool:  # start together: each waits for its /health
        contexts = [engine_process(env, root / f"engine-{n}.log") for n, env in enumerate(fleet.envs)]
        fleet.procs = list(pool.map(lambda ctx: ctx.__enter__(), contexts))
    fleet.ids = [fleet.engine_id(n) for n in range(3)]
    try:
        yield fleet
    finally:
        for client in fleet.clients:  # first: an open keep-alive connection delays a server's stop
            client.close()
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda ctx: ctx.__exit__(None, None, None), contexts))
        # A killed engine leaves its jobs' containers and mounted output filesystems (its restart
        # would clear them): clear them as that restart does.
        for container in second_docker[1].containers.list(all=True, filters={"label": LABEL}):
            container.remove(force=True)
        for env in fleet.envs:
            clear_leftovers(Path(env["ENGINE_DATA_DIR"]) / "scratch")


class ContainerLog:
    """Job ids of the containers one Docker host creates while it listens, with counts.

    A live event stream: the daemon's own event history keeps only its last 256 events,
    too few on a shared host.
    """

    def __init__(self, client):
        self.created: Counter[str] = Counter()
        self._stream = client.events(decode=True, filters={"type": "container", "event": "create", "label": LABEL})
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        try:
            for event in self._stream:
                self.created[event["Actor"]["Attributes"][LABEL]] += 1
        except Exception:  # noqa: BLE001 - the stream closed at the end of the test
            return

    def close(self) -> None:
        self._stream.close()


def test_a_hundred_jobs_on_three_engines_and_two_docker_hosts_each_run_once(
    fleet, world, job_image, docker_client, second_docker
):
    quick = world.publish_image(job_image("scale-quick", QUICK_SCRIPT))
    host_log, second_log = ContainerLog(docker_client), ContainerLog(second_docker[1])
    clients = fleet.clients
    with ThreadPoolExecutor(6) as pool:  # submissions spread over the three APIs
        jobs = list(pool.map(lambda i: clients[i % 3].submit(quick, world.refiner_id, SIMPLE_QUERY), range(JOBS)))
    ids = [job["id"] for job in jobs]
    assert len(set(ids)) == JOBS
    # Each followed through another engine than the one that took it: long-polls see every engine's writes.
    ended = [clients[(i + 1) % 3].wait(job_id, poll_s=0.2, timeout_s=120) for i, job_id in enumerate(ids)]
    assert [job["status"] for job in ended] == ["SUCCEEDED"] * JOBS, [j.get("failure") for j in ended]
    for job in ended:
        assert step_statuses(job).count("VERIFYING") == 1 and step_statuses(job)[-1] == "SUCCEEDED"

    time.sleep(1)  # the last events reach the listeners
    host_log.close()
    second_log.close()
    on_host, on_second = host_log.created, second_log.created
    ran = on_host + on_second
    assert {job_id: ran[job_id] for job_id in ids} == dict.fromkeys(ids, 1), "each job: one container, one host"
    assert set(on_host) & set(on_second) == set()
    assert sum(on_host[i] for i in ids) > 0 and sum(on_second[i] for i in ids) > 0, "both Docker hosts ran jobs"

    # Any engine serves any job's artifacts (the shared folder): download through each.
    for n, job_id in enumerate(ids[:3]):
        paths = clients[(n + 2) % 3].download(job_id, fleet.root / "out" / job_id)
        assert [p.name for p in paths] == ["ran.txt"] and paths[0].read_text().startswith("ran ")


def test_kill_9_mid_job_ends_its_jobs_engine_lost_and_its_queue_runs_elsewhere(
    fleet, world, job_image, scale_refiner, second_docker
):
    long_id = world.publish_image(job_image("scale-long", LONG_SCRIPT))
    quick = world.publish_image(job_image("scale-quick", QUICK_SCRIPT))
    victim, survivor = fleet.clients[2], fleet.clients[0]
    # Only engine 2 holds scale_refiner's data: both long jobs run there and fill its two slots.
    running = [victim.submit(long_id, scale_refiner, SIMPLE_QUERY)["id"] for _ in range(2)]
    wait_for(lambda: all(victim.status(j)["status"] == "RUNNING" for j in running), 60, "the long jobs to run")
    wait_for(lambda: all(container_of(second_docker[1], j) is not None for j in running), 15, "their containers")
    queued = [victim.submit(quick, world.refiner_id, SIMPLE_QUERY)["id"] for _ in range(4)]
    fleet.procs[2].send_signal(signal.SIGKILL)
    fleet.procs[2].wait(timeout=10)

    for job_id in running:
        lost = survivor.wait(job_id, poll_s=0.2, timeout_s=LEASE_S * 10)
        assert (lost["status"], lost["failure"]["code"]) == ("FAILED", "ENGINE_LOST"), lost
        assert fleet.ids[2] in lost["failure"]["message"]
    for job_id in queued:  # nothing is lost: what it had taken in runs on the others
        done = survivor.wait(job_id, poll_s=0.2, timeout_s=60)
        assert done["status"] == "SUCCEEDED", done


def test_cancel_through_another_engine_stops_the_container(fleet, world, job_image, docker_client, second_docker,
                                                           store_url):
    import psycopg

    long_id = world.publish_image(job_image("scale-long", LONG_SCRIPT))
    alive = [n for n, proc in enumerate(fleet.procs) if proc.poll() is None]
    first = fleet.clients[alive[0]]
    job_id = first.submit(long_id, world.refiner_id, SIMPLE_QUERY)["id"]
    wait_for(lambda: first.status(job_id)["status"] == "RUNNING", 60, "the long job to run")
    with psycopg.connect(store_url) as conn:
        (owner,) = conn.execute("SELECT lease_owner FROM jobs WHERE id = %s", (job_id,)).fetchone()
    ran_on = fleet.ids.index(owner)
    docker_of = docker_client if ran_on < 2 else second_docker[1]
    wait_for(lambda: container_of(docker_of, job_id) is not None, 15, "its container")
    through = fleet.clients[next(n for n in alive if n != ran_on)]  # an engine that does not run it
    assert through.cancel(job_id)["status"] == "CANCELLED"
    wait_for(lambda: container_of(docker_of, job_id) is None, 10, "the container to stop")
    final = first.status(job_id)
    assert (final["status"], final["failure"]["code"]) == ("CANCELLED", "CANCELLED")
