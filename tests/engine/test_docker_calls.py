"""engine/docker_calls.py: the socket client and docker-py make the same containers, on the real dockerd."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import docker
import docker.errors
import pytest
import requests.exceptions

from engine.container_spec import RunLimits, RunSpec, container_config
from engine.docker_calls import SdkCalls, SocketCalls, docker_calls

pytestmark = pytest.mark.docker

MiB = 1024 * 1024
NOISY = "for i in 1 2 3; do echo out$i; echo err$i >&2; done; env > $OUTPUT_PATH/env"


def _config(image_id: str, input_db: Path, out: Path, name: str) -> dict:
    spec = RunSpec(job_id=name.removeprefix("c2d-"), image_id=image_id, input_db=input_db,
                   output_dir=out, refiner_id=3,
                   limits=RunLimits(timeout_s=20, memory_bytes=64 * MiB, tmpfs_bytes=8 * MiB))
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o777)
    return container_config(spec, name, "calls-test", {})


def _comparable(attrs: dict) -> dict:
    """What a create decided, without what differs by nature between two containers."""
    config = {k: v for k, v in attrs["Config"].items() if k not in ("Hostname", "Labels", "Env")}
    host = {k: v for k, v in attrs["HostConfig"].items() if k != "Mounts"}
    return {"Config": config, "HostConfig": host, "Path": attrs["Path"], "Args": attrs["Args"]}


@pytest.fixture
def both(docker_client):
    return {"socket": docker_calls(docker_client), "sdk": SdkCalls(docker_client)}


def test_a_unix_socket_client_gets_the_socket_calls_any_other_docker_py(docker_client) -> None:
    assert isinstance(docker_calls(docker_client), SocketCalls)
    tcp = docker.DockerClient(base_url="tcp://127.0.0.1:9", version="1.41")
    assert isinstance(docker_calls(tcp), SdkCalls)


def test_both_clients_make_the_same_container_and_read_the_same_logs(
    both, docker_client, make_image, input_db: Path, tmp_path: Path
) -> None:
    image = make_image("noisy", NOISY)
    made = {}
    try:
        for kind, calls in both.items():
            name = f"c2d-{uuid.uuid4().hex[:16]}"
            container = calls.create(image, _config(image, input_db, tmp_path / kind, name))
            made[kind] = container
            assert container.name == name and len(container.id) == 64
            assert calls.get(name).id == container.id
            container.start()
            container.wait(timeout=20)
            state = container.state()
            assert state["ExitCode"] == 0 and state["OOMKilled"] is False and not state["Running"]
            lines = b"".join(container.log_chunks()).splitlines()
            assert sorted(lines) == [b"err1", b"err2", b"err3", b"out1", b"out2", b"out3"]
            assert [x for x in lines if x.startswith(b"out")] == [b"out1", b"out2", b"out3"]
        attrs = {kind: docker_client.api.inspect_container(c.id) for kind, c in made.items()}
        assert _comparable(attrs["socket"]) == _comparable(attrs["sdk"])
        assert attrs["socket"]["HostConfig"]["NetworkMode"] == "none"
    finally:
        for container in made.values():
            container.remove()
    for kind, container in made.items():
        with pytest.raises(docker.errors.NotFound):
            both[kind].get(container.id)


def test_both_clients_raise_docker_pys_errors(both, busybox, input_db: Path, tmp_path: Path) -> None:
    for kind, calls in both.items():
        with pytest.raises(docker.errors.NotFound):
            calls.get("c2d-no-such-container-anywhere")
        with pytest.raises(docker.errors.ImageNotFound):
            calls.inspect_image("sha256:" + "0" * 64)
        with pytest.raises(docker.errors.ImageNotFound):
            calls.create("sha256:" + "0" * 64, _config(busybox, input_db, tmp_path / kind, "c2d-x" + kind))
        name = f"c2d-{uuid.uuid4().hex[:16]}"
        container = calls.create(busybox, _config(busybox, input_db, tmp_path / kind, name))
        try:
            with pytest.raises(docker.errors.APIError) as taken:
                calls.create(busybox, _config(busybox, input_db, tmp_path / kind, name))
            assert taken.value.status_code == 409  # the name is taken
            with pytest.raises(docker.errors.APIError) as not_running:
                container.kill()
            assert not_running.value.status_code == 409
        finally:
            container.remove()
        with pytest.raises(docker.errors.NotFound):
            container.remove()  # a second time
        assert calls.inspect_image(busybox)["Id"] == busybox


def test_a_wait_past_its_timeout_is_a_requests_timeout(both, make_image, input_db: Path,
                                                       tmp_path: Path) -> None:
    image = make_image("sleeper", "sleep 30")
    for kind, calls in both.items():
        container = calls.create(image, _config(image, input_db, tmp_path / kind,
                                                f"c2d-{uuid.uuid4().hex[:16]}"))
        try:
            container.start()
            with pytest.raises((requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError)):
                container.wait(timeout=0.3)
            container.kill()
            container.wait(timeout=10)
            assert container.state()["ExitCode"] == 137
        finally:
            container.remove()


def test_no_proxy_of_the_docker_config_reaches_the_job(
    make_image, input_db: Path, tmp_path: Path, monkeypatch
) -> None:
    """docker-py copies ~/.docker/config.json's proxies into a container's env by default;
    a proxy URL can hold credentials, and a job has no network: none gets in."""
    config_dir = tmp_path / "docker-config"
    config_dir.mkdir()
    secret = "http://builder:s3cret@proxy.example:3128"
    (config_dir / "config.json").write_text(json.dumps(
        {"proxies": {"default": {"httpProxy": secret, "httpsProxy": secret, "noProxy": "x"}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
    client = docker.from_env()
    assert client.api._proxy_configs.http == secret  # docker-py did read it
    image = make_image("noisy", NOISY)
    for kind, calls in {"socket": docker_calls(client), "sdk": SdkCalls(client)}.items():
        out = tmp_path / kind
        container = calls.create(image, _config(image, input_db, out, f"c2d-{uuid.uuid4().hex[:16]}"))
        try:
            container.start()
            container.wait(timeout=20)
        finally:
            container.remove()
        env = (out / "env").read_text()
        assert "s3cret" not in env and "proxy" not in env.lower(), kind
        assert "OUTPUT_PATH=" in env
