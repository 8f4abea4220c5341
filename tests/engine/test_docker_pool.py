"""engine.docker_pool: the engine's Docker client keeps one pool of kept-alive connections (real dockerd)."""

from __future__ import annotations

import docker
import pytest
from docker.transport import unixconn

from engine.docker_pool import share_one_pool

pytestmark = pytest.mark.docker


def _connects(monkeypatch) -> list[int]:
    made: list[int] = []
    original = unixconn.UnixHTTPConnection.connect

    def counting(self):
        made.append(1)
        return original(self)

    monkeypatch.setattr(unixconn.UnixHTTPConnection, "connect", counting)
    return made


def _ask_about_many_containers(client, n: int = 30) -> None:
    for i in range(n):
        with pytest.raises(docker.errors.NotFound):
            client.api.inspect_container(f"c2d-test-no-such-container-{i}")


def test_calls_about_different_containers_share_one_connection(monkeypatch):
    client = docker.from_env(timeout=30)
    share_one_pool(client)
    share_one_pool(client)  # idempotent
    made = _connects(monkeypatch)
    _ask_about_many_containers(client)
    assert len(made) == 1
    assert client.ping()
    client.close()


def test_without_it_docker_py_connects_once_per_url(monkeypatch):
    """What share_one_pool is for: the stock adapter pools by URL (a connect per new id)."""
    client = docker.from_env(timeout=30)
    made = _connects(monkeypatch)
    _ask_about_many_containers(client)
    assert len(made) == 30
    client.close()


def test_calls_do_not_read_the_environment_for_proxies(monkeypatch):
    """A Unix socket takes no proxy: a set HTTP(S)_PROXY is neither read nor used."""
    import urllib.request

    client = docker.from_env(timeout=30)
    share_one_pool(client)
    looked: list[int] = []
    original = urllib.request.getproxies_environment

    def counting():
        looked.append(1)
        return original()

    monkeypatch.setattr(urllib.request, "getproxies_environment", counting)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # a dead proxy: used, every call fails
    _ask_about_many_containers(client, 3)
    assert client.ping() and looked == []
    client.close()
