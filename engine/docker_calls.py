"""The Docker calls a job's container needs, behind one seam with two clients.

``DockerRunner`` and ``ImageLoader`` make these calls for every job: create,
start, wait, inspect, logs, kill, remove, and inspect an image. On a Unix
socket (the default ``DOCKER_HOST``) they go over ``engine/docker_socket.py``
(kept-alive ``http.client``); on any other host (TCP with TLS, SSH) through
docker-py. Both raise docker-py's errors, and both send the same create body:
docker-py's own ``ContainerConfig`` of the same arguments, without the proxy
settings docker-py would add from the Docker CLI's config.

The engine's containers never have a TTY (``engine/container_spec.py``), so
their logs are always a multiplexed stdout/stderr stream; docker-py asks
Docker first (one more inspect per job), this module knows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from docker.models.containers import _create_container_args  # containers.create's own split
from docker.transport.unixconn import UnixHTTPAdapter
from docker.types import ContainerConfig

from engine.docker_socket import DockerSocket, quote

__all__ = ["ContainerHandle", "DockerCalls", "SdkCalls", "SocketCalls", "docker_calls"]


class ContainerHandle(Protocol):
    """One container, by id; every method raises docker-py's errors."""

    id: str
    name: str

    def start(self) -> None: ...

    def wait(self, timeout: float) -> None:
        """Until it stops; ``requests.exceptions.ReadTimeout`` (or ConnectionError) past ``timeout``."""

    def state(self) -> dict: ...

    def log_chunks(self) -> Iterator[bytes]:
        """stdout and stderr as logged so far, in order."""

    def kill(self) -> None: ...

    def remove(self) -> None:
        """Force-remove it with its anonymous volumes."""


class DockerCalls(Protocol):
    def create(self, image_id: str, config: dict) -> ContainerHandle:
        """``config`` is ``container_config``'s: ``containers.create`` arguments with a name."""

    def get(self, name_or_id: str) -> ContainerHandle: ...

    def inspect_image(self, ref: str) -> dict: ...


def docker_calls(client: Any) -> DockerCalls:
    """The socket client for a DockerClient on a Unix socket, else docker-py itself."""
    api = getattr(client, "api", client)
    adapter = getattr(api, "_custom_adapter", None)
    if isinstance(adapter, UnixHTTPAdapter):
        headers = dict(api.headers)
        headers.update(api._general_configs.get("HttpHeaders", {}))  # docker-py's update_headers
        return SocketCalls(DockerSocket(adapter.socket_path, api._version, timeout_s=api.timeout,
                                        headers=headers))
    return SdkCalls(client)


def _create_body(version: str, image_id: str, config: dict) -> tuple[str, dict]:
    """(name, body) of ``POST /containers/create``: what docker-py's ``create`` would send."""
    args = _create_container_args({**config, "image": image_id, "command": None,
                                   "version": version})
    name = args.pop("name")
    # Not APIClient.create_container: it copies the proxies of ~/.docker/config.json into the
    # job's environment (credentials included); a job has no network and no need of them.
    return name, ContainerConfig(version, **args)


# -- on the Unix socket ---------------------------------------------------------


class SocketCalls:
    def __init__(self, sock: DockerSocket):
        self.socket = sock
        self._version = sock.prefix.removeprefix("/v")

    def create(self, image_id: str, config: dict) -> SocketContainer:
        name, body = _create_body(self._version, image_id, config)
        made = self.socket.json("POST", "/containers/create", params={"name": name}, body=body)
        return SocketContainer(self.socket, made["Id"], name)

    def get(self, name_or_id: str) -> SocketContainer:
        attrs = self.socket.json("GET", f"/containers/{quote(name_or_id)}/json")
        return SocketContainer(self.socket, attrs["Id"], attrs.get("Name", "").lstrip("/"))

    def inspect_image(self, ref: str) -> dict:
        return self.socket.json("GET", f"/images/{quote(ref)}/json")


class SocketContainer:
    def __init__(self, sock: DockerSocket, container_id: str, name: str):
        self.socket, self.id, self.name = sock, container_id, name
        self._path = f"/containers/{quote(container_id)}"

    def start(self) -> None:
        self.socket.call("POST", self._path + "/start")

    def wait(self, timeout: float) -> None:
        self.socket.call("POST", self._path + "/wait", timeout_s=timeout)

    def state(self) -> dict:
        return self.socket.json("GET", self._path + "/json").get("State", {})

    def log_chunks(self) -> Iterator[bytes]:
        return self.socket.frames(self._path + "/logs", params={
            "stdout": "1", "stderr": "1", "follow": "0", "timestamps": "0", "tail": "all"})

    def kill(self) -> None:
        self.socket.call("POST", self._path + "/kill")

    def remove(self) -> None:
        self.socket.call("DELETE", self._path, params={"v": "1", "force": "1"})


# -- through docker-py ----------------------------------------------------------


class SdkCalls:
    def __init__(self, client: Any):
        self.client = client

    def create(self, image_id: str, config: dict) -> SdkContainer:
        api = self.client.api
        name, body = _create_body(api._version, image_id, config)
        made = api.create_container_from_config(body, name)
        return SdkContainer(self.client.containers.prepare_model({"Id": made["Id"], "Name": "/" + name}))

    def get(self, name_or_id: str) -> SdkContainer:
        return SdkContainer(self.client.containers.get(name_or_id))

    def inspect_image(self, ref: str) -> dict:
        return self.client.api.inspect_image(ref)


class SdkContainer:
    def __init__(self, container: Any):
        self.container = container
        self.id, self.name = container.id, container.name

    def start(self) -> None:
        self.container.start()

    def wait(self, timeout: float) -> None:
        self.container.wait(timeout=timeout)

    def state(self) -> dict:
        self.container.reload()
        return self.container.attrs.get("State", {})

    def log_chunks(self) -> Iterator[bytes]:
        return self.container.logs(stdout=True, stderr=True, stream=True, follow=False)

    def kill(self) -> None:
        self.container.kill()

    def remove(self) -> None:
        self.container.remove(force=True, v=True)
