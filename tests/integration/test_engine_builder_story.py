"""A builder learns before they spend (issue 12 items 1-4), end to end with the `registry` CLI.

schema -> quote (and a refusal) -> submit --wait -> list -> wait -> download, against the real
engine (its own in this module), anvil, Docker and HTTP; then a second job shows the live
progress of FETCHING (bytes) and RUNNING (elapsed seconds) and pages the job list.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from registry_client.cli import cli
from tests.conftest import ANVIL_KEYS
from tests.integration.conftest import (
    DENIED_QUERY,
    STORY_PARAMS,
    STORY_QUERY,
    wait_for,
)

pytestmark = [pytest.mark.docker, pytest.mark.chain]

WAIT_S = 60.0
SCRIPT = "echo done > /mnt/output/done.txt\n"
SLOW_SCRIPT = "sleep 2\necho done > /mnt/output/done.txt\n"
STORY_PRICE = "1600"  # activities (1000) + users.locale (500) + users.id (100): conftest GRANTS


@pytest.fixture
def registry(engine, world, monkeypatch):
    monkeypatch.setenv("STORY_BUILDER_KEY", ANVIL_KEYS[3])  # the world's builder
    runner = CliRunner()

    def run(*args: str, json_out: bool = False, ok: bool = True):
        base = ["--deployment", str(world.manifest)] + (["--json"] if json_out else [])
        result = runner.invoke(cli, [*base, *args, "--engine", engine.url, "--key-env", "STORY_BUILDER_KEY"],
                               catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, (result.stdout, result.stderr)
        return json.loads(result.stdout) if json_out and ok else result

    return run


def _request(instruction_id: int, refiner_id: int, query: str = STORY_QUERY, params: list | None = None):
    args = ["--instruction", str(instruction_id), "--refiner", str(refiner_id), "--query", query,
            "--compute-job", "none"]
    return [*args, "--params", json.dumps(STORY_PARAMS if params is None else params)]


def test_schema_quote_submit_list_wait_download(registry, engine, world, job_image, tmp_path) -> None:
    instruction_id = world.publish_image(job_image("builder-story", SCRIPT))
    refiner = str(world.refiner_id)

    # 1. What the engine holds and what my permissions cover, at what price.
    schema = registry("refiner", "schema", refiner, json_out=True)
    columns = {(t["name"], c["name"]): c for t in schema["tables"] for c in t["columns"]}
    assert columns[("users", "locale")]["covered"] is True and columns[("users", "locale")]["price_wei"] == "500"
    assert columns[("users", "email")] == {"name": "email", "type": columns[("users", "email")]["type"],
                                           "covered": False, "price_wei": None}
    assert columns[("activities", "kind")]["price_wei"] == "1000"
    table = registry("refiner", "schema", refiner).stdout.splitlines()
    assert table[0].split() == ["TABLE", "COLUMN", "TYPE", "COVERED", "PRICE_WEI"]
    unknown = registry("refiner", "schema", "999", ok=False)  # no data here for it (nor on chain)
    assert unknown.exit_code == 1 and "DATA_NOT_FOUND" in unknown.stderr

    # 2. The quote, and a refusal with its code; neither makes a job.
    quote = registry("job", "quote", *_request(instruction_id, world.refiner_id), json_out=True)
    assert quote["price_wei"] == STORY_PRICE and quote["access_report"]["row_count"] is None
    dry = registry("job", "submit", "--dry-run", *_request(instruction_id, world.refiner_id), json_out=True)
    assert dry["access_report"] == quote["access_report"]
    denied = registry("job", "submit", "--dry-run", *_request(instruction_id, world.refiner_id, DENIED_QUERY, []),
                      ok=False)
    assert denied.exit_code == 1 and "PERMISSION_DENIED" in denied.stderr and "users.email" in denied.stderr
    assert engine.builder.jobs()["jobs"] == []

    # 3. Submit and wait: the job reports exactly what the quote said.
    job = registry("job", "submit", *_request(instruction_id, world.refiner_id), "--wait", "--poll", "0.1",
                   json_out=True)
    assert job["status"] == "SUCCEEDED", job
    assert job["price_wei"] == quote["price_wei"]
    assert {**job["access_report"], "row_count": None} == quote["access_report"]
    assert job["block_number"] >= quote["block_number"]

    # 4. The list finds it; `wait` on an ended job prints its story, then what it learnt.
    listed_json = registry("job", "list", "--status", "SUCCEEDED", json_out=True)
    assert [j["id"] for j in listed_json] == [job["id"]]  # --json: an array, like every list command
    listed = registry("job", "list").stdout.splitlines()
    assert listed[0].split()[:2] == ["ID", "STATUS"] and listed[2].split()[:2] == [job["id"], "SUCCEEDED"]
    told = registry("job", "wait", job["id"]).stdout
    for shown in (f"verified at block {job['block_number']}", f"image sha256 {job['image_sha256']}",
                  f"query: {job['access_report']['row_count']} rows", f"price {STORY_PRICE} wei",
                  f"attested by {job['attestation']['signer']}", f"job {job['id']} SUCCEEDED"):
        assert shown in told

    # 5. Download.
    registry("job", "download", job["id"], "--out", str(tmp_path / "out"))
    assert (tmp_path / "out" / "done.txt").read_text() == "done\n"


def test_progress_of_fetching_and_running_and_a_second_page(engine, world, job_image, archive_server) -> None:
    image = job_image("builder-slow", SLOW_SCRIPT)
    instruction_id = world.publish_image(image)
    gate = archive_server.hold(image.archive.name)
    try:
        job = engine.builder.submit(instruction_id, world.refiner_id, "SELECT kind FROM activities")
        assert gate.entered.wait(WAIT_S), "the engine never fetched the archive"
        # Held before the response: the download reports its (zero) bytes and no total yet.
        fetching = wait_for(lambda: (j := engine.builder.status(job["id"]))["progress"] and j, what="progress")
        assert fetching["status"] == "FETCHING"
        assert fetching["progress"] == {"bytes": 0, "total": None, "elapsed_s": None}
    finally:
        gate.release()
    running = wait_for(lambda: (j := engine.builder.status(job["id"]))["status"] == "RUNNING" and j,
                       what="RUNNING")
    assert running["progress"]["elapsed_s"] >= 0 and running["progress"]["bytes"] is None
    final = engine.builder.wait(job["id"], poll_s=0.1, timeout_s=WAIT_S)
    assert final["status"] == "SUCCEEDED" and final["progress"] is None

    # Pages of one walk the whole list, newest first, each job once.
    everything = [j["id"] for j in engine.builder.jobs(limit=100)["jobs"]]
    walked, cursor = [], None
    while True:
        page = engine.builder.jobs(limit=1, cursor=cursor)
        walked += [j["id"] for j in page["jobs"]]
        if not (cursor := page["next_cursor"]):
            break
    assert walked == everything and everything[0] == job["id"]
