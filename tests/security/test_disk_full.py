"""A full disk says STORAGE_FULL everywhere, never a size-cap code, INTERNAL_ERROR or a bare 500.

Real small filesystems: a 2 MiB tmpfs per test (root only; skipped otherwise),
filled up with a ballast file. Real SQLite files, the real query process, the
real artifact collector, the real JobStore behind the real API app.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from engine.artifacts import collect
from engine.errors import JobFailure, StorageFull
from engine.query import Permission, QueryLimits, run_query
from engine.storage import disk_check
from engine.store import JobStore

ALL = [Permission(1, None, 1, "", "", 0, True)]
# ~3 MB of results: more than the small disk holds, far less than the result cap.
BIG_RESULT = ("WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM r WHERE i<3000) "
              "SELECT i, printf('%.*c', 1000, 'x') AS pad FROM r")
OWNER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                          check=False, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(folder: Path, leave_bytes: int = 0) -> None:
    """Write a ballast file until the filesystem has (about) `leave_bytes` free."""
    st = os.statvfs(folder)
    room = st.f_bavail * st.f_frsize - leave_bytes
    with open(folder / "ballast", "wb") as ballast:
        try:
            while room > 0:
                room -= ballast.write(b"\0" * min(room, 65536))
                ballast.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("disk-full") / "refiner.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    return path


def test_query_results_on_a_full_disk_are_storage_full(source: Path, small_disk: Path) -> None:
    out_dir = small_disk / "scratch"
    out_dir.mkdir()
    with pytest.raises(JobFailure) as info:
        run_query(source, BIG_RESULT, None, ALL, out_dir / "query_results.db", QueryLimits())
    assert info.value.code == "STORAGE_FULL", str(info.value)
    assert "268435456" not in info.value.message
    assert list(out_dir.iterdir()) == [], "the partial results file must be removed"


def test_the_result_cap_is_still_result_too_large(source: Path, tmp_path: Path) -> None:
    with pytest.raises(JobFailure) as info:
        run_query(source, BIG_RESULT, None, ALL, tmp_path / "query_results.db",
                  QueryLimits(max_result_bytes=256 * 1024))
    assert info.value.code == "RESULT_TOO_LARGE"


def test_collecting_artifacts_on_a_full_disk_is_storage_full(tmp_path: Path, small_disk: Path) -> None:
    output = tmp_path / "output"
    output.mkdir()
    (output / "result.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    dest = small_disk / "artifacts"
    with pytest.raises(StorageFull) as info:
        collect(output, dest, max_total_bytes=100 * 1024 * 1024)
    assert info.value.code == "STORAGE_FULL"
    assert not any(dest.rglob("*")), "a failed collection keeps nothing"


def _submit(store: JobStore, nonce: int):
    return store.create_or_get(OWNER, nonce, f"0x{nonce:064x}", instruction_id=1, refiner_id=1,
                               query="SELECT " + "1," * 20000 + "1", params=None, deadline=2**40)


def test_the_store_on_a_full_disk_raises_storage_full_503(small_disk: Path) -> None:
    store = JobStore(small_disk / "jobs.db")
    try:
        _submit(store, 1)
        fill(small_disk)
        with pytest.raises(StorageFull) as info:
            for nonce in range(2, 200):
                _submit(store, nonce)
        assert info.value.http_status == 503
        assert store.get(store.find(OWNER, 1).id) is not None, "what was stored stays readable"
        (small_disk / "ballast").unlink()  # the operator frees space: the store writes again
        assert _submit(store, 500)[1]
    finally:
        store.close()


def test_post_jobs_on_a_full_disk_answers_a_503_problem(small_disk: Path) -> None:
    from tests.engine.api_fakes import FakeService, make_app
    from tests.engine.test_api import submit_body

    store = JobStore(small_disk / "jobs.db")
    fill(small_disk)
    service = FakeService(artifact_dir=small_disk / "artifacts")

    def submit(request, signer, digest=None, signer_key=None, **_):
        for nonce in range(1, 200):  # until the disk refuses: the WAL had some room
            job = _submit(store, nonce)
        return job

    service.submit = submit
    try:
        with TestClient(make_app(service), raise_server_exceptions=False) as client:
            resp = client.post("/jobs", json=submit_body())
        assert resp.status_code == 503, resp.text
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert resp.json()["code"] == "STORAGE_FULL"
    finally:
        store.close()


def test_health_disk_check_fails_under_the_minimum_free(small_disk: Path) -> None:
    assert disk_check(small_disk, 1024 * 1024)["ok"] is True
    fill(small_disk, leave_bytes=256 * 1024)
    check = disk_check(small_disk, 1024 * 1024)
    assert check["ok"] is False and check["value"] < 1024 * 1024
