"""Load a verified image archive into Docker, exactly one image, known by its id.

Before Docker sees the archive it is inspected: a tar (maybe gzipped) whose
``manifest.json`` names exactly one image config. The image id is the sha256
of that config, so the engine knows the id before loading and runs the
container by id, never by tag. A tag the archive re-pointed is put back on
the image it named before the load, so an archive cannot hijack an operator's
tag such as ``python:3.12-slim``. New tags are left alone: removing an
image's last tag would delete the image.

``<state_dir>/images.json`` maps archive sha256 -> image id, so a second job
with the same instruction does not load again while the image still exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import docker.errors

from engine.errors import ImageFailure
from engine.fetch import VerifiedArchive

__all__ = ["ArchiveInfo", "ImageLoader", "inspect_archive"]

_MAX_MANIFEST_BYTES = 1024 * 1024
_MAX_CONFIG_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class ArchiveInfo:
    """What the archive's manifest says: the one image id and the tags it carries."""

    image_id: str
    repo_tags: tuple[str, ...]


def inspect_archive(path: Path) -> ArchiveInfo:
    """Check ``path`` is a docker-save archive holding exactly one image; ImageFailure otherwise."""
    try:
        with tarfile.open(path, mode="r:*") as tar:
            members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
            entries = _read_manifest(tar, members)
            configs = sorted({str(e.get("Config", "")) for e in entries})
            if len(configs) != 1 or not configs[0]:
                raise ImageFailure(
                    f"the archive holds {len(configs)} images; exactly one is required"
                )
            image_id = _config_digest(tar, members, configs[0])
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ImageFailure(f"the archive is not a readable (gzipped) tar: {exc}") from exc
    tags = tuple(
        sorted({t for e in entries for t in (e.get("RepoTags") or []) if isinstance(t, str)})
    )
    return ArchiveInfo(image_id=image_id, repo_tags=tags)


def _read_manifest(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo]) -> list[dict]:
    member = members.get("manifest.json")
    if member is None or not member.isfile():
        raise ImageFailure("the archive has no manifest.json: not a `docker save` archive")
    if member.size > _MAX_MANIFEST_BYTES:
        raise ImageFailure("the archive's manifest.json is implausibly large")
    try:
        entries = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
    except ValueError as exc:
        raise ImageFailure("the archive's manifest.json is not valid JSON") from exc
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ImageFailure("the archive's manifest.json is not a list of images")
    return entries


def _config_digest(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str) -> str:
    member = members.get(name)
    if member is None or not member.isfile() or member.size > _MAX_CONFIG_BYTES:
        raise ImageFailure(f"the archive lacks the image config {name!r} its manifest names")
    data = tar.extractfile(member).read()  # type: ignore[union-attr]
    return "sha256:" + hashlib.sha256(data).hexdigest()


class ImageLoader:
    """Makes sure a verified archive's image is loaded; returns its id."""

    def __init__(self, docker_client, state_dir: Path):
        self.client = docker_client
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.map_path = self.state_dir / "images.json"
        self._lock = threading.Lock()

    def ensure_loaded(self, archive: VerifiedArchive) -> str:
        """Image id ("sha256:...") of the archive's one image, loading it if Docker lacks it."""
        with self._lock:
            known = self._read_map().get(archive.sha256)
            if known and self._exists(known):
                return known
            info = inspect_archive(archive.path)
            if not self._exists(info.image_id):
                self._load(archive.path, info)
            mapping = self._read_map()
            mapping[archive.sha256] = info.image_id
            self._write_map(mapping)
            return info.image_id

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
                for chunk in self.client.api.load_image(stream, quiet=True):
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

    def _write_map(self, mapping: dict[str, str]) -> None:
        fd, tmp = tempfile.mkstemp(prefix="images-", suffix=".json", dir=self.state_dir)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(mapping, out, indent=1, sort_keys=True)
            os.replace(tmp, self.map_path)
        finally:
            Path(tmp).unlink(missing_ok=True)
