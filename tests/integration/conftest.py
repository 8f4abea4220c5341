"""Fixtures for integration tests: the real engine over real HTTP, anvil, dockerd and SQLite.

- ``archive_server`` (session): an HTTP server on loopback serving job image
  archives from a temp dir; it counts requests per path and can hold a
  response until the test releases it (``hold(name)``).
- ``job_image`` (session): builds a busybox job image running a shell script
  (``ENTRYPOINT ["/bin/sh", "/job.sh"]``), exports it to the server's dir and
  returns its archive URL and sha256; ``evict=True`` removes the image from
  Docker afterwards, so the engine must really load it.
- ``world`` (module): a fresh DLP + refiner with sample data and the builder's
  permissions on the session's deployment. The chain is snapshotted when the
  module starts and reverted when it ends: the engine sees one consistent
  chain during the module (no per-test reverts under a running engine), and
  later test modules never see this state.
- ``engine`` (module): the real engine in-process (``create_app(settings)``
  under uvicorn in a thread) with small limits, and signed ``EngineClient``s
  for the builder and a stranger; ``running_engine(world, data_dir, **settings)``
  starts one with other settings (test_engine_payments.py: one that charges).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from demo.sample_data import make_sample_db
from engine.layouts import LAYOUT_LABEL
from registry_client.contracts import Registries, connect
from registry_client.engine_client import EngineClient
from registry_client.manifest import save_deployment
from tests.conftest import ANVIL_KEYS, make_kek_file
from tests.images import BUSYBOX_TAG, build_image, busybox_image, export_archive, remove_images
from tests.loopback import loopback_listener

MiB = 1024 * 1024
# Small limits keep the failure tests fast (each is one short container).
RUN_TIMEOUT_S = 4.0
RUN_MEMORY_BYTES = 32 * MiB
OUTPUT_MAX_BYTES = 1 * MiB
ENGINE_KEY_ENV = "TEST_ENGINE_SIGNING_KEY"  # holds ANVIL_KEYS[4] while the engine fixture runs

# The builder's grants mirror the demo: activities (all), users.locale, users.id.
GRANTS = (("activities", "", 1_000), ("users", "locale", 500), ("users", "id", 100))
STORY_QUERY = (
    "SELECT u.locale AS locale, a.kind AS kind, a.duration_s AS duration_s "
    "FROM activities a JOIN users u ON u.id = a.user_id WHERE a.duration_s >= ?"
)
STORY_PARAMS = [300]
SIMPLE_QUERY = "SELECT kind, duration_s FROM activities"
DENIED_QUERY = "SELECT email FROM users"


# ---------------------------------------------------------------- archive server


@dataclass
class Gate:
    """A held response: `entered` is set when the request arrives, `release()` lets it go."""

    entered: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()


class ArchiveServer:
    """Serves files of `root` by name over HTTP on 127.0.0.1; counts and can hold requests."""

    def __init__(self, root: Path):
        self.root = root
        self.counts: Counter[str] = Counter()
        self.gates: dict[str, Gate] = {}
        self._lock = threading.Lock()
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def requests(self, name: str) -> int:
        with self._lock:
            return self.counts[name]

    def hold(self, name: str) -> Gate:
        """Hold the next responses for `name` until the returned gate is released."""
        gate = Gate()
        self.gates[name] = gate
        return gate

    def close(self) -> None:
        for gate in self.gates.values():
            gate.release()
        self._httpd.shutdown()
        self._httpd.server_close()

    def _serve(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        name = handler.path.split("?", 1)[0].lstrip("/")
        with self._lock:
            self.counts[name] += 1
        gate = self.gates.get(name)
        if gate is not None:
            gate.entered.set()
            gate.released.wait(60)
        path = self.root / name
        if "/" in name or not name or not path.is_file():
            handler.send_response(404)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        data = path.read_bytes()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/gzip")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture(scope="session")
def archive_server(tmp_path_factory) -> Iterator[ArchiveServer]:
    server = ArchiveServer(tmp_path_factory.mktemp("served-archives"))
    try:
        yield server
    finally:
        server.close()


# ---------------------------------------------------------------- job images


@dataclass(frozen=True)
class JobImage:
    """A job image exported as a gzipped `docker save` archive under the archive server."""

    name: str
    image_id: str
    archive: Path
    sha256: str
    url: str


def image_exists(docker_client, image_id: str) -> bool:
    import docker

    try:
        docker_client.images.get(image_id)
        return True
    except docker.errors.ImageNotFound:
        return False


@pytest.fixture(scope="session")
def job_image(docker_client, archive_server: ArchiveServer) -> Iterator[Callable[..., JobImage]]:
    """``job_image(name, script, evict=False)``: build, export and serve a busybox job image."""
    busybox_image(docker_client)
    built: dict[str, JobImage] = {}

    def make(name: str, script: str, *, evict: bool = False) -> JobImage:
        if name in built:
            return built[name]
        tag = f"c2d-itest/{name}:1"
        dockerfile = f'FROM {BUSYBOX_TAG}\nCOPY job.sh /job.sh\nENTRYPOINT ["/bin/sh", "/job.sh"]\n'
        image_id = build_image(docker_client, dockerfile, tag, {"job.sh": script})
        archive = archive_server.root / f"{name}.tar.gz"
        sha256 = export_archive(docker_client, tag, archive)
        if evict:
            docker_client.images.remove(image_id, force=True)
        built[name] = JobImage(name, image_id, archive, sha256, archive_server.url(archive.name))
        return built[name]

    yield make
    remove_images(docker_client, [f"c2d-itest/{name}:1" for name in built])


# ---------------------------------------------------------------- chain world


@dataclass
class World:
    """One DLP with one refiner, its sample data and the builder's grants, on the session chain."""

    rpc_url: str
    deployment: Any
    manifest: Path
    owner: Registries
    builder: Registries
    dlp_id: int
    refiner_id: int
    data_db: Path
    accounts: Any

    @property
    def chain_id(self) -> int:
        return self.deployment.chain_id

    @property
    def registry_address(self) -> str:
        return self.deployment.address("compute_instruction_registry")

    def publish(self, sha256: str, url: str, *, approve: bool = True) -> int:
        """The builder publishes (sha256, url); the DLP owner approves it unless told not to."""
        instruction_id = self.builder.add_instruction(sha256, url)
        if approve:
            self.owner.update_instruction(instruction_id, self.dlp_id, True)
        return instruction_id

    def publish_image(self, image: JobImage, *, approve: bool = True) -> int:
        return self.publish(image.sha256, image.url, approve=approve)

    def client(self, base_url: str, role: str = "builder") -> EngineClient:
        return EngineClient(base_url, getattr(self.accounts, role), self.chain_id, self.registry_address)


@pytest.fixture(scope="module")
def world(anvil, deployment, accounts, tmp_path_factory) -> Iterator[World]:
    snapshot = anvil.rpc("evm_snapshot")
    try:
        work = tmp_path_factory.mktemp("world")
        owner = connect(anvil.url, deployment, accounts.dlp_owner)
        builder = connect(anvil.url, deployment, accounts.builder)
        dlp_id = owner.register_dlp("Integration DLP")
        refiner_id = owner.add_refiner(dlp_id, "fitness-itest", "https://example.org/schema.json", "")
        for table, column, price in GRANTS:
            owner.add_permission(refiner_id, accounts.builder.address, table, column, price)
        data_db = make_sample_db(work / "fitness.db", users=200, activities=1_000)
        manifest = save_deployment(deployment, work / "deployment.json", overwrite=True)
        yield World(anvil.url, deployment, manifest, owner, builder, dlp_id, refiner_id, data_db, accounts)
    finally:
        anvil.rpc("evm_revert", [snapshot])


# ---------------------------------------------------------------- the engine


@dataclass
class Engine:
    url: str
    settings: Any
    data_dir: Path
    builder: EngineClient
    stranger: EngineClient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_in_thread(app: Any) -> tuple[Any, threading.Thread, str, socket.socket]:
    import uvicorn

    sock = loopback_listener()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the engine's uvicorn did not start")
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}", sock


@contextlib.contextmanager
def running_engine(world: World, data_dir: Path, **overrides: Any) -> Iterator[Engine]:
    """The real engine (real service, chain, Docker, SQLite store) in this process."""
    from engine.api.app import create_app
    from engine.data import DataCatalog
    from engine.data_keys import read_kek_file
    from engine.settings import Settings

    # The engine attests results (and charges prices) with anvil dev key 4 (public; tests
    # only, the stranger's), read from the env var the setting names, as an operator would.
    previous_key = os.environ.get(ENGINE_KEY_ENV)
    os.environ[ENGINE_KEY_ENV] = ANVIL_KEYS[4]
    kek_file = Path(overrides.get("data_kek_file") or data_dir.parent / f"{data_dir.name}.kek")
    kek = read_kek_file(kek_file) if kek_file.exists() else make_kek_file(kek_file)
    settings = Settings(**{
        "rpc_url": world.rpc_url,
        "signing_key_env": ENGINE_KEY_ENV,
        "deployment": world.manifest,
        "data_dir": data_dir,
        "run_timeout_s": RUN_TIMEOUT_S,
        "run_memory_bytes": RUN_MEMORY_BYTES,
        "output_max_bytes": OUTPUT_MAX_BYTES,
        "max_concurrent_jobs": 2,
        "fetch_timeout_s": 30.0,
        "allow_private_fetch": True,  # the test archive server is on 127.0.0.1
        "data_kek_file": kek_file,  # outside the data dir, as an operator keeps it
        **overrides,
    })
    catalog = DataCatalog(data_dir, kek)
    if world.refiner_id not in {e.refiner_id for e in catalog.list()}:  # a restarted engine keeps its data
        catalog.add(world.refiner_id, world.data_db)
    server, thread, url, sock = _serve_in_thread(create_app(settings))
    builder, stranger = world.client(url, "builder"), world.client(url, "stranger")
    try:
        yield Engine(url, settings, data_dir, builder, stranger)
    finally:
        builder.close()
        stranger.close()
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()
        if previous_key is None:
            os.environ.pop(ENGINE_KEY_ENV, None)
        else:
            os.environ[ENGINE_KEY_ENV] = previous_key


@pytest.fixture(scope="module")
def engine(world: World, docker_client, tmp_path_factory) -> Iterator[Engine]:
    """The shared engine. Its priced queries run free (`charge_prices=False`): these modules
    test other guarantees; test_engine_payments.py runs an engine that charges."""
    with running_engine(world, tmp_path_factory.mktemp("engine-data"), charge_prices=False) as running:
        yield running


# ---------------------------------------------------------------- helpers


def wait_for(predicate: Callable[[], Any], timeout_s: float = 20.0, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)


def step_statuses(job: dict) -> list[str]:
    return [step["status"] for step in job.get("steps") or []]


def container_of(docker_client, job_id: str):
    """The job's container (``c2d-<id>``) or None."""
    import docker

    try:
        return docker_client.containers.get(f"c2d-{job_id}")
    except docker.errors.NotFound:
        return None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- images with a layout label, and the local Python base (tests/integration/test_engine_layouts.py,
# test_vana_api.py) ----------------------------------------------------------------------------

PYTHON_BASE = "c2d/python-base:bookworm"


@pytest.fixture(scope="module")
def labelled_image(docker_client, archive_server) -> Iterator[Callable[..., tuple[str, str]]]:
    """``labelled_image(name, script, layout=None, base=busybox)``: (sha256, url) of its archive."""
    busybox_image(docker_client)
    tags: list[str] = []

    def make(name: str, script: str, layout: str | None = None, base: str = BUSYBOX_TAG,
             command: str = '["/bin/sh", "/job.sh"]') -> tuple[str, str]:
        tag = f"c2d-itest/layout-{name}:1"
        label = f'LABEL {LAYOUT_LABEL}="{layout}"\n' if layout is not None else ""
        dockerfile = f"FROM {base}\n{label}COPY job.sh /job.sh\nCMD {command}\n"
        build_image(docker_client, dockerfile, tag, {"job.sh": script})
        tags.append(tag)
        archive = archive_server.root / f"layout-{name}.tar.gz"
        return export_archive(docker_client, tag, archive), archive_server.url(archive.name)

    yield make
    remove_images(docker_client, tags)


@pytest.fixture(scope="module")
def python_base(docker_client) -> str:
    import docker

    try:
        return docker_client.images.get(PYTHON_BASE).id
    except docker.errors.ImageNotFound:
        pytest.skip(f"{PYTHON_BASE} is missing: run tools/build-python-base.sh (make setup builds it)")
