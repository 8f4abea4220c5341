"""Helpers the engine bench shares: progress lines, timings, images made cold on purpose.

- ``say``: one flushed progress line.
- ``median_or_nan``: a median that tolerates an empty list.
- ``flatten_image``: re-imports an image as one fresh layer holding a nonce, so
  no other image on the host shares its layers and ``docker load`` of its
  archive is a truly cold load (an image whose layers Docker already holds
  loads in a fraction of the time, which would flatter both sides).
- ``print_table``: the summary table.
"""

from __future__ import annotations

import io
import json
import math
import statistics
import subprocess
import tarfile
import uuid
from collections.abc import Sequence

__all__ = ["flatten_image", "median_or_nan", "paired_ratio", "print_table", "say"]


def say(line: str) -> None:
    print(f"==> {line}", flush=True)


def median_or_nan(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def paired_ratio(ours: Sequence[float], bare: Sequence[float]) -> float:
    """Median of per-round ratios: interleaved rounds share the machine's load of the moment."""
    return median_or_nan([o / b for o, b in zip(ours, bare, strict=True)])


def _changes(config: dict) -> list[str]:
    """Dockerfile instructions that restore what `docker export` drops from the config."""
    changes = [f"ENV {key}={json.dumps(value)}" for key, _, value in
               (item.partition("=") for item in config.get("Env") or [])]
    if config.get("Entrypoint"):
        changes.append(f"ENTRYPOINT {json.dumps(config['Entrypoint'])}")
    if config.get("Cmd"):
        changes.append(f"CMD {json.dumps(config['Cmd'])}")
    if config.get("WorkingDir"):
        changes.append(f"WORKDIR {config['WorkingDir']}")
    if config.get("User"):
        changes.append(f"USER {config['User']}")
    return changes


def _docker(*args: str, input_bytes: bytes | None = None) -> str:
    proc = subprocess.run(["docker", *args], input=input_bytes, capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"docker {args[0]} failed: {proc.stderr.decode(errors='replace')[-800:]}")
    return proc.stdout.decode().strip()


def flatten_image(source_ref: str, tag: str) -> str:
    """Import ``source_ref``'s filesystem plus a nonce file as ``tag`` (one new layer); its id."""
    config = json.loads(_docker("image", "inspect", source_ref))[0]["Config"]
    container = _docker("create", source_ref)
    try:
        nonce = uuid.uuid4().hex
        # `docker cp -` takes a tar on stdin; a one-file tar built in memory.
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("bench-nonce")
            info.size = len(nonce)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(nonce.encode()))
        _docker("cp", "-", f"{container}:/", input_bytes=buf.getvalue())
        change_args = [arg for change in _changes(config) for arg in ("--change", change)]
        export = subprocess.Popen(["docker", "export", container], stdout=subprocess.PIPE)
        try:
            imported = subprocess.run(["docker", "import", *change_args, "-", tag],
                                      stdin=export.stdout, capture_output=True, check=False)
        finally:
            assert export.stdout is not None
            export.stdout.close()
            export.wait()
        if imported.returncode != 0 or export.returncode != 0:
            raise RuntimeError(f"flattening {source_ref} failed: "
                               f"{imported.stderr.decode(errors='replace')[-800:]}")
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
    return _docker("image", "inspect", "-f", "{{.Id}}", tag)


def print_table(rows: list[tuple[str, float, float, str]], unit: str = "s") -> None:
    """name | ours median | bare median | ratio | target."""
    header = ("bench", f"ours median {unit}", f"bare median {unit}", "ratio", "target")
    body = [(name, f"{ours:.3f}", f"{bare:.3f}", f"{ours / bare:.2f}x", target)
            for name, ours, bare, target in rows]
    widths = [max(len(str(r[i])) for r in (header, *body)) for i in range(len(header))]
    for row in (header, tuple("-" * w for w in widths), *body):
        print("  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)), flush=True)
