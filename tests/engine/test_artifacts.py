"""engine.artifacts: regular files only, nothing followed, total capped."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pytest

import engine.artifacts as artifacts_mod
from engine.artifacts import Artifact, collect, read_manifest, write_manifest
from engine.errors import RunFailure


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "output"
    folder.mkdir()
    return folder


def test_nested_files_with_hash_size_and_type(out: Path, tmp_path: Path) -> None:
    (out / "stats.json").write_text('{"n": 3}')
    (out / "charts" / "2024").mkdir(parents=True)
    (out / "charts" / "2024" / "plot.png").write_bytes(b"\x89PNG fake")
    (out / "charts" / "raw.bin").write_bytes(b"\x00\x01")
    (out / "empty-dir").mkdir()
    (out / "empty.txt").write_bytes(b"")
    dest = tmp_path / "store" / "job1"

    got = collect(out, dest, max_total_bytes=10_000).artifacts

    assert got == [
        Artifact("charts/2024/plot.png", 9, _sha(b"\x89PNG fake"), "image/png"),
        Artifact("charts/raw.bin", 2, _sha(b"\x00\x01"), "application/octet-stream"),
        Artifact("empty.txt", 0, _sha(b""), "text/plain"),
        Artifact("stats.json", 8, _sha(b'{"n": 3}'), "application/json"),
    ]
    assert (dest / "charts" / "2024" / "plot.png").read_bytes() == b"\x89PNG fake"
    assert (dest / "stats.json").read_text() == '{"n": 3}'
    assert not (dest / "empty-dir").exists(), "only files are artifacts"


def test_symlinks_are_never_followed(out: Path, tmp_path: Path) -> None:
    (out / "passwd").symlink_to("/etc/passwd")
    (out / "etc").symlink_to("/etc", target_is_directory=True)
    (out / "real.txt").write_text("mine")
    (out / "link-to-real").symlink_to(out / "real.txt")
    dest = tmp_path / "store"

    got = collect(out, dest, max_total_bytes=10_000).artifacts

    assert [a.name for a in got] == ["real.txt"]
    assert not (dest / "passwd").exists() and not (dest / "passwd").is_symlink()
    assert not (dest / "etc").exists()
    assert sorted(p.name for p in dest.iterdir()) == ["real.txt"]


def test_special_files_are_skipped(out: Path, tmp_path: Path) -> None:
    os.mkfifo(out / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(out / "sock"))
    try:
        (out / "ok.csv").write_text("a,b\n")
        got = collect(out, tmp_path / "store", max_total_bytes=10_000).artifacts
    finally:
        sock.close()
    assert [(a.name, a.media_type) for a in got] == [("ok.csv", "text/csv")]


def test_over_cap_removes_what_was_copied(out: Path, tmp_path: Path) -> None:
    (out / "a").mkdir()
    (out / "a" / "one.bin").write_bytes(b"x" * 600)
    (out / "two.bin").write_bytes(b"y" * 600)
    dest = tmp_path / "store" / "job"
    dest.mkdir(parents=True)
    (dest / "keep.txt").write_text("already here")  # not ours: must survive the undo

    with pytest.raises(RunFailure) as err:
        collect(out, dest, max_total_bytes=1000)

    assert err.value.code == "OUTPUT_TOO_LARGE"
    assert "1000" in err.value.message
    assert sorted(p.name for p in dest.iterdir()) == ["keep.txt"]


def test_exactly_at_cap_is_fine(out: Path, tmp_path: Path) -> None:
    (out / "f").write_bytes(b"z" * 1000)
    assert collect(out, tmp_path / "s", max_total_bytes=1000).artifacts[0].size == 1000


def test_too_many_files(out: Path, tmp_path: Path) -> None:
    for i in range(4):
        (out / f"f{i}").write_text("x")
    with pytest.raises(RunFailure) as err:
        collect(out, tmp_path / "s", max_total_bytes=1000, max_files=3)
    assert err.value.code == "OUTPUT_TOO_LARGE"
    assert not any((tmp_path / "s").iterdir())


def test_unsafe_names_are_skipped(out: Path, tmp_path: Path) -> None:
    os.close(os.open(os.path.join(os.fsencode(out), b"bad-\xff.txt"), os.O_CREAT | os.O_WRONLY))
    (out / "line\nbreak.txt").write_text("x")
    (out / "good.txt").write_text("x")
    got = collect(out, tmp_path / "s", max_total_bytes=100)
    assert [a.name for a in got.artifacts] == ["good.txt"]
    # Said in the job's result, not dropped silently; the names are escaped ASCII.
    record = got.skipped_public()
    assert record["count"] == 2
    assert sorted(record["entries"], key=lambda e: e["name"]) == [
        {"name": "bad-\\xff.txt", "reason": "a name that is not valid UTF-8"},
        {"name": "line\\nbreak.txt", "reason": "a name with unprintable characters"},
    ]


def test_links_and_special_files_are_reported_as_skipped(out: Path, tmp_path: Path) -> None:
    (out / "passwd").symlink_to("/etc/passwd")
    os.mkfifo(out / "fifo")
    got = collect(out, tmp_path / "s", max_total_bytes=100)
    assert got.artifacts == []
    assert sorted((s.name, s.reason) for s in got.skipped) == [
        ("fifo", "not a regular file (fifo, socket or device)"),
        ("passwd", "a symbolic link (never followed)"),
    ]


def test_paths_over_the_name_limit_are_skipped_and_reported(out: Path, tmp_path: Path) -> None:
    """A tree whose host paths pass PATH_MAX (4096) once failed INTERNAL_ERROR."""
    fd = os.open(out, os.O_RDONLY)
    try:
        for _ in range(20):  # 20 x 250-byte names: the deepest host path is > 5,000 bytes
            os.mkdir("d" * 250, dir_fd=fd)
            child = os.open("d" * 250, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.close(os.open("deep.txt", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
    finally:
        os.close(fd)
    (out / "short.txt").write_text("ok")

    got = collect(out, tmp_path / "s", max_total_bytes=100)

    assert [a.name for a in got.artifacts] == ["short.txt"]
    assert [s.reason for s in got.skipped] == [
        f"a path longer than {artifacts_mod.MAX_NAME_BYTES} bytes (its contents too)"
    ]
    assert len(got.skipped[0].name) <= 120


def test_skipped_entries_are_capped(out: Path, tmp_path: Path) -> None:
    for i in range(artifacts_mod.MAX_SKIPPED + 5):
        (out / f"link{i}").symlink_to("/etc/passwd")
    record = collect(out, tmp_path / "s", max_total_bytes=100).skipped_public()
    assert record["count"] == artifacts_mod.MAX_SKIPPED + 5
    assert len(record["entries"]) == artifacts_mod.MAX_SKIPPED


def test_empty_output(out: Path, tmp_path: Path) -> None:
    got = collect(out, tmp_path / "s", max_total_bytes=100)
    assert got.artifacts == [] and got.skipped_public() is None


def test_manifest_round_trip(out: Path, tmp_path: Path) -> None:
    (out / "x").mkdir()
    (out / "x" / "a.txt").write_text("hello")
    arts = collect(out, tmp_path / "s", max_total_bytes=100).artifacts
    write_manifest(tmp_path / "artifacts.json", arts)
    assert read_manifest(tmp_path / "artifacts.json") == arts


def test_public_surface() -> None:
    assert set(artifacts_mod.__all__) == {
        "Artifact", "Collection", "Skipped", "MAX_NAME_BYTES", "MAX_SKIPPED",
        "collect", "write_manifest", "read_manifest",
    }


@pytest.mark.docker
def test_container_output_end_to_end(docker_client, make_image, tmp_path: Path) -> None:
    """What a real hardened container leaves behind: links to host files are not served."""
    import sqlite3

    from engine.runner import DockerRunner, RunLimits, RunSpec, classify

    script = (
        "ln -s /etc/passwd $OUTPUT_PATH/passwd\n"
        "mkdir $OUTPUT_PATH/sub && echo result > $OUTPUT_PATH/sub/result.txt\n"
        "mkfifo $OUTPUT_PATH/pipe\n"
    )
    db = tmp_path / "query_results.db"
    sqlite3.connect(db).close()
    spec = RunSpec(
        "artifacts-e2e",
        make_image("linker", script),
        db,
        tmp_path / "out",
        1,
        RunLimits(timeout_s=20),
    )
    assert classify(DockerRunner(docker_client).run(spec)) is None
    assert (spec.output_dir / "passwd").is_symlink()

    got = collect(spec.output_dir, tmp_path / "store", max_total_bytes=1000).artifacts

    assert [a.name for a in got] == ["sub/result.txt"]
    assert not (tmp_path / "store" / "passwd").exists()


# ---------------------------------------------------------------- sealed while collected

_BOB_KEY = bytes(range(1, 33))


def _bob_public() -> str:
    from registry_client.sealing import public_key_of

    return public_key_of(_BOB_KEY)


def test_sealed_collect_writes_only_ciphertext_with_both_hashes(out: Path, tmp_path: Path) -> None:
    from registry_client.sealing import open_bytes

    (out / "sub").mkdir()
    (out / "sub" / "r.csv").write_bytes(b"secret,row\n" * 10_000)
    (out / "empty.txt").write_bytes(b"")
    dest = tmp_path / "store"
    found = collect(out, dest, 10**7, seal_to=_bob_public()).artifacts
    for artifact in found:
        stored = dest.joinpath(*artifact.name.split("/")).read_bytes()
        plain = (out / artifact.name).read_bytes()
        assert b"secret" not in stored and stored.startswith(b"C2DSEAL")
        assert (artifact.size, artifact.sha256) == (len(plain), _sha(plain))
        assert (artifact.sealed_size, artifact.sealed_sha256) == (len(stored), _sha(stored))
        assert open_bytes(stored, private_key=_BOB_KEY) == plain


def test_sealed_collect_keeps_the_cap_while_reading(out: Path, tmp_path: Path) -> None:
    (out / "one.bin").write_bytes(b"x" * 600)
    (out / "two.bin").write_bytes(b"y" * 600)
    dest = tmp_path / "store"
    with pytest.raises(RunFailure) as err:
        collect(out, dest, max_total_bytes=1000, seal_to=_bob_public())
    assert err.value.code == "OUTPUT_TOO_LARGE"
    assert list(dest.iterdir()) == []
