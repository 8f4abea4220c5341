"""The job template as an image: built FROM the local Python base, run in the
engine's sandbox (real dockerd), and its three scripts driven end to end.

Needs `c2d/python-base:bookworm` (tools/build-python-base.sh, run by
`make setup`): skipped without it on a workstation, an error in CI.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "job_template"
BASE = "c2d/python-base:bookworm"
TAG = "c2d-test/job-template:latest"
SCRIPT_TAG = "c2d-test/job-template:scripts"


def require_base(client) -> None:
    import docker

    try:
        client.images.get(BASE)
    except docker.errors.ImageNotFound:
        message = f"{BASE} is missing: run tools/build-python-base.sh (make setup builds it)"
        if os.environ.get("CI"):
            raise RuntimeError(message) from None
        pytest.skip(message)


@pytest.fixture(scope="module")
def template_image(docker_client) -> Iterator[str]:
    """The template built with the SDK (legacy builder API), FROM the local base."""
    require_base(docker_client)
    image, _logs = docker_client.images.build(
        path=str(TEMPLATE), tag=TAG, buildargs={"BASE_IMAGE": BASE}, rm=True, forcerm=True)
    yield image.id


def dummy_db(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(dest)
    conn.executescript((TEMPLATE / "dummy_data.sql").read_text())
    conn.commit()
    conn.close()
    dest.chmod(0o644)
    return dest


def run_hardened(client, image_id: str, db: Path | None, out: Path) -> tuple[int, bytes]:
    """Run the image the way engine/runner.py does (see docs/architecture.md)."""
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o777)  # the container runs as 65534
    volumes = {str(out): {"bind": "/mnt/output", "mode": "rw"}}
    if db is not None:
        volumes[str(db)] = {"bind": "/mnt/input/query_results.db", "mode": "ro"}
    container = client.containers.run(
        image_id,
        detach=True,
        network_mode="none",
        read_only=True,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        user="65534:65534",
        tmpfs={"/tmp": "rw,size=64m"},
        mem_limit=512 * 1024 * 1024,
        pids_limit=256,
        nano_cpus=1_000_000_000,
        volumes=volumes,
        environment={"INPUT_PATH": "/mnt/input", "OUTPUT_PATH": "/mnt/output",
                     "COMPUTE_JOB_ID": "job-under-test", "DATA_REFINER_ID": "3"},
    )
    try:
        code = container.wait(timeout=60)["StatusCode"]
        return code, container.logs()
    finally:
        container.remove(force=True)


def test_image_runs_in_the_sandbox(docker_client, template_image: str, tmp_path: Path) -> None:
    db = dummy_db(tmp_path / "in" / "query_results.db")
    code, logs = run_hardened(docker_client, template_image, db, tmp_path / "out")
    assert code == 0, logs.decode(errors="replace")
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["row_count"] == 12
    assert stats["job"] == {"compute_job_id": "job-under-test", "data_refiner_id": 3}
    assert [g["value"] for g in stats["group_by"]["groups"]][:2] == ["en_US", "fr_FR"]
    assert (tmp_path / "out" / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["chart.png", "chart.svg", "stats.json"]
    assert b"en_US" not in logs


def test_image_without_input_exits_2(docker_client, template_image: str, tmp_path: Path) -> None:
    code, logs = run_hardened(docker_client, template_image, None, tmp_path / "out")
    assert code == 2
    assert b"bad input" in logs
    assert list((tmp_path / "out").iterdir()) == []


def test_image_metadata(docker_client, template_image: str) -> None:
    config = docker_client.images.get(template_image).attrs["Config"]
    assert config["User"] == "65534:65534"
    assert config["Entrypoint"] == ["python3", "/app/worker.py"]
    labels = config["Labels"]  # what `registry instruction inspect` shows the DLP owner
    assert labels["org.computetodata.layout"] == "vana"
    assert labels["org.opencontainers.image.description"]
    assert labels["org.opencontainers.image.source"] == labels["org.opencontainers.image.revision"] == "unknown"


def test_scripts_build_run_export(docker_client, tmp_path: Path) -> None:
    """image-build.sh, image-run.sh, image-export.sh on a copy of the template."""
    require_base(docker_client)
    work = tmp_path / "job"
    shutil.copytree(TEMPLATE, work, ignore=shutil.ignore_patterns("input", "output", "*.tar.gz"))
    env = {**os.environ, "IMAGE": SCRIPT_TAG, "BASE_IMAGE": BASE,
           "ARCHIVE_URL": "https://files.example.org/job.tar.gz", "KEY_ENV": "MY_KEY",
           "OCI_SOURCE": "https://example.org/my-job", "OCI_REVISION": "c0ffee"}

    def script(name: str) -> str:
        proc = subprocess.run([str(work / name)], check=False, env=env,
                              capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, f"{name}: {proc.stdout}\n{proc.stderr}"
        assert all(line.startswith("==> ") for line in proc.stdout.splitlines()[:2])
        return proc.stdout

    assert f"built {SCRIPT_TAG}" in script("image-build.sh")

    ran = script("image-run.sh")
    assert "job exited 0 (ok)" in ran
    assert json.loads((work / "output" / "stats.json").read_text())["row_count"] == 12

    exported = script("image-export.sh")
    assert "org.opencontainers.image.source=https://example.org/my-job" in exported
    assert "org.opencontainers.image.revision=c0ffee" in exported
    archive = work / "my-compute-job.tar.gz"
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert f"sha256 {digest}" in exported
    assert exported.splitlines()[-1] == (
        f"registry instruction add --sha256 {digest} --url https://files.example.org/job.tar.gz --key-env MY_KEY")
