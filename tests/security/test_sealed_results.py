"""Sealed data end to end: a real engine (real Docker, anvil, HTTP) stores only ciphertext.

- The data dir holds no plaintext of the refiner data (every email of the
  fixture database) nor of a job's artifacts and logs (a marker the container
  writes at run time, the copy of its query results database): every file
  under it is scanned, except the job store (jobs.db: metadata by design).
- A job addressed to Bob (another anvil dev wallet): Bob downloads and opens
  it; its submitter sees names and sizes only and is refused the files and the
  logs (NOT_RECIPIENT); the raw ciphertext does not open with the submitter's key.
- KEK rotation (`compute-engine data rotate-key`) keeps old jobs readable and
  new jobs running over the same sealed file, which the old KEK no longer opens.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from eth_account import Account

from engine.cli import cli as engine_cli
from engine.data import DataCatalog
from engine.data_keys import read_kek_file
from engine.errors import QueryFailure
from engine.wiring import _unlock_data_dir
from registry_client.engine_client import EngineClient
from registry_client.errors import EngineApiError, SealError
from registry_client.sealing import open_bytes, public_key_of
from tests.conftest import ANVIL_KEYS, make_kek_file
from tests.integration.conftest import (  # noqa: F401 - fixtures used by name
    SIMPLE_QUERY,
    archive_server,
    job_image,
    running_engine,
    wait_for,
    world,
)

pytestmark = [pytest.mark.docker, pytest.mark.chain]

BOB = Account.from_key(ANVIL_KEYS[2])  # anvil dev wallet 2: no other role in the tests
# Written at run time (never in the image, so never in the cached archive): what is
# found under the data dir can only come from a stored artifact or log.
SCRIPT = """set -e
marker="sealed-marker-$(echo "$COMPUTE_JOB_ID" | rev)"
echo "$marker" > /mnt/output/marker.txt
cp "$INPUT_PATH/query_results.db" /mnt/output/results_copy.db
echo "log line $marker"
"""


def _marker(job_id: str) -> bytes:
    return f"sealed-marker-{job_id[::-1]}".encode()


@pytest.fixture(scope="module")
def sealed_engine(world, docker_client, tmp_path_factory):  # noqa: F811
    with running_engine(world, tmp_path_factory.mktemp("sealed-engine"), charge_prices=False,
                        share_logs=True) as engine:
        yield engine


@pytest.fixture(scope="module")
def instruction(world, job_image) -> int:  # noqa: F811
    return world.publish_image(job_image("sealed", SCRIPT))


def _emails(world_) -> list[bytes]:
    import sqlite3

    with sqlite3.connect(f"file:{world_.data_db}?mode=ro", uri=True) as conn:
        return [row[0].encode() for row in conn.execute("SELECT email FROM users")]


def _plaintext_files(data_dir: Path, needles: list[bytes]) -> list[str]:
    """Files under data_dir (jobs.db excepted) holding any needle or a SQLite header."""
    pattern = re.compile(b"|".join(re.escape(n) for n in [*needles, b"SQLite format 3"]))
    found = []
    for path in sorted(data_dir.rglob("*")):
        if path.is_file() and not path.name.startswith("jobs.db") and pattern.search(path.read_bytes()):
            found.append(str(path.relative_to(data_dir)))
    return found


def _run(client: EngineClient, instruction_id: int, refiner_id: int, **kw) -> dict:
    job = client.submit(instruction_id, refiner_id, SIMPLE_QUERY, **kw)
    job = client.wait(job["id"], poll_s=0.1, timeout_s=60)
    assert job["status"] == "SUCCEEDED", job
    return job


def test_the_data_dir_holds_no_plaintext_of_data_artifacts_or_logs(sealed_engine, world, instruction,  # noqa: F811
                                                                  tmp_path):
    builder = sealed_engine.builder
    job = _run(builder, instruction, world.refiner_id)
    assert job["recipient"] == world.accounts.builder.address
    # The job's output filesystem (plaintext, as the container wrote it) is deleted right
    # after the job's end is recorded, off the critical path: once it is gone, nothing is left.
    wait_for(lambda: not (sealed_engine.data_dir / "scratch" / job["id"]).exists(), what="the job's scratch gone")
    assert _plaintext_files(sealed_engine.data_dir, [*_emails(world), _marker(job["id"])]) == []
    # What is stored is ciphertext; the builder's wallet opens it.
    listing = builder.artifacts(job["id"])
    assert all(a["sealed_sha256"] and a["sealed_size"] > a["size"] for a in listing)
    builder.download(job["id"], tmp_path)  # ciphertext and plaintext sha256s checked, attestation too
    assert (tmp_path / "marker.txt").read_bytes().strip() == _marker(job["id"])
    assert (tmp_path / "results_copy.db").read_bytes().startswith(b"SQLite format 3")
    assert _marker(job["id"]).decode() in builder.logs(job["id"])
    att = job["attestation"]
    assert att["recipient"] == world.accounts.builder.address and int(att["sealed_digest"], 16) != 0


def test_bob_opens_a_job_addressed_to_him_and_its_submitter_cannot(sealed_engine, world, instruction,  # noqa: F811
                                                                  tmp_path):
    builder = sealed_engine.builder
    job = _run(builder, instruction, world.refiner_id, recipient=BOB.address,
               recipient_public_key=public_key_of(bytes(BOB.key)))
    assert job["recipient"] == BOB.address
    with EngineClient(sealed_engine.url, BOB, world.chain_id, world.registry_address) as bob:
        assert bob.status(job["id"])["status"] == "SUCCEEDED"
        listing = bob.artifacts(job["id"])
        bob.download(job["id"], tmp_path / "bob")
        bob.verify_attestation(bob.status(job["id"]), listing)
        assert (tmp_path / "bob" / "marker.txt").read_bytes().strip() == _marker(job["id"])
        assert _marker(job["id"]).decode() in bob.logs(job["id"])
        with pytest.raises(EngineApiError) as info:
            bob.cancel(job["id"])  # reading is not owning
        assert info.value.status == 404

    # The submitter: names and sizes, no hashes, no files, no logs.
    seen = builder.artifacts(job["id"])
    assert [(a["name"], a["size"]) for a in seen] == [(a["name"], a["size"]) for a in listing]
    assert all(a["sha256"] is None and a["sealed_sha256"] is None for a in seen)
    for fetch in (lambda: builder.download(job["id"], tmp_path / "builder"),
                  lambda: builder.download_zip(job["id"], tmp_path / "builder.zip"),
                  lambda: builder.logs(job["id"])):
        with pytest.raises(EngineApiError) as info:
            fetch()
        assert (info.value.status, info.value.code) == (403, "NOT_RECIPIENT")
    assert not (tmp_path / "builder" / "marker.txt").exists()
    # Even the stored bytes themselves do not open with the submitter's key.
    stored = next((sealed_engine.data_dir / "artifacts" / job["id"]).glob("marker.txt")).read_bytes()
    with pytest.raises(SealError) as err:
        open_bytes(stored, private_key=bytes(world.accounts.builder.key))
    assert err.value.code == "SEAL_WRONG_KEY"
    assert open_bytes(stored, private_key=bytes(BOB.key)).strip() == _marker(job["id"])
    with pytest.raises(EngineApiError) as info:
        sealed_engine.stranger.artifacts(job["id"])
    assert info.value.status == 404


def test_kek_rotation_keeps_old_jobs_readable_and_new_jobs_running(world, instruction,  # noqa: F811
                                                                   docker_client, tmp_path, monkeypatch):
    data_dir, old_kek, new_kek = tmp_path / "data", tmp_path / "kek-1", tmp_path / "kek-2"
    make_kek_file(old_kek)
    with running_engine(world, data_dir, charge_prices=False, data_kek_file=old_kek) as engine:
        before = _run(engine.builder, instruction, world.refiner_id)
    _unlock_data_dir(data_dir)  # the engine is stopped: as if its process had exited
    sealed = DataCatalog(data_dir).path(world.refiner_id).read_bytes()

    make_kek_file(new_kek)
    monkeypatch.setenv("ENGINE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("ENGINE_DATA_KEK_FILE", str(old_kek))
    result = CliRunner().invoke(engine_cli, ["data", "rotate-key", "--new-kek-file", str(new_kek)])
    assert result.exit_code == 0 and "re-wrapped 1 data key" in result.output, result.output
    assert DataCatalog(data_dir).path(world.refiner_id).read_bytes() == sealed  # not rewritten
    with pytest.raises(QueryFailure) as info:
        DataCatalog(data_dir, read_kek_file(old_kek)).source(world.refiner_id)
    assert info.value.code == "SEAL_WRONG_KEY"

    with running_engine(world, data_dir, charge_prices=False, data_kek_file=new_kek) as engine:
        engine.builder.download(before["id"], tmp_path / "old")  # the old job: still readable
        assert (tmp_path / "old" / "marker.txt").read_bytes().strip() == _marker(before["id"])
        after = _run(engine.builder, instruction, world.refiner_id)  # the same sealed file, new KEK
        assert after["access_report"]["row_count"] == before["access_report"]["row_count"]
