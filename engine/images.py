"""Load a verified image archive into Docker, exactly one image, known by its id.

Before Docker sees the archive it is inspected (engine/archive_check.py): a
tar (maybe gzipped) whose ``manifest.json`` names exactly one image config,
read as Docker reads it, expanding to no more than the operator's cap. The
image id is the sha256 of that config, so the engine knows the id before
loading and runs the container by id, never by tag. A tag the archive re-pointed is put back on
the image it named before the load, so an archive cannot hijack an operator's
tag such as ``python:3.12-slim``. New tags are left alone: removing an
image's last tag would delete the image. A freshly downloaded gzipped archive
comes with its tar already decompressed by the check (engine/fetch.py): Docker
is given that, and skips its own gunzip.

``<state_dir>/images.json`` maps archive sha256 -> image id, so a second job
with the same instruction does not load again while the image still exists.
Images the engine loaded are collected over the operator's cache size, least
recently used first (engine/image_gc.py). An image whose layout label
(engine/layouts.py) names no known layout is IMAGE_INVALID here, before the
job's query runs.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import docker.errors

from engine.archive_check import ArchiveInfo, inspect_archive
from engine.docker_calls import DockerCalls, docker_calls
from engine.errors import ImageFailure
from engine.fetch import VerifiedArchive
from engine.image_gc import LoadedImages, write_json
from engine.layouts import layout_of

__all__ = ["ArchiveInfo", "ImageLoader", "inspect_archive"]


class ImageLoader:
    """Makes sure a verified archive's image is loaded; returns its id."""

    def __init__(
        self,
        docker_client,
        state_dir: Path,
        *,
        max_expanded_bytes: int = 8 * 1024**3,
        cache_max_bytes: int | None = None,
        busy: Callable[[], Iterable[str]] = tuple,
        grace_s: float = 60.0,
        calls: DockerCalls | None = None,
    ):
        """``busy()`` names the images unfinished jobs use (never collected); ``calls`` makes the
        per-job inspect (the runner's, shared; by default made from the client)."""
        self.client = docker_client
        self.calls = calls or docker_calls(docker_client)
        self.max_expanded_bytes = max_expanded_bytes
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.map_path = self.state_dir / "images.json"
        self.cache = LoadedImages(docker_client, self.state_dir / "loaded.json",
                                  max_bytes=cache_max_bytes, grace_s=grace_s)
        self._busy = busy
        self._lock = threading.Lock()

    def ensure_loaded(self, archive: VerifiedArchive) -> str:
        """Image id ("sha256:...") of the archive's one image, loading it if Docker lacks it.

        An archive with an ``expanded`` tar (decompressed while it downloaded) is loaded
        from that tar, which is then removed whatever happens: it is used once.
        """
        try:
            return self._ensure_loaded(archive)
        finally:
            if archive.expanded is not None:
                archive.expanded.unlink(missing_ok=True)

    def _ensure_loaded(self, archive: VerifiedArchive) -> str:
        with self._lock:
            known = self._read_map().get(archive.sha256)
            attrs = self._inspect(known) if known else None  # one inspect: exists, and its layout
            if known and attrs is not None:
                self.cache.used(known)
                layout_of(attrs)  # an unknown layout label: IMAGE_INVALID, before the query
                return known
            # Checked while it downloaded (one pass), else now; the cap is the same either way.
            info = archive.info
            if info is None or info.expanded_bytes > self.max_expanded_bytes:
                info = inspect_archive(archive.path, max_expanded_bytes=self.max_expanded_bytes)
            if self._exists(info.image_id):
                self.cache.used(info.image_id)
            else:
                # The expanded tar only with the download's own verdict (the same bytes).
                expanded = archive.expanded if info is archive.info else None
                self._load(expanded or archive.path, info)
                self.cache.loaded(info.image_id)
            mapping = self._read_map()
            mapping[archive.sha256] = info.image_id
            write_json(self.map_path, mapping)
            self._check_layout(info.image_id)
            self._collect(keep=info.image_id)
            return info.image_id

    def _check_layout(self, image_id: str) -> None:
        """An unknown layout label fails the job here, before its query runs or is paid."""
        try:
            attrs = self.calls.inspect_image(image_id)
        except docker.errors.APIError as exc:
            raise ImageFailure(f"Docker could not inspect image {image_id}: {exc.explanation}") from exc
        layout_of(attrs)

    def _inspect(self, image_id: str) -> dict | None:
        """The image's inspect, or None when Docker lacks it."""
        try:
            return self.calls.inspect_image(image_id)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            raise ImageFailure(f"Docker could not inspect image {image_id}: {exc.explanation}") from exc

    def _collect(self, keep: str) -> None:
        removed = set(self.cache.collect([keep, *self._busy()]))
        if removed:
            mapping = {k: v for k, v in self._read_map().items() if v not in removed}
            write_json(self.map_path, mapping)

    # -- docker -----------------------------------------------------------

    def _exists(self, image_id: str) -> bool:
        try:
            self.client.images.get(image_id)
            return True
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.APIError as exc:
            raise ImageFailure(
                f"Docker could not inspect image {image_id}: {exc.explanation}"
            ) from exc

    def _load(self, path: Path, info: ArchiveInfo) -> None:
        previous = self._tag_targets(info.repo_tags)
        try:
            with open(path, "rb") as stream:
                for chunk in self.client.api.load_image(_LargeReads(stream), quiet=True):
                    if "errorDetail" in chunk or "error" in chunk:
                        detail = chunk.get("errorDetail", {}).get("message") or chunk.get("error")
                        raise ImageFailure(f"docker load refused the archive: {detail}")
        except docker.errors.APIError as exc:
            raise ImageFailure(f"docker load refused the archive: {exc.explanation}") from exc
        finally:
            self._restore_tags(previous)
        if not self._exists(info.image_id):
            raise ImageFailure(
                f"docker load did not produce the image {info.image_id} the manifest names"
            )

    def _tag_targets(self, tags: tuple[str, ...]) -> dict[str, str | None]:
        """Which image each tag points to now (None: the tag does not exist)."""
        targets: dict[str, str | None] = {}
        for tag in tags:
            try:
                targets[tag] = self.client.images.get(tag).id
            except docker.errors.ImageNotFound:
                targets[tag] = None
            except docker.errors.APIError:
                targets[tag] = None
        return targets

    def _restore_tags(self, previous: dict[str, str | None]) -> None:
        """Put back every tag the load re-pointed away from an existing image."""
        for tag, old_id in previous.items():
            if old_id is None:
                continue
            try:
                repo, _, name = tag.rpartition(":")
                self.client.images.get(old_id).tag(repo, name)
            except docker.errors.APIError:
                pass  # best effort: the job runs by id either way

    # -- state ------------------------------------------------------------

    def _read_map(self) -> dict[str, str]:
        try:
            data = json.loads(self.map_path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            return {}  # a damaged map only costs a reload
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


class _LargeReads:
    """A file whose reads are 1 MiB at least: http.client sends a file body in reads of
    8 KiB (5,000+ syscalls and GIL hand-offs for a 42 MiB archive); Docker reads it as it
    arrives. The length is the file's, so the request keeps its Content-Length."""

    _BLOCK = 1024 * 1024

    def __init__(self, stream):
        self._stream = stream
        self._size = os.fstat(stream.fileno()).st_size

    def __len__(self) -> int:
        return self._size

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(-1 if size is None or size < 0 else max(size, self._BLOCK))

