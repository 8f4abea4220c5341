"""Read an image archive statically and describe what it runs (never `docker load`, never run it).

``audit_archive(path)`` first passes the archive through the engine's own
archive check (engine/archive_check.py: one image, Docker's view of every
name, the entry and expanded-size caps), then reads a `docker save` archive
(``manifest.json``, the config JSON, layer tars, each maybe gzip'd; Docker 25+
archives carry an OCI ``index.json`` too, and the same ``manifest.json``):

- the config: entrypoint, cmd, user, working dir, environment *names* (never
  values: they may hold a secret), labels, ports, volumes, the input layout;
- the layers with their sizes and history;
- the final file tree: layers applied in order with whiteouts (``.wh.<name>``
  and the opaque ``.wh..wh..opq``), then counted (largest files,
  executables, setuid and setgid files);
- the job's own source files as UTF-8 text (under the working dir, or named
  by the entrypoint/cmd, with a text extension), each cut at 64 KiB;
- the Debian (dpkg status) and Python (dist-info METADATA) package inventory;
- the warnings a reviewer needs, each saying what the sandbox does about it.

Everything is bounded while it is read: entries and expanded bytes by the
archive check's caps, source text and package counts by this module's.
A compressed outer archive is first expanded to a temporary file (within
the expanded-size cap), so layers can be read in manifest order without
decompressing the archive once per layer.
"""

from __future__ import annotations

import gzip
import heapq
import json
import posixpath
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.archive_check import (
    MAX_LAYER_ENTRIES,
    MAX_MEMBERS,
    _decompressed,
    _members,
    _open_stream,
    _Peek,
    _StrictTarInfo,
    inspect_archive,
)
from engine.errors import ImageFailure
from engine.layouts import DEFAULT_LAYOUT, LAYOUT_LABEL, LAYOUTS

__all__ = ["AUDIT_VERSION", "MAX_SOURCE_BYTES", "MAX_SOURCE_FILES", "WARNING_CODES", "audit_archive"]

AUDIT_VERSION = 1  # bump when the report's content changes: cached reports are keyed by it
MAX_SOURCE_BYTES = 64 * 1024  # text shown per source file
MAX_SOURCE_FILES = 20
MAX_PACKAGES = 5_000  # per ecosystem
MAX_LISTED = 100  # setuid, setgid paths shown
MAX_SAMPLE = 20  # executables shown
MAX_CONFIG_BYTES = 8 * 1024 * 1024
_MAX_DPKG_BYTES = 16 * 1024 * 1024
_MAX_METADATA_BYTES = 16 * 1024  # the headers of a METADATA file come first
_MAX_CAPTURED = 2 * MAX_SOURCE_FILES  # candidates held while walking (a later layer may delete some)
_CHUNK = 1024 * 1024
TEXT_EXTENSIONS = (".py", ".sh", ".js", ".sql", ".txt", ".json", ".toml", ".cfg", ".md")
NETWORK_TOOLS = frozenset({"curl", "wget", "nc", "ncat", "netcat", "socat", "ssh", "scp", "sftp",
                           "telnet", "ftp", "rsync", "nmap"})
_BIN_DIRS = frozenset({"bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "usr/local/sbin"})
_FETCH_HINTS = re.compile(r"\b(urllib|requests|httpx|aiohttp|socket)\b|https?://")
_DIST_INFO = re.compile(r"(?:^|/)(?:site|dist)-packages/[^/]+\.dist-info/METADATA$")
_DPKG_STATUS = "var/lib/dpkg/status"
_DPKG_STATUS_D = "var/lib/dpkg/status.d/"
_OCI = {"source": "org.opencontainers.image.source", "revision": "org.opencontainers.image.revision",
        "description": "org.opencontainers.image.description"}


def audit_archive(path: Path, *, max_expanded_bytes: int = 8 * 1024**3, max_members: int = MAX_MEMBERS,
                  tmp_dir: Path | None = None, checked: bool = False) -> dict[str, Any]:
    """The audit report of the archive at ``path`` (without the instruction's id, hash, url).

    ``checked``: the archive already passed the archive check with these caps
    (the engine's download checks as it arrives), so it is not checked twice.
    Raises ImageFailure IMAGE_INVALID / IMAGE_TOO_LARGE, as the engine's load would.
    """
    if not checked:
        inspect_archive(path, max_expanded_bytes=max_expanded_bytes, max_members=max_members)
    with _plain_tar(path, tmp_dir) as plain, tarfile.open(plain, "r:", tarinfo=_StrictTarInfo) as tar:
        try:
            return _Audit(tar, max_members, max_expanded_bytes).run()
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            raise ImageFailure("the archive's layers are not readable tars") from exc


class _plain_tar:
    """The archive as an uncompressed tar file: itself, or a temporary expansion of it."""

    def __init__(self, path: Path, tmp_dir: Path | None):
        self.path, self.tmp_dir, self.tmp = path, tmp_dir, None

    def __enter__(self) -> Path:
        with open(self.path, "rb") as raw:
            if raw.read(2) != b"\x1f\x8b":
                return self.path
        self.tmp = tempfile.NamedTemporaryFile(prefix="audit-", suffix=".tar", dir=self.tmp_dir,
                                               delete=False)
        with self.tmp, gzip.open(self.path, "rb") as src:
            shutil.copyfileobj(src, self.tmp, _CHUNK)  # size already capped by the archive check
        return Path(self.tmp.name)

    def __exit__(self, *exc: object) -> None:
        if self.tmp is not None:
            Path(self.tmp.name).unlink(missing_ok=True)


class _Node:
    """One path of the final tree: a directory (``children``) or not; ``layer`` that last set it."""

    __slots__ = ("children", "kind", "layer", "mode", "size")

    def __init__(self, kind: str, layer: int, size: int = 0, mode: int = 0):
        self.kind, self.layer, self.size, self.mode = kind, layer, size, mode
        self.children: dict[str, _Node] | None = {} if kind == "d" else None


class _Audit:
    def __init__(self, tar: tarfile.TarFile, max_members: int, max_expanded_bytes: int):
        self.tar = tar
        self.outer: dict[str, tarfile.TarInfo] = {}
        for count, member in enumerate(_members_kept(tar), start=1):
            if count > max_members:
                raise ImageFailure(f"the archive has more than {max_members} entries")
            self.outer[posixpath.normpath(member.name)] = member
        self.root = _Node("d", -1)
        self.entries = 0
        self.expanded = 0
        self.max_expanded = max_expanded_bytes
        self.sources: dict[str, tuple[int, bytes, bool]] = {}
        self.sources_skipped = False
        self.dpkg: dict[str, list[tuple[str, str]]] = {}
        self.python: dict[str, tuple[str, str]] = {}

    # -- the archive's JSON ---------------------------------------------------

    def _member(self, name: str) -> tarfile.TarInfo:
        name = posixpath.normpath(name)
        for _ in range(8):  # `docker save` links a repeated layer to its first copy
            member = self.outer.get(name)
            if member is None:
                raise ImageFailure("the archive lacks a file its manifest names")
            if not member.issym():
                return member
            name = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
        raise ImageFailure("the archive's links to layers loop")

    def _json(self, name: str) -> Any:
        member = self._member(name)
        if member.size > MAX_CONFIG_BYTES:
            raise ImageFailure("the archive's image config is implausibly large")
        src = self.tar.extractfile(member)
        assert src is not None
        try:
            return json.loads(src.read())
        except ValueError as exc:
            raise ImageFailure("the archive's manifest or image config is not valid JSON") from exc

    def run(self) -> dict[str, Any]:
        manifest = self._json("manifest.json")
        entry = manifest[0] if isinstance(manifest, list) and manifest and isinstance(manifest[0], dict) else {}
        config = self._json(str(entry.get("Config", "")))
        if not isinstance(config, dict):
            raise ImageFailure("the archive's image config is not a JSON object")
        image = _image(config.get("config") or {})
        layer_paths = [str(p) for p in entry.get("Layers") or []]
        self.candidates = _SourceRule(image)
        for index, layer in enumerate(layer_paths):
            self._apply_layer(index, self._member(layer))
        files = self._files()
        sources = self._final_sources()
        packages = self._packages()
        report = {
            "image": image,
            "layers": _layers(config, layer_paths, self._member),
            "files": files,
            "sources": sources,
            "packages": packages,
        }
        report["warnings"] = _warnings(image, files, sources, packages, self.sources_skipped)
        report["audited_at"] = time.time()
        report["audit_version"] = AUDIT_VERSION
        return report

    # -- layers -------------------------------------------------------------

    def _apply_layer(self, index: int, member: tarfile.TarInfo) -> None:
        src = self.tar.extractfile(member)
        assert src is not None
        stream = _decompressed(_Peek(src), "a layer of the image")
        with _open_stream(stream) as inner:
            for entry in _members(inner):
                self.entries += 1
                self.expanded += max(entry.size, 0)
                if self.entries > MAX_LAYER_ENTRIES or self.expanded > self.max_expanded:
                    raise ImageFailure("the image's layers are over the engine's caps", code="IMAGE_TOO_LARGE")
                path = _clean(entry.name)
                if path is not None:
                    self._place(index, path, entry, inner)

    def _place(self, layer: int, path: str, entry: tarfile.TarInfo, inner: tarfile.TarFile) -> None:
        parent_path, name = posixpath.split(path)
        if name.startswith(".wh."):
            self._whiteout(layer, parent_path, name)
            return
        parent = self._dir(parent_path, layer)
        if entry.isdir():
            self._dir(path, layer).mode = entry.mode
            return
        kind = "f" if entry.isreg() or entry.islnk() else "l" if entry.issym() else "o"
        size = entry.size if entry.isreg() else 0
        assert parent.children is not None
        parent.children[name] = _Node(kind, layer, size, entry.mode)
        if entry.isreg():
            self._capture(path, entry, inner)

    def _whiteout(self, layer: int, parent_path: str, name: str) -> None:
        """``.wh.<name>`` deletes <name>; ``.wh..wh..opq`` hides what lower layers put in the dir."""
        parent = self._lookup(parent_path) if parent_path else self.root
        if parent is None or parent.children is None:
            return  # nothing below it to hide
        if name == ".wh..wh..opq":
            for child in [n for n, c in parent.children.items() if c.layer < layer]:
                del parent.children[child]
        else:
            parent.children.pop(name[4:], None)

    def _dir(self, path: str, layer: int) -> _Node:
        node = self.root
        if path in ("", "."):
            return node
        for part in path.split("/"):
            assert node.children is not None
            child = node.children.get(part)
            if child is None or child.kind != "d":
                child = node.children[part] = _Node("d", layer)
            node = child
        return node

    def _capture(self, path: str, entry: tarfile.TarInfo, inner: tarfile.TarFile) -> None:
        """Keep what the report shows of this file's content (a later layer may replace it)."""
        if path == _DPKG_STATUS or path.startswith(_DPKG_STATUS_D):
            self.dpkg[path] = _dpkg_packages(_read(inner, entry, _MAX_DPKG_BYTES))
        elif _DIST_INFO.search(path):
            parsed = _metadata(_read(inner, entry, _MAX_METADATA_BYTES))
            if parsed is not None and (path in self.python or len(self.python) < MAX_PACKAGES):
                self.python[path] = parsed
        elif self.candidates.matches(path):
            if path not in self.sources and len(self.sources) >= _MAX_CAPTURED:
                self.sources_skipped = True
                return
            data = _read(inner, entry, MAX_SOURCE_BYTES)
            self.sources[path] = (entry.size, data, entry.size > MAX_SOURCE_BYTES)

    # -- the final tree -------------------------------------------------------

    def _walk(self) -> Iterator[tuple[str, _Node]]:
        stack: list[tuple[str, _Node]] = [("", self.root)]
        while stack:
            prefix, node = stack.pop()
            assert node.children is not None
            below = []
            for name in sorted(node.children):
                child = node.children[name]
                path = f"{prefix}/{name}"
                yield path, child
                if child.children is not None:
                    below.append((path, child))
            stack.extend(reversed(below))  # popped in name order

    def _lookup(self, path: str) -> _Node | None:
        node: _Node | None = self.root
        for part in path.split("/"):
            if node is None or node.children is None:
                return None
            node = node.children.get(part)
        return node

    def _files(self) -> dict[str, Any]:
        count = total = executables = dirs = links = 0
        largest: list[tuple[int, str]] = []
        sample: list[str] = []
        setuid: list[str] = []
        setgid: list[str] = []
        tools: set[str] = set()
        for path, node in self._walk():
            if node.kind == "d":
                dirs += 1
                continue
            if node.kind == "l":
                links += 1
            if posixpath.dirname(path).lstrip("/") in _BIN_DIRS and posixpath.basename(path) in NETWORK_TOOLS:
                tools.add(posixpath.basename(path))
            if node.kind != "f":
                continue
            count += 1
            total += node.size
            heapq.heappush(largest, (node.size, path))
            if len(largest) > 10:
                heapq.heappop(largest)
            if node.mode & 0o111:
                executables += 1
                if len(sample) < MAX_SAMPLE:
                    sample.append(path)
            if node.mode & 0o4000 and len(setuid) < MAX_LISTED:
                setuid.append(path)
            if node.mode & 0o2000 and len(setgid) < MAX_LISTED:
                setgid.append(path)
        return {"count": count, "total_bytes": total, "directories": dirs, "symlinks": links,
                "largest": [{"path": p, "size": s} for s, p in sorted(largest, reverse=True)],
                "executables": {"count": executables, "sample": sample},
                "setuid": sorted(setuid), "setgid": sorted(setgid), "network_tools": sorted(tools)}

    def _final_sources(self) -> list[dict[str, Any]]:
        shown = []
        for path in sorted(self.sources):
            node = self._lookup(path)
            if node is None or node.kind != "f":
                continue  # deleted or replaced by a later layer
            size, data, truncated = self.sources[path]
            text = _utf8_text(data, truncated)
            if text is None:
                continue  # not text: shown as a file only
            if len(shown) >= MAX_SOURCE_FILES:
                self.sources_skipped = True
                break
            shown.append({"path": "/" + path, "size": size, "text": text, "truncated": truncated})
        return shown

    def _packages(self) -> dict[str, Any]:
        debian = sorted({p for path, pkgs in self.dpkg.items() if self._lookup(path) for p in pkgs})
        python = sorted({p for path, p in self.python.items() if self._lookup(path)})
        truncated = len(debian) > MAX_PACKAGES or len(self.python) >= MAX_PACKAGES
        return {"debian": [{"name": n, "version": v} for n, v in debian[:MAX_PACKAGES]],
                "python": [{"name": n, "version": v} for n, v in python[:MAX_PACKAGES]],
                "truncated": truncated}


def _members_kept(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while (member := tar.next()) is not None:
        yield member


def _clean(name: str) -> str | None:
    """A layer entry's path relative to the image root, or None for the root (or an escape)."""
    normal = posixpath.normpath("/" + name).lstrip("/")
    return normal or None


def _read(inner: tarfile.TarFile, entry: tarfile.TarInfo, cap: int) -> bytes:
    src = inner.extractfile(entry)
    return src.read(cap) if src is not None else b""


def _utf8_text(data: bytes, truncated: bool) -> str | None:
    if b"\x00" in data:
        return None
    for cut in range(4 if truncated else 1):  # a cut may split one multi-byte character
        try:
            return data[: len(data) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None


def _dpkg_packages(data: bytes) -> list[tuple[str, str]]:
    found = []
    for stanza in data.decode("utf-8", "replace").split("\n\n"):
        fields = dict(_header_lines(stanza))
        if fields.get("package") and "installed" in fields.get("status", "installed").split():
            found.append((fields["package"], fields.get("version", "")))
            if len(found) > MAX_PACKAGES:
                break
    return found


def _metadata(data: bytes) -> tuple[str, str] | None:
    head = data.decode("utf-8", "replace").split("\n\n", 1)[0]
    fields = dict(_header_lines(head))
    return (fields["name"], fields.get("version", "")) if fields.get("name") else None


def _header_lines(text: str) -> Iterator[tuple[str, str]]:
    for line in text.splitlines():
        if line[:1] not in (" ", "\t") and ":" in line:
            key, _, value = line.partition(":")
            yield key.strip().lower(), value.strip()[:200]


class _SourceRule:
    """Which files are the job's own: under the working dir, or named by entrypoint/cmd."""

    def __init__(self, image: dict[str, Any]):
        workdir = (image.get("working_dir") or "").strip("/")
        self.workdir = posixpath.normpath(workdir) if workdir else ""
        self.named = set()
        for arg in (image.get("entrypoint") or []) + (image.get("cmd") or []):
            if isinstance(arg, str) and arg.endswith(TEXT_EXTENSIONS):
                joined = arg if arg.startswith("/") else posixpath.join("/" + self.workdir, arg)
                self.named.add(posixpath.normpath(joined).lstrip("/"))

    def matches(self, path: str) -> bool:
        if not path.endswith(TEXT_EXTENSIONS):
            return False
        if path in self.named:
            return True
        # A working dir of / would make every file the job's own: then only named files count.
        return bool(self.workdir) and path.startswith(self.workdir + "/")


def _strings(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list) else None


def _image(cfg: dict[str, Any]) -> dict[str, Any]:
    labels = {str(k): str(v) for k, v in (cfg.get("Labels") or {}).items()}
    env = [str(e).split("=", 1)[0] for e in cfg.get("Env") or []]
    return {
        "entrypoint": _strings(cfg.get("Entrypoint")),
        "cmd": _strings(cfg.get("Cmd")),
        "user": str(cfg.get("User") or ""),
        "working_dir": str(cfg.get("WorkingDir") or ""),
        "env_names": env,
        "labels": labels,
        "exposed_ports": sorted(str(p) for p in (cfg.get("ExposedPorts") or {})),
        "volumes": sorted(str(v) for v in (cfg.get("Volumes") or {})),
        "layout": labels.get(LAYOUT_LABEL, DEFAULT_LAYOUT.name),
        "oci": {key: labels.get(label) for key, label in _OCI.items()},
    }


def _layers(config: dict[str, Any], paths: list[str], member: Any) -> list[dict[str, Any]]:
    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    history = [h for h in config.get("history") or [] if isinstance(h, dict)]
    if not history:
        history = [{} for _ in paths]
    layers, index = [], 0
    for step in history:
        empty = bool(step.get("empty_layer"))
        row = {"digest": "", "size": 0, "created_by": step.get("created_by"), "empty_layer": empty}
        if not empty and index < len(paths):
            row["digest"] = str(diff_ids[index]) if index < len(diff_ids) else ""
            row["size"] = member(paths[index]).size
            index += 1
        layers.append(row)
    return layers


def _root_user(user: str) -> bool:
    name = user.split(":", 1)[0].strip()
    return name in ("", "0", "root")


# What a reviewer is warned about (the report's `warnings[].code`); findings, not errors.
WARNING_CODES = {
    "RUNS_AS_ROOT": "the image's USER is unset or root",
    "SETUID_FILES": "setuid or setgid files in the image",
    "DECLARES_VOLUMES": "the image declares VOLUMEs",
    "EXPOSES_PORTS": "the image exposes ports",
    "NETWORK_TOOLS": "network tools (curl, wget, nc, ssh...) in the image",
    "FETCHES_AT_RUNTIME": "a source mentions a network library or URL (heuristic)",
    "UNKNOWN_LAYOUT": "the layout label names no layout this engine knows",
    "SOURCES_LIMITED": "more source files than the report shows",
    "PACKAGES_LIMITED": "more packages than the report lists",
}


def _warnings(image: dict[str, Any], files: dict[str, Any], sources: list[dict[str, Any]],
              packages: dict[str, Any], sources_skipped: bool) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []

    def warn(code: str, message: str) -> None:
        assert code in WARNING_CODES, code
        out.append({"code": code, "message": message})

    if _root_user(image["user"]):
        warn("RUNS_AS_ROOT", "the image runs as root (USER unset or 0); the engine runs every job as "
             "uid 65534 with all capabilities dropped, so a job that needs root fails")
    if files["setuid"] or files["setgid"]:
        warn("SETUID_FILES", f"{len(files['setuid'])} setuid and {len(files['setgid'])} setgid files; "
             "the engine sets no-new-privileges, so they grant nothing in the sandbox")
    if image["volumes"]:
        warn("DECLARES_VOLUMES", "the image declares volumes; the engine refuses one over its own mounts "
             "(IMAGE_INVALID) and the rest are anonymous volumes removed with the job")
    if image["exposed_ports"]:
        warn("EXPOSES_PORTS", "the image exposes ports; jobs run with no network, so nothing can reach them")
    if files["network_tools"]:
        warn("NETWORK_TOOLS", f"network tools in the image ({', '.join(files['network_tools'])}); "
             "jobs run with no network, so they cannot reach anything")
    if any(_FETCH_HINTS.search(s["text"]) for s in sources):
        warn("FETCHES_AT_RUNTIME", "a source file mentions a network library or an http(s) URL "
             "(a heuristic on the sources shown); jobs run with no network, so such fetches fail")
    if image["layout"] not in LAYOUTS:
        warn("UNKNOWN_LAYOUT", "the image's layout label names no layout this engine knows: "
             "it would refuse the image (IMAGE_INVALID)")
    if sources_skipped:
        warn("SOURCES_LIMITED", f"more source files than the {MAX_SOURCE_FILES} shown")
    if packages["truncated"]:
        warn("PACKAGES_LIMITED", f"more packages than the {MAX_PACKAGES} listed")
    return out
