"""engine.runner against a real dockerd: hardening seen from inside, limits, timeout, cancel."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import docker.errors
import pytest

import engine.runner as runner_mod
from engine.docker_calls import SocketCalls
from engine.runner import ENGINE_LABEL, LABEL, DockerRunner, RunLimits, RunResult, RunSpec, classify

pytestmark = pytest.mark.docker

MiB = 1024 * 1024
FAST = RunLimits(timeout_s=20, memory_bytes=64 * MiB, tmpfs_bytes=8 * MiB)

PROBE = r"""
out=$OUTPUT_PATH
id -u > $out/uid
id -g > $out/gid
(touch /rootfs-write 2>/dev/null && echo yes || echo no) > $out/root_write
(echo x >> $INPUT_PATH/query_results.db) 2>/dev/null && echo yes > $out/input_write || echo no > $out/input_write
(echo ok > /tmp/t && cat /tmp/t) > $out/tmp_write
cp /bin/busybox /tmp/bb && (/tmp/bb true 2>/dev/null && echo yes || echo no) > $out/tmp_exec
ls /sys/class/net > $out/ifaces
printf "GET / HTTP/1.0\r\n\r\n" | nc -w 2 $HOST_IP $HOST_PORT > $out/net_reply 2>&1
wget -O - "http://$HOST_IP:$HOST_PORT/" > $out/wget_out 2>&1
grep CapEff /proc/self/status > $out/caps
grep NoNewPrivs /proc/self/status > $out/nnp
env > $out/env
wc -c < $INPUT_PATH/query_results.db > $out/input_size
mkdir -p $out/nested/deeper && echo hi > $out/nested/deeper/hello.txt
"""


def _job() -> str:
    return uuid.uuid4().hex[:16]


@pytest.fixture(scope="module")
def runner(docker_client) -> DockerRunner:
    return DockerRunner(docker_client)


def _spec(
    image: str, input_db: Path, tmp_path: Path, limits: RunLimits = FAST, job_id: str | None = None
) -> RunSpec:
    return RunSpec(
        job_id=job_id or _job(),
        image_id=image,
        input_db=input_db,
        output_dir=tmp_path / "output",
        refiner_id=7,
        limits=limits,
    )


def _gone(docker_client, job_id: str) -> bool:
    try:
        docker_client.containers.get(f"c2d-{job_id}")
        return False
    except docker.errors.NotFound:
        return True


def test_hardening_seen_from_inside(
    runner, docker_client, make_image, input_db: Path, tmp_path: Path
) -> None:
    import http.server

    # A server on the host's bridge address: reachable from any networked container.
    gateway = (
        docker_client.networks.get("bridge").attrs["IPAM"]["Config"][0].get("Gateway", "172.17.0.1")
    )
    served: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer((gateway, 0), Handler)
    threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    script = f"HOST_IP={gateway}\nHOST_PORT={httpd.server_address[1]}\n" + PROBE
    image = make_image(f"probe-{httpd.server_address[1]}", script)
    spec = _spec(image, input_db, tmp_path)
    try:
        result = runner.run(spec)
    finally:
        httpd.shutdown()
        httpd.server_close()
    out = spec.output_dir
    assert classify(result) is None, result.logs
    assert (out / "uid").read_text().strip() == "65534"
    assert (out / "gid").read_text().strip() == "65534"
    assert (out / "root_write").read_text().strip() == "no"
    assert (out / "input_write").read_text().strip() == "no"
    assert (out / "tmp_write").read_text().strip() == "ok"
    assert (out / "tmp_exec").read_text().strip() == "no"
    assert (out / "ifaces").read_text().split() == ["lo"]
    # The same probe reaches this server from a bridged container; here nothing gets out.
    assert b"HTTP/" not in (out / "net_reply").read_bytes()
    assert "Network is unreachable" in (out / "wget_out").read_text()
    assert served == [], "the host server must never see a request"
    assert (out / "caps").read_text().split()[1] == "0000000000000000"
    assert (out / "nnp").read_text().split()[1] == "1"
    assert int((out / "input_size").read_text()) == input_db.stat().st_size
    assert (out / "nested" / "deeper" / "hello.txt").read_text() == "hi\n"
    env = dict(line.split("=", 1) for line in (out / "env").read_text().splitlines() if "=" in line)
    contract = {
        "C2D_JOB_ENV_VERSION": "1",
        "C2D_LAYOUT": "vana",
        "C2D_JOB_ID": spec.job_id,
        "INPUT_PATH": "/mnt/input",
        "OUTPUT_PATH": "/mnt/output",
        "COMPUTE_JOB_ID": spec.job_id,  # no on-chain job: the engine's id
        "DATA_REFINER_ID": "7",
        "DEV_MODE": "1",
    }
    assert {k: env.get(k) for k in contract} == contract
    # Only Docker's and the shell's own variables besides the contract's.
    assert set(env) - set(contract) <= {
        "PATH",
        "HOSTNAME",
        "HOME",
        "PWD",
        "SHLVL",
        "_",
    }
    assert _gone(docker_client, spec.job_id)


def test_container_config_is_hardened(
    runner, docker_client, make_image, input_db: Path, tmp_path: Path
) -> None:
    """Check what Docker recorded, while the container runs."""
    image = make_image("sleeper", "sleep 30")
    limits = RunLimits(
        cpus=0.5, memory_bytes=32 * MiB, pids=64, tmpfs_bytes=4 * MiB, timeout_s=20, log_bytes=4096
    )
    spec = _spec(image, input_db, tmp_path, limits)
    cancel = threading.Event()
    seen: dict = {}

    def inspect_then_cancel() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not seen:
            try:
                seen.update(docker_client.api.inspect_container(f"c2d-{spec.job_id}"))
            except docker.errors.NotFound:
                time.sleep(0.05)
        cancel.set()

    threading.Thread(target=inspect_then_cancel, daemon=True).start()
    result = runner.run(spec, cancel)
    assert classify(result) == "CANCELLED"
    host = seen["HostConfig"]
    assert seen["Image"] == image
    assert seen["Config"]["Labels"][LABEL] == spec.job_id
    assert seen["Config"]["User"] == "65534:65534"
    assert host["NetworkMode"] == "none"
    assert seen["Config"]["NetworkDisabled"] is True
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"][0] == "no-new-privileges"
    assert host["SecurityOpt"][1].startswith("seccomp=") and "io_uring_setup" in host["SecurityOpt"][1]
    assert host["Memory"] == host["MemorySwap"] == 32 * MiB
    assert host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 64
    assert "size=4194304" in host["Tmpfs"]["/tmp"] and "noexec" in host["Tmpfs"]["/tmp"]
    assert "mode=1777" in host["Tmpfs"]["/tmp"]
    assert host["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-size": str(4 * 4096 + 65536), "max-file": "2"},
    }
    mounts = {m["Target"]: m for m in host["Mounts"]}
    # The input's own folder, read-only: it exists before the query writes the database.
    assert mounts["/mnt/input"]["ReadOnly"] is True
    assert mounts["/mnt/output"].get("ReadOnly", False) is False


def test_out_of_memory(runner, docker_client, make_image, input_db: Path, tmp_path: Path) -> None:
    image = make_image("oom", 'x=a\nwhile true; do x="$x$x"; done\n')
    spec = _spec(image, input_db, tmp_path, RunLimits(memory_bytes=16 * MiB, timeout_s=30))
    result = runner.run(spec)
    assert result.oom_killed is True
    assert classify(result) == "OUT_OF_MEMORY"
    assert _gone(docker_client, spec.job_id)


def test_timeout_kills_and_removes(
    runner, docker_client, make_image, input_db: Path, tmp_path: Path
) -> None:
    image = make_image("sleeper", "sleep 30")
    spec = _spec(image, input_db, tmp_path, RunLimits(timeout_s=1.0))
    result = runner.run(spec)
    assert result.timed_out is True
    assert classify(result) == "TIMEOUT"
    # killed, not finished: the sleeper would run 30 s (a wide bound, not a timing test)
    assert 1.0 <= result.duration_s < 25
    assert _gone(docker_client, spec.job_id)


def test_cancel_event(runner, docker_client, make_image, input_db: Path, tmp_path: Path) -> None:
    image = make_image("sleeper", "sleep 30")
    spec = _spec(image, input_db, tmp_path)
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    result = runner.run(spec, cancel)
    assert result.cancelled is True and result.timed_out is False
    assert classify(result) == "CANCELLED"
    assert result.duration_s < 25  # killed long before the 30 s sleep ends
    assert _gone(docker_client, spec.job_id)


def test_cancel_by_job_id_kills_at_once(
    runner, docker_client, make_image, input_db: Path, tmp_path: Path
) -> None:
    image = make_image("sleeper", "sleep 30")
    spec = _spec(image, input_db, tmp_path)
    cancel = threading.Event()

    def cancel_soon() -> None:
        time.sleep(0.5)
        cancel.set()
        assert runner.cancel(spec.job_id) is True

    threading.Thread(target=cancel_soon, daemon=True).start()
    result = runner.run(spec, cancel)
    assert classify(result) == "CANCELLED"
    assert runner.cancel(spec.job_id) is False, "no container left to cancel"


def test_cancel_before_start(
    runner, docker_client, make_image, input_db: Path, tmp_path: Path
) -> None:
    cancel = threading.Event()
    cancel.set()
    spec = _spec(make_image("sleeper", "sleep 30"), input_db, tmp_path)
    result = runner.run(spec, cancel)
    assert classify(result) == "CANCELLED"
    assert result.exit_code is None
    assert _gone(docker_client, spec.job_id)


def test_nonzero_exit_and_capped_logs(
    runner, docker_client, make_image, input_db: Path, tmp_path: Path
) -> None:
    image = make_image(
        "chatty-fail",
        "i=0\nwhile [ $i -lt 200 ]; do echo line-$i; i=$((i+1)); done\nsleep 0.2\necho oops >&2\nexit 3\n",
    )
    spec = _spec(image, input_db, tmp_path, RunLimits(timeout_s=20, log_bytes=100))
    result = runner.run(spec)
    assert result.exit_code == 3
    assert classify(result) == "EXIT_NONZERO"
    assert len(result.logs) == 100, "the tail, capped at log_bytes"
    assert result.logs.endswith(b"line-199\noops\n")
    assert _gone(docker_client, spec.job_id)


def test_success_keeps_logs(runner, make_image, input_db: Path, tmp_path: Path) -> None:
    image = make_image(
        "hello", "echo hello from $COMPUTE_JOB_ID\necho done > $OUTPUT_PATH/done.txt\n"
    )
    spec = _spec(image, input_db, tmp_path)
    result = runner.run(spec)
    assert classify(result) is None
    assert result.exit_code == 0 and not result.oom_killed
    assert result.logs == f"hello from {spec.job_id}\n".encode()
    assert (spec.output_dir / "done.txt").read_text() == "done\n"


def test_stale_container_with_the_same_name_is_replaced(
    runner, docker_client, busybox, make_image, input_db: Path, tmp_path: Path
) -> None:
    job_id = _job()
    docker_client.containers.create(
        busybox, ["sleep", "30"], name=f"c2d-{job_id}", labels={LABEL: job_id}
    )
    result = runner.run(
        _spec(make_image("hello", "echo hi > $OUTPUT_PATH/x"), input_db, tmp_path, job_id=job_id)
    )
    assert classify(result) is None
    assert _gone(docker_client, job_id)


def test_a_container_created_before_its_input_exists_runs_with_the_input_written_later(
    runner, docker_client, make_image, input_db: Path, tmp_path: Path
) -> None:
    """create() while the query still writes the input; run() starts it once the file is there."""
    data = input_db.read_bytes()
    input_db.unlink()
    spec = _spec(make_image("reader", "wc -c < $INPUT_PATH/query_results.db > $OUTPUT_PATH/size"),
                 input_db, tmp_path)
    created = runner.create(spec)
    assert docker_client.containers.get(f"c2d-{spec.job_id}").status == "created"
    input_db.write_bytes(data)  # the query's result lands (by rename) after the create
    result = runner.run(spec, created=created)
    assert classify(result) is None, result.logs
    assert int((spec.output_dir / "size").read_text()) == len(data)
    assert _gone(docker_client, spec.job_id)


def test_discard_removes_a_created_container_that_never_ran(
    runner, docker_client, make_image, input_db: Path, tmp_path: Path
) -> None:
    spec = _spec(make_image("hello", "echo hi > $OUTPUT_PATH/x"), input_db, tmp_path)
    runner.discard(runner.create(spec))
    assert _gone(docker_client, spec.job_id)
    assert not (spec.output_dir / "x").exists()


def test_remove_leftovers_removes_only_this_engines_containers(docker_client, busybox) -> None:
    mine, theirs = DockerRunner(docker_client, "engine-a"), DockerRunner(docker_client, "engine-b")
    own_job, other_job = _job(), _job()
    for job_id, engine in ((own_job, "engine-a"), (other_job, "engine-b")):
        docker_client.containers.run(
            busybox, ["sleep", "30"], name=f"c2d-{job_id}", detach=True,
            labels={LABEL: job_id, ENGINE_LABEL: engine},
        )
    try:
        assert mine.remove_leftovers() == [own_job]
        assert _gone(docker_client, own_job)
        assert not _gone(docker_client, other_job)  # another engine's job keeps running
    finally:
        theirs.remove_leftovers()
    assert _gone(docker_client, other_job)


def test_missing_image_is_image_invalid(runner, input_db: Path, tmp_path: Path) -> None:
    from engine.errors import RunFailure

    with pytest.raises(RunFailure) as err:
        runner.run(_spec("sha256:" + "0" * 64, input_db, tmp_path))
    assert err.value.code == "IMAGE_INVALID"


@pytest.mark.parametrize("bad", ["", "../x", "a b", "-x", "a/b"])
def test_job_id_must_name_a_container(bad: str) -> None:
    with pytest.raises(ValueError):
        runner_mod.container_name(bad)


def _r(**kw) -> RunResult:
    base = {
        "exit_code": 0,
        "oom_killed": False,
        "timed_out": False,
        "cancelled": False,
        "logs": b"",
        "duration_s": 0.1,
    }
    return RunResult(**{**base, **kw})


@pytest.mark.parametrize(
    "result, code",
    [
        (_r(), None),
        (_r(exit_code=1), "EXIT_NONZERO"),
        (_r(exit_code=None), "EXIT_NONZERO"),
        (_r(exit_code=137), "EXIT_NONZERO"),
        (_r(exit_code=137, oom_killed=True), "OUT_OF_MEMORY"),
        (_r(exit_code=137, timed_out=True), "TIMEOUT"),
        (_r(exit_code=137, timed_out=True, oom_killed=True), "TIMEOUT"),
        (_r(exit_code=137, cancelled=True, timed_out=True), "CANCELLED"),
        (_r(exit_code=137, output_over="full", timed_out=True), "OUTPUT_TOO_LARGE"),
        (_r(exit_code=137, docker_lost=True, output_over="full"), "DOCKER_UNAVAILABLE"),
        (_r(exit_code=137, docker_lost=True, cancelled=True), "CANCELLED"),
    ],
)
def test_classify(result: RunResult, code: str | None) -> None:
    assert classify(result) == code


def test_public_surface() -> None:
    assert set(runner_mod.__all__) >= {
        "RunLimits",
        "RunSpec",
        "RunResult",
        "DockerRunner",
        "classify",
    }


def test_docker_unreachable_for_the_whole_window_is_docker_unavailable() -> None:
    """Unit test with a fake container: a wait that fails at once must not spin until the timeout."""
    import requests.exceptions

    from engine.errors import RunFailure

    class DeadDocker:
        calls = 0

        def wait(self, timeout: float) -> None:
            DeadDocker.calls += 1
            raise requests.exceptions.ConnectionError("connection refused")

    spec = RunSpec("x", "img", Path("in"), Path("out"), 1, RunLimits(timeout_s=600))
    started = time.monotonic()
    with pytest.raises(RunFailure) as err:
        DockerRunner(None, retry_window_s=1.0)._wait(DeadDocker(), spec, threading.Event(), started)
    assert err.value.code == "DOCKER_UNAVAILABLE"
    assert DeadDocker.calls >= 2
    assert time.monotonic() - started < 5


def test_transient_docker_errors_are_retried_then_succeed() -> None:
    import requests.exceptions

    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise requests.exceptions.ConnectionError("connection refused")
        return "ok"

    retried: list[bool] = []
    assert DockerRunner(None, retry_window_s=10)._retry("create", flaky, retried) == "ok"
    assert len(calls) == 3 and retried


def test_a_container_docker_could_not_remove_is_removed_once_it_is_back(monkeypatch) -> None:
    """Unit test with a fake container: removal while dockerd is down is retried in the background."""
    import requests.exceptions

    monkeypatch.setattr(runner_mod, "_BACKOFF_START_S", 0.01)
    removed = threading.Event()

    class ComesBack:
        name = "c2d-x"
        attempts = 0

        def remove(self) -> None:
            ComesBack.attempts += 1
            if ComesBack.attempts < 3:
                raise requests.exceptions.ConnectionError("connection refused")
            removed.set()

    DockerRunner(None)._remove(ComesBack())
    assert removed.wait(5), "never removed"
    assert ComesBack.attempts == 3


def test_create_asks_docker_only_what_it_needs(
    runner, docker_client, make_image, input_db: Path, tmp_path: Path, docker_sent
) -> None:
    """The image's inspect and the create: no lookup of a stale container by name first (a 409
    says so) and no inspect of the new container (its id and name are all a job needs); then
    start, wait, one inspect (exit code, OOM), the logs without another inspect, remove."""
    spec = _spec(make_image("two-requests", "echo hi > $OUTPUT_PATH/x"), input_db, tmp_path)
    fresh = DockerRunner(docker_client)
    assert isinstance(fresh.calls, SocketCalls)  # the default Unix socket: the kept-alive client
    sent = docker_sent
    sent.clear()
    created = fresh.create(spec)
    assert sent == [f"GET /images/{spec.image_id}/json", "POST /containers/create"]
    second = _spec(spec.image_id, input_db, tmp_path / "second")
    sent.clear()
    other = fresh.create(second)  # the same image id: its inspect is known
    assert sent == ["POST /containers/create"]
    fresh.discard(other)
    assert created.container.name == f"c2d-{spec.job_id}"
    sent.clear()
    result = fresh.run(spec, created=created)
    assert classify(result) is None and (spec.output_dir / "x").read_text() == "hi\n"
    cid = f"/containers/{created.container.id}"
    assert sent == [f"POST {cid}/start", f"POST {cid}/wait", f"GET {cid}/json", f"GET {cid}/logs",
                    f"DELETE {cid}"]
