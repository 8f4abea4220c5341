"""Collect the images the engine loaded: a cache size set by the operator, least recently used first.

``<state_dir>/loaded.json`` remembers, for each image the engine itself
loaded (never an image that was in Docker already, such as an operator's
base image), its size and when a job last used it. When their total is over
the cap, the least recently used go first, except images a job still needs:
those the caller names as busy (jobs not yet finished), those used in the
last ``grace_s`` (a job between its load and its container), and those
Docker refuses to remove (a container uses it). So the cap can be exceeded
while every cached image is in use, never otherwise for long.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import docker.errors

__all__ = ["LoadedImages", "write_json"]

log = logging.getLogger(__name__)
_USE_RESOLUTION_S = 1.0  # how fresh a recorded last use is kept without rewriting it


def write_json(path: Path, data: object) -> None:
    """Replace ``path`` atomically with ``data`` as JSON."""
    fd, tmp = tempfile.mkstemp(prefix=path.stem + "-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=1, sort_keys=True)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


class LoadedImages:
    """Size and last use of every image the engine loaded; removes the stale ones over the cap."""

    def __init__(self, docker_client, path: Path, *, max_bytes: int | None, grace_s: float = 60.0):
        self.client = docker_client
        self.path = path
        self.max_bytes = max_bytes
        self.grace_s = grace_s

    def loaded(self, image_id: str) -> None:
        """The engine just loaded ``image_id``: it is now the engine's to collect."""
        try:
            size = int(self.client.images.get(image_id).attrs.get("Size") or 0)
        except docker.errors.APIError:
            size = 0
        entries = self._read()
        entries[image_id] = {"size": size, "last_used": time.time()}
        write_json(self.path, entries)

    def used(self, image_id: str) -> None:
        """A job uses ``image_id`` (a no-op for images the engine did not load)."""
        entries = self._read()
        now = time.time()
        # Within a second of the last record the file is left as it is: the collection's
        # grace is a minute, and every warm job would otherwise rewrite the file.
        if image_id in entries and now - entries[image_id]["last_used"] >= _USE_RESOLUTION_S:
            entries[image_id]["last_used"] = now
            write_json(self.path, entries)

    def collect(self, busy: Iterable[str]) -> list[str]:
        """Remove least recently used images until under the cap; return the removed ids."""
        entries = self._read()
        total = sum(e["size"] for e in entries.values())
        if self.max_bytes is None or total <= self.max_bytes:
            return []
        keep = set(busy)
        recent = time.time() - self.grace_s
        removed = []
        for image_id, entry in sorted(entries.items(), key=lambda kv: kv[1]["last_used"]):
            if total <= self.max_bytes:
                break
            if image_id in keep or entry["last_used"] > recent:
                continue
            if self._remove(image_id):
                removed.append(image_id)
                total -= entry["size"]
                del entries[image_id]
        write_json(self.path, entries)
        return removed

    def _remove(self, image_id: str) -> bool:
        try:
            if self.client.containers.list(all=True, filters={"ancestor": image_id}):
                log.info("image cache: keeping %s: a container uses it", image_id)
                return False
            # force: an image with several tags is refused without it (a child image still is).
            self.client.images.remove(image_id, force=True)
        except docker.errors.ImageNotFound:
            return True
        except docker.errors.APIError as exc:
            log.info("image cache: keeping %s: %s", image_id, exc.explanation)
            return False
        log.info("image cache: removed %s (least recently used)", image_id)
        return True

    def _read(self) -> dict[str, dict[str, float]]:
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {
            str(k): {"size": int(v.get("size", 0)), "last_used": float(v.get("last_used", 0))}
            for k, v in data.items()
            if isinstance(v, dict)
        }

