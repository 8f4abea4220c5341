"""engine/audit.py on `docker save`-shaped archives built here with tarfile (no Docker)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from engine.audit import MAX_SOURCE_BYTES, audit_archive
from engine.errors import ImageFailure

WORKER = b"import json, os\nprint('hello')\n"
DPKG = (b"Package: bash\nStatus: install ok installed\nVersion: 5.2-1\n\n"
        b"Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n"
        b"Package: curl\nStatus: install ok installed\nVersion: 7.88\n")
METADATA = b"Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\n\nlong description\n"


def _layer(entries: list[tuple[str, bytes | None, int]], *, gz: bool = False) -> bytes:
    """A layer tar: (name, content or None for a directory, mode)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.mode = mode
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if gz else raw


def _archive(path: Path, config: dict, layers: list[bytes], *, gz_outer: bool = True) -> Path:
    buf = io.BytesIO()
    names = []
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for layer in layers:
            name = f"blobs/sha256/{hashlib.sha256(layer).hexdigest()}"
            names.append(name)
            add(name, layer)
        cfg = json.dumps(config).encode()
        cfg_name = f"blobs/sha256/{hashlib.sha256(cfg).hexdigest()}"
        add(cfg_name, cfg)
        add("manifest.json", json.dumps([{"Config": cfg_name, "RepoTags": ["t:1"], "Layers": names}]).encode())
    data = buf.getvalue()
    path.write_bytes(gzip.compress(data, mtime=0) if gz_outer else data)
    return path


def _config(**cfg) -> dict:
    return {"config": cfg, "rootfs": {"type": "layers", "diff_ids": ["sha256:aa", "sha256:bb"]},
            "history": [{"created_by": "ADD rootfs"}, {"created_by": "ENV X=1", "empty_layer": True},
                        {"created_by": "COPY worker.py"}]}


@pytest.fixture
def report(tmp_path: Path) -> dict:
    base = _layer([
        ("bin", None, 0o755), ("bin/sh", b"ELF", 0o755), ("usr/bin/curl", b"ELF", 0o755),
        ("usr/bin/passwd", b"ELF", 0o4755), ("usr/bin/wall", b"ELF", 0o2755),
        ("var/lib/dpkg/status", DPKG, 0o644),
        ("usr/lib/python3/dist-packages/requests-2.31.0.dist-info/METADATA", METADATA, 0o644),
        ("etc/old/a.conf", b"x", 0o644), ("etc/old/b.conf", b"y", 0o644),
        ("etc/secret.txt", b"s", 0o644), ("app/old.py", b"old", 0o644),
        ("big.bin", b"\0" * 5000, 0o644),
    ], gz=True)
    top = _layer([
        ("etc/.wh.secret.txt", b"", 0o644),
        ("etc/old/.wh..wh..opq", b"", 0o644), ("etc/old/c.conf", b"z", 0o644),
        ("app/.wh.old.py", b"", 0o644),
        ("app/worker.py", WORKER, 0o644), ("app/notes.bin", b"\x00\x01", 0o644),
        ("app/big.py", b"#" * (MAX_SOURCE_BYTES + 10), 0o644),
        ("app/fetch.py", b"import urllib.request\n", 0o644),
    ])
    config = _config(Entrypoint=["python3", "worker.py"], Cmd=None, WorkingDir="/app",
                     Env=["PATH=/usr/bin", "API_TOKEN=supersecret"], Volumes={"/data": {}},
                     ExposedPorts={"8080/tcp": {}},
                     Labels={"org.opencontainers.image.source": "https://example.org/job"})
    return audit_archive(_archive(tmp_path / "img.tar.gz", config, [base, top]), max_expanded_bytes=10**8)


def test_config_is_reported_without_env_values(report: dict) -> None:
    image = report["image"]
    assert image["entrypoint"] == ["python3", "worker.py"] and image["cmd"] is None
    assert image["user"] == "" and image["working_dir"] == "/app"
    assert image["env_names"] == ["PATH", "API_TOKEN"]
    assert "supersecret" not in json.dumps(report)
    assert image["volumes"] == ["/data"] and image["exposed_ports"] == ["8080/tcp"]
    assert image["layout"] == "vana"
    assert image["oci"] == {"source": "https://example.org/job", "revision": None, "description": None}


def test_layers_follow_the_history(report: dict) -> None:
    assert [(row["created_by"], row["empty_layer"]) for row in report["layers"]] == [
        ("ADD rootfs", False), ("ENV X=1", True), ("COPY worker.py", False)]
    assert report["layers"][0]["digest"] == "sha256:aa" and report["layers"][0]["size"] > 0
    assert report["layers"][1]["size"] == 0


def test_whiteouts_give_the_final_tree(report: dict) -> None:
    files = report["files"]
    paths = {row["path"] for row in files["largest"]}
    assert "/etc/secret.txt" not in paths and "/app/old.py" not in paths
    # 11 files in the base; the top adds 5 and whites out 4 (two by the opaque marker).
    assert files["count"] == 12
    assert files["total_bytes"] == 3 * 4 + len(DPKG) + len(METADATA) + 5000 + 1 + len(WORKER) + 2 + (
        MAX_SOURCE_BYTES + 10) + len(b"import urllib.request\n")
    assert files["largest"][0]["path"] == "/app/big.py"
    assert files["setuid"] == ["/usr/bin/passwd"] and files["setgid"] == ["/usr/bin/wall"]
    assert files["executables"]["count"] == 4
    assert files["network_tools"] == ["curl"]


def test_sources_are_the_jobs_own_text_files(report: dict) -> None:
    sources = {s["path"]: s for s in report["sources"]}
    assert set(sources) == {"/app/worker.py", "/app/big.py", "/app/fetch.py"}  # notes.bin is not text
    assert sources["/app/worker.py"]["text"] == WORKER.decode()
    assert sources["/app/worker.py"]["truncated"] is False
    assert sources["/app/big.py"]["truncated"] is True
    assert len(sources["/app/big.py"]["text"]) == MAX_SOURCE_BYTES


def test_packages_from_dpkg_and_dist_info(report: dict) -> None:
    assert report["packages"]["debian"] == [{"name": "bash", "version": "5.2-1"},
                                             {"name": "curl", "version": "7.88"}]
    assert report["packages"]["python"] == [{"name": "requests", "version": "2.31.0"}]


def test_warnings_name_what_the_sandbox_does(report: dict) -> None:
    codes = {w["code"]: w["message"] for w in report["warnings"]}
    assert set(codes) == {"RUNS_AS_ROOT", "SETUID_FILES", "DECLARES_VOLUMES", "EXPOSES_PORTS",
                          "NETWORK_TOOLS", "FETCHES_AT_RUNTIME"}
    assert "65534" in codes["RUNS_AS_ROOT"] and "no-new-privileges" in codes["SETUID_FILES"]
    assert "heuristic" in codes["FETCHES_AT_RUNTIME"]


def test_a_non_root_plain_archive_has_no_root_warning(tmp_path: Path) -> None:
    layer = _layer([("job.sh", b"echo hi\n", 0o755)])
    config = _config(User="65534:65534", Cmd=["/bin/sh", "/job.sh"],
                     Labels={"org.computetodata.layout": "ocean"})
    report = audit_archive(_archive(tmp_path / "a.tar", config, [layer], gz_outer=False),
                           max_expanded_bytes=10**8)
    assert report["warnings"] == []
    assert report["image"]["layout"] == "ocean"
    assert [s["path"] for s in report["sources"]] == ["/job.sh"]


def test_unknown_layout_is_warned(tmp_path: Path) -> None:
    config = _config(User="1000", Labels={"org.computetodata.layout": "mystery"})
    report = audit_archive(_archive(tmp_path / "a.tar", config, [_layer([("x", b"1", 0o644)])]),
                           max_expanded_bytes=10**8)
    assert [w["code"] for w in report["warnings"]] == ["UNKNOWN_LAYOUT"]


def test_over_the_expanded_cap_is_refused(tmp_path: Path) -> None:
    layer = _layer([("big", b"\0" * 100_000, 0o644)], gz=True)
    with pytest.raises(ImageFailure) as err:
        audit_archive(_archive(tmp_path / "a.tar.gz", _config(), [layer]), max_expanded_bytes=50_000)
    assert err.value.code == "IMAGE_TOO_LARGE"


def test_not_an_archive_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ImageFailure) as err:
        audit_archive(bad)
    assert err.value.code == "IMAGE_INVALID"
