"""Fixtures for engine tests: each block below belongs to one part of the engine."""

from __future__ import annotations

from collections.abc import Iterator

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
