"""Fixtures for engine tests: each block below belongs to one part of the engine."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

# ---- Docker test images (owner: fetch/images/runner helper) -----------------
# Session-scoped: each image is built once per session (and cached by tag).


@pytest.fixture(scope="session")
def busybox(docker_client) -> str:
    """Image id of the local busybox test image (c2d-test/busybox:1)."""
    from tests.images import busybox_image

    return busybox_image(docker_client)


@pytest.fixture(scope="session")
def make_image(docker_client, busybox) -> Iterator:
    """Build an image FROM c2d-test/busybox:1 running ``script`` with sh; returns its id.

    Usage: ``make_image("oom", 'x=a; while true; do x="$x$x"; done')``.
    """
    from tests.images import build_image, remove_images

    built: dict[str, str] = {}

    def make(name: str, script: str) -> str:
        if name not in built:
            dockerfile = (
                'FROM c2d-test/busybox:1\nCOPY job.sh /job.sh\nCMD ["/bin/sh", "/job.sh"]\n'
            )
            built[name] = build_image(
                docker_client, dockerfile, f"c2d-test/{name}:1", {"job.sh": script}
            )
        return built[name]

    yield make
    remove_images(docker_client, [f"c2d-test/{name}:1" for name in built])


@pytest.fixture(scope="session")
def busybox_archive(docker_client, busybox, tmp_path_factory):
    """(path, sha256) of a gzipped `docker save` of the busybox test image."""
    from tests.images import export_archive

    path = tmp_path_factory.mktemp("archives") / "busybox.tar.gz"
    digest = export_archive(docker_client, "c2d-test/busybox:1", path, gzip=True)
    return path, digest


# ---- the HTTP layer over a fake service (test_api.py, test_api_session.py) ----


@pytest.fixture
def service(tmp_path):
    """A FakeService (tests/engine/api_fakes.py) behind the real app; modules with their own win."""
    from tests.engine.api_fakes import FakeService

    return FakeService(artifact_dir=tmp_path / "artifacts")


@pytest.fixture
def client(service) -> Iterator:
    """A TestClient of the real app over `service`."""
    from fastapi.testclient import TestClient

    from tests.engine.api_fakes import make_app

    with TestClient(make_app(service), raise_server_exceptions=False) as c:
        yield c


# ---- a job's input (owner: runner, docker_calls) -------------------------------


@pytest.fixture
def input_db(tmp_path: Path) -> Path:
    """``<tmp>/input/query_results.db`` with a ``results`` table of ten rows."""
    path = tmp_path / "input" / "query_results.db"
    path.parent.mkdir()
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE results (n INTEGER)")
        db.executemany("INSERT INTO results VALUES (?)", [(i,) for i in range(10)])
    return path
