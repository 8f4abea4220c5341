"""Where a job finds its input and puts its output: the platform conventions ("layouts").

An image names its convention in the label ``org.computetodata.layout`` of its
config (so the approved sha256 covers it); no label means ``vana``. Every
layout gets the same data: the query's ``query_results.db`` and, for the
platforms that expect them, files derived from it after the query (CSV, with
or without a header row, bounded by the result cap), mounted read-only where
that platform puts inputs; the job's capped output filesystem is mounted where
that platform expects outputs. The sandbox is the same for every layout: only
the mount targets and the derived files differ.

The staging root is the job's input folder (``scratch/<job>/input``, where the
query writes ``query_results.db``); a layout's mounts are sub-folders of it,
made before the container is created, filled after the query.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from engine.errors import ImageFailure, QueryFailure, RunFailure
from engine.storage import is_disk_full, storage_full

__all__ = ["DEFAULT_LAYOUT", "JOB_ENV_VERSION", "LAYOUTS", "LAYOUT_LABEL", "Layout", "job_env",
           "layout_of", "prepare_dirs", "stage_inputs", "volume_covers"]

LAYOUT_LABEL = "org.computetodata.layout"
# Bumped whenever a variable of the job's environment changes meaning or goes away.
JOB_ENV_VERSION = "1"
DB_NAME = "query_results.db"
# What covers an image's VOLUME: empty, read-only, nothing runs from it.
_COVER = "ro,noexec,nosuid,nodev,size=4k,mode=0555"
# Ocean names each input by its asset's DID; the engine's one input is the query's results.
OCEAN_DID = "results"

FileKind = Literal["db", "csv", "csv-bare", "params", "ddo"]


@dataclass(frozen=True)
class Layout:
    """One platform's places; paths of ``mounts`` and ``files`` are under the staging root."""

    name: str
    input_path: str  # the job's INPUT_PATH
    output_path: str  # where the output filesystem is mounted (OUTPUT_PATH)
    mounts: tuple[tuple[str, str], ...]  # (container path, staging sub-folder; "" = the root)
    files: tuple[tuple[str, FileKind], ...] = ()  # written after the query
    env: tuple[tuple[str, str], ...] = ()  # the platform's own variables

    @property
    def input_targets(self) -> tuple[str, ...]:
        return tuple(target for target, _ in self.mounts)


LAYOUTS: Mapping[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("vana", "/mnt/input", "/mnt/output", (("/mnt/input", ""),)),
        Layout("decentriq", "/input", "/output", (("/input", "decentriq"),),
               (("decentriq/results/dataset.csv", "csv-bare"),)),
        Layout("ocean", "/data/inputs", "/data/outputs",
               (("/data/inputs", "ocean/inputs"), ("/data/ddos", "ocean/ddos")),
               ((f"ocean/inputs/{OCEAN_DID}/0", "csv"), (f"ocean/inputs/{DB_NAME}", "db"),
                ("ocean/inputs/algoCustomData.json", "params"), (f"ocean/ddos/{OCEAN_DID}", "ddo")),
               (("DIDS", json.dumps([OCEAN_DID])),)),
        Layout("parcel", "/parcel/data/in", "/parcel/data/out", (("/parcel/data/in", "parcel"),),
               (("parcel/results.csv", "csv"), (f"parcel/{DB_NAME}", "db"))),
    )
}
DEFAULT_LAYOUT = LAYOUTS["vana"]


def layout_of(image_attrs: Mapping[str, Any]) -> Layout:
    """The layout an image's label names (``docker inspect`` attributes); IMAGE_INVALID if unknown."""
    labels = (image_attrs.get("Config") or {}).get("Labels") or {}
    name = labels.get(LAYOUT_LABEL)
    if name is None:
        return DEFAULT_LAYOUT
    layout = LAYOUTS.get(name)
    if layout is None:
        # The label's value is the builder's own text, not data: quoted, but bounded.
        raise ImageFailure(
            f"the image's {LAYOUT_LABEL} label names an unknown layout {name[:40]!r}; "
            f"known layouts: {', '.join(sorted(LAYOUTS))}", code="IMAGE_INVALID")
    return layout


def volume_covers(image_attrs: dict, layout: Layout) -> dict[str, str]:
    """A read-only empty tmpfs over each VOLUME the image declares (Docker would
    otherwise give each a writable, uncapped anonymous volume)."""
    writable = (PurePosixPath(layout.output_path), PurePosixPath("/tmp"))
    engine_mounts = (*writable, *map(PurePosixPath, layout.input_targets))
    covers = {}
    for declared in sorted((image_attrs.get("Config") or {}).get("Volumes") or {}):
        path = PurePosixPath("/", declared)
        if ".." in path.parts:
            raise RunFailure(f"the image declares an invalid VOLUME {declared!r}",
                             code="IMAGE_INVALID")
        if path in writable:
            continue  # the engine's own mount is there already
        if any(path == mine or path in mine.parents for mine in engine_mounts):
            raise RunFailure(
                f"the image declares VOLUME {str(path)!r}, which would hide the job's "
                f"input or output ({', '.join(layout.input_targets)}, {layout.output_path})",
                code="IMAGE_INVALID")
        covers[str(path)] = _COVER
    return covers


def job_env(layout: Layout, job_id: str, compute_job_id: int, refiner_id: int) -> dict[str, str]:
    """The job's environment, contract version ``C2D_JOB_ENV_VERSION`` (job_template/README.md).

    ``DEV_MODE=1``: the engine has run the query and mounted its results, so a job
    written for Vana's template reads them instead of calling a query engine itself.
    """
    return {
        "C2D_JOB_ENV_VERSION": JOB_ENV_VERSION,
        "C2D_LAYOUT": layout.name,
        "C2D_JOB_ID": job_id,
        "INPUT_PATH": layout.input_path,
        "OUTPUT_PATH": layout.output_path,
        "COMPUTE_JOB_ID": str(compute_job_id) if compute_job_id else job_id,
        "DATA_REFINER_ID": str(refiner_id),
        "DEV_MODE": "1",
        **dict(layout.env),
    }


def prepare_dirs(layout: Layout, root: Path) -> dict[str, Path]:
    """Make the layout's input folders (bind sources must exist at create); target -> folder."""
    folders = {}
    for target, sub in layout.mounts:
        folder = root / sub if sub else root
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)
        folders[target] = folder
    return folders


def stage_inputs(layout: Layout, root: Path, params: Any, max_bytes: int) -> None:
    """After the query: write the layout's derived files from ``root/query_results.db``.

    Each CSV is at most ``max_bytes`` (the result cap) and is written as it is
    read: over the cap the job fails RESULT_TOO_LARGE before anything runs; a
    full engine disk is STORAGE_FULL.
    """
    for rel, kind in layout.files:
        try:
            _stage(root, root / rel, kind, params, max_bytes)
        except (OSError, sqlite3.Error) as exc:
            if is_disk_full(exc):  # the engine's disk, not the job, is at fault
                raise storage_full("writing the job's input files") from exc
            raise


def _stage(root: Path, path: Path, kind: FileKind, params: Any, max_bytes: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o755)
    path.unlink(missing_ok=True)
    if kind == "db":
        os.link(root / DB_NAME, path)  # the same file, no copy (same folder tree, same fs)
        return
    if kind in ("csv", "csv-bare"):
        _write_csv(root / DB_NAME, path, header=kind == "csv", max_bytes=max_bytes)
    elif kind == "params":
        path.write_text(json.dumps(params if params is not None else []))
    else:  # ddo: the minimal document Ocean's algorithms read about their input
        path.write_text(json.dumps({"id": OCEAN_DID, "services": [{"files": ["0"]}]}))
    path.chmod(0o444)


class _Capped:
    """A text sink that refuses to grow past ``limit`` bytes of UTF-8."""

    def __init__(self, stream, limit: int):
        self.stream, self.limit, self.size = stream, limit, 0

    def write(self, text: str) -> int:
        self.size += len(text.encode())
        if self.size > self.limit:
            raise QueryFailure(f"the results as CSV are over the {self.limit} byte result cap",
                               code="RESULT_TOO_LARGE")
        return self.stream.write(text)


def _write_csv(db: Path, path: Path, *, header: bool, max_bytes: int) -> None:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        cursor = conn.execute("SELECT * FROM results")
        with open(path, "w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(_Capped(stream, max_bytes))
            if header:
                writer.writerow([column[0] for column in cursor.description])
            while rows := cursor.fetchmany(512):
                writer.writerows([_cell(v) for v in row] for row in rows)
    finally:
        conn.close()


def _cell(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()  # CSV has no bytes: a blob is its hex text
    return "" if value is None else value
