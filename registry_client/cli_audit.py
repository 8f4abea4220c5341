"""`registry instruction inspect ID`: what an instruction's image runs, read without running it.

By default the engine audits it (``GET /instructions/{id}/inspect``, public:
no wallet needed); with ``--archive FILE`` this process audits a local copy
with the same library (engine/audit.py), after checking the file's sha256
against the chain. The human summary puts the warnings first; everything the
image supplies (labels, paths, history, source text) is printed with control
characters replaced, so an image cannot drive the reviewer's terminal.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import click

from registry_client.cli_common import ID, CliContext, Url, pass_cli
from registry_client.errors import ManifestError, RegistryError

__all__ = ["format_report", "instruction_inspect"]

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _safe(value: Any, limit: int = 200) -> str:
    """Image-supplied text for the terminal: control characters replaced, one line, bounded."""
    text = _CONTROL.sub("?", str(value)).replace("\n", " ").replace("\t", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def _argv(value: list[str] | None) -> str:
    return "-" if value is None else json.dumps([_safe(v) for v in value])


def format_report(report: dict[str, Any], *, show_sources: bool = False) -> str:
    image, files = report["image"], report["files"]
    lines = [(f"instruction {report['instruction_id']}  sha256 {report['sha256']}  "
             f"({_size(report['archive_bytes'])} archive)"), f"url {_safe(report['url'], 400)}", ""]
    warnings = report.get("warnings") or []
    lines.append("warnings:" if warnings else "warnings: none")
    lines += [f"  ! {w['code']}: {_safe(w['message'], 400)}" for w in warnings]
    oci = image.get("oci") or {}
    lines += [
        "",
        f"entrypoint:  {_argv(image['entrypoint'])}",
        f"cmd:         {_argv(image['cmd'])}",
        f"user:        {_safe(image['user']) or '(root)'}",
        f"working dir: {_safe(image['working_dir']) or '/'}",
        f"layout:      {_safe(image['layout'])}",
        f"source:      {_safe(oci.get('source') or '-')}   revision: {_safe(oci.get('revision') or '-')}",
        f"description: {_safe(oci.get('description') or '-', 400)}",
        f"env names:   {', '.join(_safe(n) for n in image['env_names']) or '-'}",
        f"ports:       {', '.join(map(_safe, image['exposed_ports'])) or '-'}",
        f"volumes:     {', '.join(map(_safe, image['volumes'])) or '-'}",
        "labels:" + ("" if image["labels"] else " -"),
    ]
    lines += [f"  {_safe(k, 80)} = {_safe(v)}" for k, v in sorted(image["labels"].items())]
    lines += ["", "layers:", f"  {'SIZE':>10}  CREATED BY"]
    lines += [f"  {('-' if row['empty_layer'] else _size(row['size'])):>10}  {_safe(row['created_by'] or '-', 110)}"
              for row in report["layers"]]
    lines += ["", (f"files: {files['count']} ({_size(files['total_bytes'])}), "
              f"{files['executables']['count']} executable; setuid: {len(files['setuid'])}, "
              f"setgid: {len(files['setgid'])}")]
    lines += [f"  setuid {_safe(p)}" for p in files["setuid"]] + [f"  setgid {_safe(p)}" for p in files["setgid"]]
    lines.append("largest:")
    lines += [f"  {_size(row['size']):>10}  {_safe(row['path'])}" for row in files["largest"]]
    lines += ["", "sources:" + ("" if report["sources"] else " none")]
    for src in report["sources"]:
        cut = ", truncated" if src["truncated"] else ""
        lines.append(f"  {_safe(src['path'])} ({_size(src['size'])}{cut})")
        if show_sources:
            lines += [f"    | {_CONTROL.sub('?', line)}" for line in src["text"].splitlines()]
    packages = report["packages"]
    lines += ["", f"packages: {len(packages['debian'])} Debian, {len(packages['python'])} Python"
              + (" (more not listed)" if packages.get("truncated") else "")]
    if packages["python"]:
        lines.append("  python: " + ", ".join(f"{_safe(p['name'], 60)} {_safe(p['version'], 40)}"
                                             for p in packages["python"][:50]))
    return "\n".join(lines)


def _local_audit(obj: CliContext, instruction_id: int, archive: Path) -> dict[str, Any]:
    """Audit a local archive with engine/audit.py once its sha256 matches the chain's."""
    from engine.audit import audit_archive
    from engine.errors import EngineError
    from registry_client.contracts import sha256_file

    found = obj.connect().instruction(instruction_id)
    digest = sha256_file(archive)
    if digest != found.hash.lower():
        raise RegistryError(f"the sha256 of {archive.name} differs from instruction {instruction_id}'s "
                            "on-chain hash: not audited", code="IMAGE_HASH_MISMATCH")
    try:
        report = audit_archive(archive)
    except EngineError as exc:
        raise RegistryError(f"{exc.code}: {exc.message}", code=exc.code) from exc
    return {"instruction_id": instruction_id, "sha256": "0x" + digest, "url": found.url,
            "archive_bytes": archive.stat().st_size, **report, "audited_at": time.time()}


def _engine_audit(obj: CliContext, instruction_id: int, engine_url: str) -> dict[str, Any]:
    from registry_client.engine_client import EngineClient

    try:  # the route is unsigned: the manifest only names the domain the client is bound to
        deployment = obj.deployment()
        chain_id, registry = deployment.chain_id, deployment.address("compute_instruction_registry")
    except ManifestError:
        chain_id, registry = 0, "0x" + "00" * 20
    with EngineClient(engine_url, None, chain_id, registry) as client:
        return client.inspect_instruction(instruction_id)


@click.command("inspect")
@click.argument("instruction_id", metavar="ID", type=ID)
@click.option("--engine", "engine_url", envvar="REGISTRY_ENGINE_URL", default="http://127.0.0.1:8000",
              show_default=True, metavar="URL", type=Url(),
              help="Compute engine that audits the image (env REGISTRY_ENGINE_URL).")
@click.option("--archive", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Audit this local archive instead (its sha256 must match the chain's).")
@click.option("--show-sources", is_flag=True, help="Print the job's source files' text too.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (same as the global --json).")
@pass_cli
def instruction_inspect(obj: CliContext, instruction_id: int, engine_url: str, archive: Path | None,
                        show_sources: bool, as_json: bool) -> None:
    """Audit an instruction's image without running it: what a DLP owner reads before approving.

    Shows entrypoint, cmd, user, labels, layers, the largest and setuid files,
    the job's own source files, packages, and warnings (runs as root, setuid
    files, volumes, ports, network tools, fetches at run time).

    \b
    Example:
      registry instruction inspect 1 --engine http://127.0.0.1:8000
      registry instruction inspect 1 --archive job.tar.gz --show-sources
    """
    report = (_local_audit(obj, instruction_id, archive) if archive is not None
              else _engine_audit(obj, instruction_id, engine_url))
    if as_json or obj.json_output:
        click.echo(json.dumps(report, sort_keys=True))
    else:
        click.echo(format_report(report, show_sources=show_sources))
