"""image-export.sh shows the archive's growing size on a terminal, and nothing extra otherwise.

A `docker` shim on PATH stands in for dockerd (this tests the script's output, not
Docker: tests/job_template/test_template_image.py runs the real export).
"""

from __future__ import annotations

import hashlib
import os
import pty
import shutil
import subprocess
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[2] / "job_template"
SHIM = """#!/bin/sh
case "$1" in
  image) exit 0 ;;
  save) head -c 300000 /dev/urandom; sleep 1; head -c 300000 /dev/urandom ;;
esac
"""


def _setup(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    work = tmp_path / "job"
    work.mkdir()
    shutil.copy2(TEMPLATE / "image-export.sh", work / "image-export.sh")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(SHIM)
    (bin_dir / "docker").chmod(0o755)
    return work, {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ARCHIVE_URL": "https://x.example/j.tgz"}


def test_export_on_a_terminal_shows_bytes_written(tmp_path: Path) -> None:
    work, env = _setup(tmp_path)
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run([str(work / "image-export.sh")], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=secondary, timeout=60, check=False)
        os.close(secondary)
        shown = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(primary)
    assert proc.returncode == 0, (proc.stdout, shown)
    size = (work / "my-compute-job.tar.gz").stat().st_size
    assert f"==> {size} bytes written".encode() in shown
    digest = hashlib.sha256((work / "my-compute-job.tar.gz").read_bytes()).hexdigest()
    assert f"sha256 {digest}" in proc.stdout.decode() and b"bytes written" not in proc.stdout


def test_export_without_a_terminal_stays_quiet(tmp_path: Path) -> None:
    work, env = _setup(tmp_path)
    proc = subprocess.run([str(work / "image-export.sh")], env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and "bytes written" not in proc.stdout
