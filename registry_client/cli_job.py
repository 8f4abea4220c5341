"""`registry job ...`: submit signed jobs to a compute engine, follow them, fetch their artifacts.

A thin layer over `EngineClient`. The chain id and registry address the
signatures are bound to come from the deployment manifest (`--deployment`);
the engine URL from `--engine` (env `REGISTRY_ENGINE_URL`); the wallet from
`--keystore FILE | --key-env VAR` (it signs the submit and every read).
`wait` and `submit --wait` print each step as it happens; a job that ends
FAILED or CANCELLED exits 1.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from registry_client.cli_common import (
    ID,
    NONCE,
    CliContext,
    CliError,
    Url,
    load_wallet,
    pass_cli,
    wallet_options,
)
from registry_client.cli_money import MAX_TIMEOUT, open_compute_job
from registry_client.cli_types import COMPUTE_JOB, Seconds, Uint256
from registry_client.errors import InputError

if TYPE_CHECKING:  # httpx and eth-account load when a job command runs
    from registry_client.engine_client import EngineClient

__all__ = ["format_job", "format_step", "job"]

F = TypeVar("F", bound=Callable[..., Any])


@click.group()
def job() -> None:
    """Run jobs on a compute engine: submit, follow, download (signed by your wallet).

    \b
    Example:
      export REGISTRY_ENGINE_URL=http://127.0.0.1:8000 BUILDER_KEY=0x...
      registry job submit --instruction 1 --refiner 1 \\
          --query "SELECT locale, count(*) AS n FROM users GROUP BY locale" --wait --key-env BUILDER_KEY
      registry job download JOB_ID --out results --key-env BUILDER_KEY
    """



JOB_ID = click.argument("job_id", metavar="JOB_ID")


def engine_options(f: F) -> F:
    """`--engine URL` plus the wallet options: every job command signs."""
    f = wallet_options(f)
    return click.option(
        "--engine", "engine_url", envvar="REGISTRY_ENGINE_URL", default="http://127.0.0.1:8000",
        show_default=True, metavar="URL", type=Url(), help="Base URL of the compute engine (env REGISTRY_ENGINE_URL).",
    )(f)


def _client(obj: CliContext, engine_url: str, keystore: str | None, key_env: str | None,
            account: Any | None = None) -> EngineClient:
    from registry_client.engine_client import EngineClient

    account = account or load_wallet(keystore, key_env)
    deployment = obj.deployment()
    return EngineClient(engine_url, account, deployment.chain_id,
                        deployment.address("compute_instruction_registry"))


def _short(value: str | None, n: int = 12) -> str:
    if not value:
        return ""
    head, _, tail = value.rpartition(":")
    return f"{head + ':' if head else ''}{tail[:n]}"


def _step_detail(status: str, job: dict[str, Any]) -> str:
    report = job.get("access_report") or {}
    details = {
        "VERIFYING": f"block {job['block_number']}" if job.get("block_number") is not None else "",
        "FETCHING": f"sha256 {_short(job.get('image_sha256'))}" if job.get("image_sha256") else "",
        "LOADING": f"image {_short(job.get('image_id'))}" if job.get("image_id") else "",
        "QUERYING": f"{report['row_count']} rows" if "row_count" in report else "",
        "RUNNING": _price_detail(job),
        "COLLECTING": f"exit {job['exit_code']}" if job.get("exit_code") is not None else "",
        "FAILED": f"{(job.get('failure') or {}).get('code', '')}: {(job.get('failure') or {}).get('message', '')}",
    }
    return details.get(status, "")


def _price_detail(job: dict[str, Any]) -> str:
    if job.get("price_wei") is None:
        return ""
    payment = job.get("payment") or {}
    paid = {"charge": f", charged to compute job {payment.get('compute_job_id')}",
            "prepaid": f", already paid by compute job {payment.get('compute_job_id')}"}.get(payment.get("decision"), "")
    return f"price {job['price_wei']} wei{paid}"


def format_step(job: dict[str, Any], step: dict[str, Any]) -> str:
    """One progress line: `  VERIFYING   +0.12s  block 42`."""
    elapsed = float(step["at"]) - float(job.get("created_at") or step["at"])
    detail = _step_detail(step["status"], job)
    return f"  {step['status']:<11} +{elapsed:.2f}s  {detail}".rstrip()


def format_job(job: dict[str, Any]) -> str:
    lines = [f"job {job['id']}  {job['status']}  (instruction {job['instruction_id']}, refiner {job['refiner_id']})"]
    lines += [format_step(job, s) for s in job.get("steps") or []]
    if job.get("failure"):
        lines.append(f"failure: {job['failure']['code']}: {job['failure']['message']}")
    if job.get("attestation"):
        lines.append(f"attested by {job['attestation'].get('signer')}")
    return "\n".join(lines)


def _follow(obj: CliContext, client: EngineClient, job_id: str, timeout_s: float, poll_s: float) -> dict[str, Any]:
    # Progress goes to stderr under --json so stdout stays one JSON object.
    def show(current: dict[str, Any], step: dict[str, Any]) -> None:
        click.echo(format_step(current, step), err=obj.json_output)

    final = client.wait(job_id, poll_s=poll_s, timeout_s=timeout_s, on_change=show)
    obj.output(final, f"job {final['id']} {final['status']}")
    if final["status"] != "SUCCEEDED":
        failure = final.get("failure") or {}
        raise CliError(f"job {final['id']} {final['status']}"
                       + (f": {failure.get('code')}: {failure.get('message')}" if failure else ""))
    return final


def _wait_options(f: F) -> F:
    f = click.option("--poll", "poll_s", type=Seconds(minimum=0.05, maximum=3600), default=0.5, show_default=True,
                     help="Seconds between status checks.")(f)
    return click.option("--timeout", "timeout_s", type=Seconds(minimum=0), default=3600, show_default=True,
                        help="Give up waiting after this many seconds.")(f)


def _parse_params(text: str | None) -> list | dict | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InputError(f"--params is not valid JSON: {exc}") from exc
    if not isinstance(value, (list, dict)):
        raise InputError("--params must be a JSON list (positional ?) or object (named :name)")
    return value


@job.command("submit")
@click.option("--instruction", "instruction_id", required=True, type=ID,
              help="Approved compute instruction id.")
@click.option("--refiner", "refiner_id", required=True, type=ID, help="Data refiner id.")
@click.option("--query", required=True, metavar="SQL", help="One read-only SELECT over the refiner's data.")
@click.option("--params", "params_text", metavar="JSON", help='Query params: a JSON list or object, e.g. \'["en"]\'.')
@click.option("--nonce", type=NONCE, help="Request nonce (a uint256) [default: time-based].")
@click.option("--deadline", "deadline_s", type=Uint256(minimum=1, maximum=10 * 365 * 24 * 3600), default=600,
              show_default=True,
              help="Seconds the signed request stays valid.")
@click.option("--compute-job", "compute_job", metavar="ID|auto|none", type=COMPUTE_JOB, default="auto",
              show_default=True, help="Your on-chain ComputeEngine job paying the price: an id; auto = open one "
              "when your permissions on the refiner are priced; none = a free job.")
@click.option("--max-timeout", "max_timeout_s", type=MAX_TIMEOUT, default=600, show_default=True,
              help="Seconds the container may run, for an on-chain job opened here (the engine's own cap wins).")
@click.option("--recipient", metavar="ADDR", help="Seal the results to this wallet instead of yours "
              "(Parcel's Bob); needs --recipient-key. You then see only names and sizes.")
@click.option("--recipient-key", "recipient_key", metavar="HEX",
              help="The recipient's public key (`registry wallet public-key`, run by them).")
@click.option("--wait", "wait_", is_flag=True, help="Follow the job until it ends, printing each step.")
@_wait_options
@engine_options
@pass_cli
def submit(obj: CliContext, instruction_id: int, refiner_id: int, query: str, params_text: str | None,
           nonce: int | None, deadline_s: int, compute_job: int | None, max_timeout_s: int,
           recipient: str | None, recipient_key: str | None, wait_: bool,
           timeout_s: float, poll_s: float, engine_url: str, keystore: str | None, key_env: str | None) -> None:
    """Sign and submit a job; prints its id. A priced query is charged to an on-chain job of yours.

    First `registry deposit AMOUNT`; the engine charges the price from it before the run.

    \b
    Example:
      registry job submit --instruction 1 --refiner 1 --key-env BUILDER_KEY \\
          --query "SELECT locale, count(*) AS n FROM users WHERE age > ? GROUP BY locale" --params '[30]'
    """
    params = _parse_params(params_text)
    if (recipient is None) != (recipient_key is None):
        raise InputError("--recipient and --recipient-key go together")
    account = load_wallet(keystore, key_env)
    if compute_job is None:
        compute_job = open_compute_job(obj, account, instruction_id, refiner_id, max_timeout_s)
    with _client(obj, engine_url, keystore, key_env, account) as client:
        created = client.submit(instruction_id, refiner_id, query, params, nonce=nonce,
                                deadline=int(time.time()) + deadline_s, compute_job_id=compute_job,
                                recipient=recipient, recipient_public_key=recipient_key)
        if not wait_:
            obj.output(created, created["id"])
            return
        click.echo(f"job {created['id']} submitted", err=obj.json_output)
        _follow(obj, client, created["id"], timeout_s, poll_s)


@job.command("status")
@JOB_ID
@engine_options
@pass_cli
def status(obj: CliContext, job_id: str, engine_url: str, keystore: str | None, key_env: str | None) -> None:
    """Show a job: status, steps with timings, failure code.

    \b
    Example:
      registry job status 3f2a... --key-env BUILDER_KEY
    """
    with _client(obj, engine_url, keystore, key_env) as client:
        current = client.status(job_id)
    obj.output(current, format_job(current))


@job.command("wait")
@JOB_ID
@_wait_options
@engine_options
@pass_cli
def wait(obj: CliContext, job_id: str, timeout_s: float, poll_s: float, engine_url: str,
         keystore: str | None, key_env: str | None) -> None:
    """Follow a job until it ends, printing each step; exit 1 unless it SUCCEEDED.

    \b
    Example:
      registry job wait 3f2a... --timeout 600 --key-env BUILDER_KEY
    """
    with _client(obj, engine_url, keystore, key_env) as client:
        _follow(obj, client, job_id, timeout_s, poll_s)


@job.command("artifacts")
@JOB_ID
@engine_options
@pass_cli
def artifacts(obj: CliContext, job_id: str, engine_url: str, keystore: str | None, key_env: str | None) -> None:
    """List a job's artifacts: name, size, sha256, media type.

    \b
    Example:
      registry job artifacts 3f2a... --key-env BUILDER_KEY
    """
    with _client(obj, engine_url, keystore, key_env) as client:
        items = client.artifacts(job_id)
    text = "\n".join(f"{a['name']}\t{a['size']}\t{a.get('sha256') or '-'}\t{a['media_type']}" for a in items)
    obj.output({"job_id": job_id, "artifacts": items}, text or "(no artifacts)")


@job.command("download")
@JOB_ID
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Directory to write the artifacts into (sub-folders kept).")
@click.option("--zip", "as_zip", is_flag=True, help="Download one zip of every artifact instead "
              "(of sealed jobs: the sealed files as stored, not opened).")
@engine_options
@pass_cli
def download(obj: CliContext, job_id: str, out_dir: Path, as_zip: bool, engine_url: str,
             keystore: str | None, key_env: str | None) -> None:
    """Download a job's artifacts, each checked against its sha256; sealed ones opened with your wallet.

    \b
    Example:
      registry job download 3f2a... --out results --key-env BUILDER_KEY
    """
    with _client(obj, engine_url, keystore, key_env) as client:
        if as_zip:
            paths = [client.download_zip(job_id, out_dir / f"job-{job_id}-artifacts.zip")]
        else:
            paths = client.download(job_id, out_dir)
    obj.output({"job_id": job_id, "files": [str(p) for p in paths]}, "\n".join(str(p) for p in paths))


@job.command("cancel")
@JOB_ID
@engine_options
@pass_cli
def cancel(obj: CliContext, job_id: str, engine_url: str, keystore: str | None, key_env: str | None) -> None:
    """Cancel a job that has not ended.

    \b
    Example:
      registry job cancel 3f2a... --key-env BUILDER_KEY
    """
    with _client(obj, engine_url, keystore, key_env) as client:
        current = client.cancel(job_id)
    obj.output(current, f"job {current['id']} {current['status']}")


@job.command("logs")
@JOB_ID
@engine_options
@pass_cli
def logs(obj: CliContext, job_id: str, engine_url: str, keystore: str | None, key_env: str | None) -> None:
    """Print the container's logs (only where the engine operator shares them).

    \b
    Example:
      registry job logs 3f2a... --key-env BUILDER_KEY
    """
    with _client(obj, engine_url, keystore, key_env) as client:
        text = client.logs(job_id)
    obj.output({"job_id": job_id, "logs": text}, text.rstrip("\n"))

