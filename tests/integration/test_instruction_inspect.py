"""The static image audit through the real engine: anvil, the archive server, the job template image.

The DLP owner's story: the builder publishes the template's archive, and before
anyone approves it the engine's `GET /instructions/{id}/inspect` (and
`registry instruction inspect`) shows what it runs: its OCI labels,
entrypoint, user, and worker.py's text. An archive changed after registration
is refused with its code and nothing of it is shown.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from registry_client.cli import cli
from registry_client.errors import EngineApiError
from tests.conftest import ROOT
from tests.images import export_archive, remove_images
from tests.integration.conftest import Engine, World

pytestmark = pytest.mark.docker

TAG = "c2d-itest/inspect-template:1"
SOURCE, REVISION = "https://example.org/c2d/job-template", "0123abcd"
WORKER = (ROOT / "job_template" / "worker.py").read_text()


@pytest.fixture(scope="module")
def template(docker_client, archive_server, python_base) -> Iterator[tuple[Path, str, str]]:
    """The job template built as image-build.sh builds it (OCI labels from build args), exported."""
    docker_client.images.build(path=str(ROOT / "job_template"), tag=TAG, rm=True, forcerm=True,
                               buildargs={"BASE_IMAGE": "c2d/python-base:bookworm",
                                          "OCI_SOURCE": SOURCE, "OCI_REVISION": REVISION})
    archive = archive_server.root / "inspect-template.tar.gz"
    sha256 = export_archive(docker_client, TAG, archive)
    yield archive, sha256, archive_server.url(archive.name)
    remove_images(docker_client, [TAG])


def test_the_template_is_audited_before_approval(engine: Engine, world: World, template, archive_server) -> None:
    archive, sha256, url = template
    instruction_id = world.publish(sha256, url, approve=False)  # inspect first, approve after
    report = engine.builder.inspect_instruction(instruction_id)
    assert report["instruction_id"] == instruction_id and report["sha256"] == "0x" + sha256
    assert report["archive_bytes"] == archive.stat().st_size
    image = report["image"]
    assert image["oci"]["source"] == SOURCE and image["oci"]["revision"] == REVISION
    assert image["oci"]["description"]
    assert image["entrypoint"] == ["python3", "/app/worker.py"] and image["user"] == "65534:65534"
    assert image["layout"] == "vana" and image["working_dir"] == "/app"
    assert {"INPUT_PATH", "OUTPUT_PATH"} <= set(image["env_names"])
    sources = {s["path"]: s for s in report["sources"]}
    assert sources["/app/worker.py"]["text"] == WORKER
    codes = {w["code"] for w in report["warnings"]}
    assert "RUNS_AS_ROOT" not in codes
    assert any(p["name"] == "bash" for p in report["packages"]["debian"])
    assert report["files"]["count"] > 100 and report["layers"]

    # Cached by sha256: a second request downloads nothing.
    requests = archive_server.requests(archive.name)
    assert engine.builder.inspect_instruction(instruction_id)["image"] == image
    assert archive_server.requests(archive.name) == requests == 1


def test_concurrent_requests_download_once(engine: Engine, world: World, job_image, archive_server) -> None:
    image = job_image("inspect-concurrent", "echo hi > /mnt/output/x\n")
    instruction_id = world.publish_image(image, approve=False)
    gate = archive_server.hold(image.archive.name)
    answers: list[dict] = []
    threads = [threading.Thread(target=lambda: answers.append(engine.builder.inspect_instruction(instruction_id)))
               for _ in range(3)]
    for t in threads:
        t.start()
    assert gate.entered.wait(20)
    gate.release()
    for t in threads:
        t.join(30)
    assert len(answers) == 3 and archive_server.requests(image.archive.name) == 1
    assert answers[0]["image"]["entrypoint"] == ["/bin/sh", "/job.sh"]
    assert answers[0]["sources"][0]["path"] == "/job.sh"


def test_an_archive_changed_after_registration_is_refused(engine: Engine, world: World, job_image,
                                                          archive_server) -> None:
    image = job_image("inspect-changed", "echo hi > /mnt/output/x\n")
    changed = archive_server.root / "inspect-changed-later.tar.gz"
    shutil.copy(image.archive, changed)
    instruction_id = world.publish(image.sha256, archive_server.url(changed.name), approve=False)
    changed.write_bytes(changed.read_bytes() + b"\0" * 1024)  # swapped after registration
    with pytest.raises(EngineApiError) as err:
        engine.builder.inspect_instruction(instruction_id)
    assert (err.value.code, err.value.status) == ("IMAGE_HASH_MISMATCH", 502)
    assert "sha256" in err.value.detail


def test_an_unknown_instruction_is_404(engine: Engine) -> None:
    with pytest.raises(EngineApiError) as err:
        engine.builder.inspect_instruction(10**9)
    assert (err.value.code, err.value.status) == ("INSTRUCTION_NOT_FOUND", 404)


def test_the_cli_asks_the_engine_and_audits_a_local_archive(engine: Engine, world: World, template) -> None:
    archive, sha256, url = template
    instruction_id = world.publish(sha256, url, approve=False)
    env = {"REGISTRY_RPC": world.rpc_url, "REGISTRY_DEPLOYMENT": str(world.manifest)}
    runner = CliRunner()
    human = runner.invoke(cli, ["instruction", "inspect", str(instruction_id), "--engine", engine.url], env=env)
    assert human.exit_code == 0, human.output
    assert "warnings:" in human.output.splitlines()[3]
    assert f"source:      {SOURCE}" in human.output and "/app/worker.py" in human.output
    assert '["python3", "/app/worker.py"]' in human.output
    print(human.output)  # the summary a DLP owner reads (shown with -s)

    local = runner.invoke(cli, ["instruction", "inspect", str(instruction_id), "--archive", str(archive),
                                "--json"], env=env)
    assert local.exit_code == 0, local.output
    report = json.loads(local.output)
    assert report["image"]["oci"]["revision"] == REVISION and report["sha256"] == "0x" + sha256

    other = archive.with_name("inspect-other.tar.gz")
    other.write_bytes(archive.read_bytes()[:-1])
    wrong = runner.invoke(cli, ["instruction", "inspect", str(instruction_id), "--archive", str(other)], env=env)
    assert wrong.exit_code == 1 and "differs from instruction" in wrong.stderr
    assert wrong.stderr.startswith("error: ") and "Traceback" not in wrong.stderr


def test_the_real_entry_point_prints_the_audit(engine: Engine, world: World, template) -> None:
    _archive, sha256, url = template
    instruction_id = world.publish(sha256, url, approve=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REGISTRY_RPC": world.rpc_url,
           "REGISTRY_DEPLOYMENT": str(world.manifest)}
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "registry"), "--json", "instruction", "inspect",
                           str(instruction_id), "--engine", engine.url],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["image"]["oci"]["source"] == SOURCE
    missing = subprocess.run([str(ROOT / ".venv" / "bin" / "registry"), "instruction", "inspect", "999999",
                              "--engine", engine.url], env=env, capture_output=True, text=True, timeout=120,
                             check=False)
    assert missing.returncode == 1 and "INSTRUCTION_NOT_FOUND" in missing.stderr
    assert missing.stderr.count("\n") == 1

