"""Build small test images locally, with no registry: busybox via `docker import`.

Shared by every test that needs a container. Images are cached by tag, so a
session builds each at most once (and a second session reuses them).

- ``busybox_image(client)``: ``c2d-test/busybox:1``, a rootfs holding Debian's
  static busybox and its applet links (sh, id, ip, wget, dd ...).
- ``build_image(client, dockerfile_text, tag, context_files)``: a legacy
  ``docker build`` (FROM c2d-test/busybox:1 works offline).
- ``export_archive(client, refs, dest, gzip=True)``: ``docker save`` of one or
  more images to a file; returns the file's sha256.
"""

from __future__ import annotations

import gzip as gzip_mod
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

__all__ = [
    "BUSYBOX_TAG",
    "build_image",
    "busybox_image",
    "ensure_busybox_binary",
    "export_archive",
    "remove_images",
]

BUSYBOX_TAG = "c2d-test/busybox:1"
BUSYBOX_BIN = Path("/bin/busybox")

_PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = b"root:x:0:\nnogroup:x:65534:\n"


def ensure_busybox_binary() -> Path:
    """/bin/busybox (static), installing Debian's busybox-static when missing."""
    if BUSYBOX_BIN.exists():
        return BUSYBOX_BIN
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError("/bin/busybox is missing: install Debian's busybox-static")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "busybox-static"]
    if subprocess.run(install, check=False, env=env, capture_output=True).returncode != 0:
        # The package index may be absent on a fresh machine.
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, check=True)
    return BUSYBOX_BIN


def _busybox_rootfs() -> bytes:
    """A tar of a minimal rootfs: /bin/busybox plus one symlink per applet."""
    binary = ensure_busybox_binary()
    applets = subprocess.run(
        [str(binary), "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "tmp", "mnt", "root"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(binary), arcname="bin/busybox")
        for path in applets:
            if path == "bin/busybox" or "/" not in path:
                continue
            info = tarfile.TarInfo(path)
            info.type = tarfile.SYMTYPE
            info.linkname = "/bin/busybox"
            tar.addfile(info)
        for name, data in (("etc/passwd", _PASSWD), ("etc/group", _GROUP)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def busybox_image(client) -> str:
    """Image id of ``c2d-test/busybox:1``, importing it on first use."""
    import docker

    try:
        return client.images.get(BUSYBOX_TAG).id
    except docker.errors.ImageNotFound:
        pass
    repo, tag = BUSYBOX_TAG.split(":")
    client.api.import_image_from_data(
        _busybox_rootfs(),
        repository=repo,
        tag=tag,
        changes=['CMD ["/bin/sh"]', "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
    )
    return client.images.get(BUSYBOX_TAG).id


def build_image(
    client, dockerfile_text: str, tag: str, context_files: dict[str, bytes | str] | None = None
) -> str:
    """Build ``dockerfile_text`` (+ files) with the legacy builder; return the image id."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        files = {"Dockerfile": dockerfile_text, **(context_files or {})}
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    image, _logs = client.images.build(
        fileobj=buf, custom_context=True, tag=tag, rm=True, forcerm=True, pull=False
    )
    return image.id


class _HashingWriter:
    """Write-through file wrapper that hashes what reaches the file."""

    def __init__(self, raw):
        self.raw = raw
        self.hasher = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


def export_archive(client, refs: str | list[str], dest_path: Path, gzip: bool = True) -> str:
    """``docker save`` of ``refs`` (one image or several) into ``dest_path``; return its sha256."""
    names = [refs] if isinstance(refs, str) else list(refs)
    if len(names) == 1:
        stream = client.images.get(names[0]).save(named=not names[0].startswith("sha256:"))
    else:
        # The SDK saves one image; the API's /images/get takes several names.
        res = client.api._get(client.api._url("/images/get"), params={"names": names}, stream=True)
        stream = client.api._stream_raw_result(res, 1024 * 1024, False)
    dest_path = Path(dest_path)
    with open(dest_path, "wb") as raw:
        sink = _HashingWriter(raw)
        out = gzip_mod.GzipFile(fileobj=sink, mode="wb", compresslevel=1, mtime=0) if gzip else sink
        for chunk in stream:
            out.write(chunk)
        if gzip:
            out.close()
    return sink.hasher.hexdigest()


def remove_images(client, refs: list[str]) -> None:
    """Remove images a test session built (tests leave no clutter in the user's Docker)."""
    import docker

    for ref in refs:
        try:
            client.images.remove(ref, force=True)
        except docker.errors.APIError:
            pass  # already gone, or still used by a container being removed
