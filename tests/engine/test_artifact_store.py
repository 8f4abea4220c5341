"""LocalArtifactStore: a job's files and kept log in a folder (the default layout or a shared mount)."""

from __future__ import annotations

import os

import pytest

from engine.artifact_store import ArtifactStore, LocalArtifactStore, artifact_store_for
from engine.store import new_job_id


@pytest.fixture
def output(tmp_path):
    out = tmp_path / "output"
    (out / "sub").mkdir(parents=True)
    (out / "a.txt").write_bytes(b"a")
    (out / "sub" / "b.csv").write_bytes(b"b,c")
    return out


def test_put_list_open_delete_round_trip(tmp_path, output):
    store = LocalArtifactStore(tmp_path / "shared")
    assert isinstance(store, ArtifactStore)
    job = new_job_id()
    collected = store.put(job, output, max_bytes=1024, max_files=10)
    assert [a.name for a in collected.artifacts] == ["a.txt", "sub/b.csv"] == store.list(job)
    with store.open(job, "sub/b.csv") as f:
        assert f.read() == b"b,c"
    assert store.open(job, "missing") is None
    store.put_log(job, b"log line\n")
    assert store.read_log(job) == b"log line\n"
    store.delete(job)
    assert store.list(job) == [] and store.read_log(job) == b"" and store.open(job, "a.txt") is None
    store.delete(job)  # idempotent


def test_reads_never_follow_a_link_or_leave_the_jobs_folder(tmp_path, output):
    store = LocalArtifactStore(tmp_path / "shared")
    job = new_job_id()
    store.put(job, output, max_bytes=1024, max_files=10)
    (tmp_path / "secret").write_bytes(b"host file")
    os.symlink(tmp_path / "secret", store.job_dir(job) / "link")
    for name in ("link", "../../secret", "/etc/passwd", "sub"):
        assert store.local_path(job, name) is None and store.open(job, name) is None
    assert "link" not in store.list(job)


def test_an_id_that_is_not_a_job_id_is_refused(tmp_path):
    store = LocalArtifactStore(tmp_path)
    for bad in ("../x", "", "A" * 32, "0" * 31):
        with pytest.raises(ValueError):
            store.job_dir(bad)


def test_default_layout_is_data_dirs_artifacts_and_logs(tmp_path):
    job = new_job_id()
    default = artifact_store_for(tmp_path, None)
    assert default.job_dir(job) == tmp_path / "artifacts" / job
    assert default.log_path(job) == tmp_path / "logs" / f"{job}.log"
    shared = artifact_store_for(tmp_path, tmp_path / "mnt")
    assert shared.job_dir(job) == tmp_path / "mnt" / job
    assert shared.log_path(job).parent == tmp_path / "mnt" / ".logs"
