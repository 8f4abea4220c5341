"""The demo's story (demo/story.py), run as a test so `make demo` cannot rot.

Same code path as `make demo`, on the test session's anvil (rolled back
afterwards), with real Docker, a real HTTP archive server and a real
`compute-engine serve` process.
"""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from demo.story import DEMO_PARAMS, StoryConfig, run_story

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def story(anvil, docker_client, tmp_path_factory):
    snapshot = anvil.rpc("evm_snapshot")
    lines: list[str] = []
    try:
        result = run_story(StoryConfig(rpc_url=anvil.url, work_dir=tmp_path_factory.mktemp("demo"),
                                       say=lines.append))
        yield result, lines
    finally:
        anvil.rpc("evm_revert", [snapshot])


def test_job_succeeds_with_both_artifacts(story):
    result, _ = story
    assert result.job["status"] == "SUCCEEDED"
    assert result.job["exit_code"] == 0
    assert sorted(p.name for p in result.downloaded) == ["chart.png", "chart.svg", "stats.json"]
    assert result.downloaded[0].parent.joinpath("chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stats_match_the_data_the_query_selected(story, tmp_path):
    result, _ = story
    db = next(iter(result.downloaded)).parents[2] / "refined" / "fitness.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        expected = conn.execute(
            "SELECT count(*) FROM activities WHERE duration_s >= ?", DEMO_PARAMS
        ).fetchone()[0]
    assert result.stats["row_count"] == expected
    assert result.job["access_report"]["row_count"] == expected


def test_price_is_the_sum_of_the_distinct_permissions_used(story):
    result, _ = story
    # activities (1000) + users.locale (500) + users.id (100), as granted by the story.
    assert int(result.job["price_wei"]) == 1_600
    columns = {tuple(c) for c in result.job["access_report"]["columns"]}
    assert ("users", "locale") in columns and ("users", "email") not in columns


def test_job_records_each_step_and_the_verification_block(story):
    result, _ = story
    statuses = [s["status"] for s in result.job["steps"]]
    assert statuses == ["PENDING", "VERIFYING", "FETCHING", "LOADING", "QUERYING", "RUNNING",
                        "COLLECTING", "SUCCEEDED"]
    assert result.job["block_number"] > 0
    assert result.job["image_id"].startswith("sha256:")


def test_a_query_reading_an_ungranted_column_is_refused(story):
    result, _ = story
    assert result.denied_job["status"] == "REFUSED" and result.denied_job["http_status"] == 422  # at submit
    assert result.denied_job["failure"]["code"] == "PERMISSION_DENIED"
    assert "users.email" in result.denied_job["failure"]["message"]
    assert "@example.org" not in result.denied_job["failure"]["message"]


def test_downloaded_files_match_their_listed_sha256(story):
    result, _ = story
    for path in result.downloaded:
        assert hashlib.sha256(path.read_bytes()).hexdigest()
    assert all(p.stat().st_size > 0 for p in result.downloaded)


def test_story_prints_one_line_per_chapter(story):
    _, lines = story
    text = "\n".join(lines)
    for fragment in ("deployed", "registered by its owner", "published instruction",
                     "approved instruction", "granted the builder", "engine up", "SUCCEEDED",
                     "downloaded 3 artifacts"):
        assert fragment in text
    from eth_account import Account

    from registry_client.devchain import ANVIL_DEV_KEYS

    assert f"attested by {Account.from_key(ANVIL_DEV_KEYS[4]).address}" in text


def test_the_job_is_paid_on_chain_and_the_dlp_owner_claims_it(story):
    result, lines = story
    money, price = result.money, int(result.job["price_wei"])
    assert result.job["payment"]["charged"] is True and result.job["payment"]["amount"] == str(price)
    assert money["deposit_after_job"] == money["deposit_before"] - price  # the builder paid the price
    assert money["dlp_after_job"] == money["dlp_before"] + price * 80 // 100  # the DLP's 80% share
    assert money["deposit_after_denied"] == money["deposit_after_job"]  # a refused query is never charged
    assert money["claimed"] == money["dlp_after_job"] == money["treasury_gain"]  # landed in the treasury
    assert money["dlp_after_claim"] == 0
    assert any("the money moved" in line for line in lines)
