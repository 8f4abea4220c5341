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
import sys
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
from registry_client.cli_output import error_line, table
from registry_client.cli_types import COMPUTE_JOB, Seconds, Uint256
from registry_client.errors import InputError

if TYPE_CHECKING:  # httpx and eth-account load when a job command runs
    from registry_client.engine_client import EngineClient

__all__ = ["format_job", "format_job_list", "format_quote", "format_schema", "format_step", "format_summary", "job",
           "refiner_schema"]

JOB_STATUSES = ("PENDING", "VERIFYING", "FETCHING", "LOADING", "QUERYING", "RUNNING", "COLLECTING",
                "SUCCEEDED", "FAILED", "CANCELLED")

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


def format_summary(job: dict[str, Any]) -> list[str]:
    """What the job learnt, once it ended: block, image, rows, price, attestation (a step's line
    shows only what was known when the step began)."""
    report = job.get("access_report") or {}
    lines = []
    if job.get("block_number") is not None:
        lines.append(f"verified at block {job['block_number']} (DLP {job.get('dlp_id')})")
    if job.get("image_sha256"):
        lines.append(f"image sha256 {job['image_sha256']}" + (f", loaded as {job['image_id']}"
                                                              if job.get("image_id") else ""))
    if report.get("row_count") is not None:
        lines.append(f"query: {report['row_count']} rows")
    if job.get("price_wei") is not None:
        lines.append(_price_detail(job))
    if job.get("attestation"):
        lines.append(f"attested by {job['attestation'].get('signer')}")
    return lines


def _progress_line(job: dict[str, Any]) -> str | None:
    progress = job.get("progress") or {}
    if progress.get("bytes") is not None:
        total = progress.get("total")
        return f"progress: {progress['bytes']} of {total if total is not None else '?'} bytes fetched"
    if progress.get("elapsed_s") is not None:
        return f"progress: running for {progress['elapsed_s']:.1f} s"
    return None


def format_job(job: dict[str, Any]) -> str:
    lines = [f"job {job['id']}  {job['status']}  (instruction {job['instruction_id']}, refiner {job['refiner_id']})"]
    lines += [format_step(job, s) for s in job.get("steps") or []]
    if (line := _progress_line(job)) is not None:
        lines.append(line)
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
    obj.output(final, "\n".join([*format_summary(final), f"job {final['id']} {final['status']}"]))
    if final["status"] != "SUCCEEDED":
        failure = final.get("failure") or {}
        raise CliError(f"job {final['id']} {final['status']}" + (f": {failure.get('message')}" if failure else ""),
                       str(failure.get("code") or f"JOB_{final['status']}"))
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


def _request_options(f: F) -> F:
    """What a job request is: the options `submit` and `quote` share."""
    for option in reversed([
        click.option("--instruction", "instruction_id", required=True, type=ID,
                     help="Approved compute instruction id."),
        click.option("--refiner", "refiner_id", required=True, type=ID, help="Data refiner id."),
        click.option("--query", required=True, metavar="SQL", help="One read-only SELECT over the refiner's data."),
        click.option("--params", "params_text", metavar="JSON",
                     help='Query params: a JSON list or object, e.g. \'["en"]\'.'),
        click.option("--nonce", type=NONCE, help="Request nonce (a uint256) [default: time-based]."),
        click.option("--deadline", "deadline_s", type=Uint256(minimum=1, maximum=10 * 365 * 24 * 3600),
                     default=600, show_default=True, help="Seconds the signed request stays valid."),
        click.option("--compute-job", "compute_job", metavar="ID|auto|none", type=COMPUTE_JOB, default="auto",
                     show_default=True, help="Your on-chain ComputeEngine job paying the price: an id; auto = "
                     "open one when your permissions on the refiner are priced; none = a free job."),
        click.option("--max-timeout", "max_timeout_s", type=MAX_TIMEOUT, default=600, show_default=True,
                     help="Seconds the container may run, for an on-chain job opened here (the engine's own "
                     "cap wins)."),
    ]):
        f = option(f)
    return f


def _quote(obj: CliContext, client: EngineClient, instruction_id: int, refiner_id: int, query: str,
           params: list | dict | None, nonce: int | None, deadline_s: int, compute_job: int | None) -> None:
    """Ask for the quote of exactly this request; a refusal is the engine's code (exit 1)."""
    req = client.request(instruction_id, refiner_id, query, params, nonce=nonce,
                         deadline=int(time.time()) + deadline_s, compute_job_id=compute_job or 0)
    quoted = client.quote_request(req)
    if compute_job == 0 and quoted.get("compute_job_id_required"):  # --compute-job none, yet priced
        raise CliError(f"PAYMENT_REQUIRED: the query costs {quoted['price_wei']} wei: name your on-chain "
                       "compute job (--compute-job ID or auto)")
    obj.output(quoted, format_quote(quoted, compute_job))


def format_quote(quoted: dict[str, Any], compute_job: int | None = None) -> str:
    report = quoted.get("access_report") or {}
    reads = [f"{t}.{c}" if c else f"{t} (table)" for t, c in report.get("columns") or []]
    token = quoted.get("token") or "native token"
    lines = [f"price: {quoted['price_wei']} wei ({token})",
             f"reads: {', '.join(reads) or '(no table)'}",
             f"permissions used: {', '.join(map(str, report.get('permissions_used') or [])) or '(none)'}",
             f"refiner {quoted['refiner_id']} (DLP {quoted['dlp_id']}): instruction approved "
             + f"at block {quoted.get('block_number')}"]
    if quoted.get("compute_job_id_required"):
        lines.append("compute job: required" + (" (submit --compute-job auto opens one)" if compute_job is None
                                                 else ""))
    return "\n".join(lines)


@job.command("quote")
@_request_options
@engine_options
@pass_cli
def quote(obj: CliContext, instruction_id: int, refiner_id: int, query: str, params_text: str | None,
          nonce: int | None, deadline_s: int, compute_job: int | None, max_timeout_s: int, engine_url: str,
          keystore: str | None, key_env: str | None) -> None:
    """What a job would read and cost, or the code it would be refused with; fetches and runs nothing.

    Signed like `submit` (same options); the nonce stays unused and no on-chain job is opened.

    \b
    Example:
      registry job quote --instruction 1 --refiner 1 --key-env BUILDER_KEY \\
          --query "SELECT locale, count(*) AS n FROM users GROUP BY locale"
    """
    params = _parse_params(params_text)
    with _client(obj, engine_url, keystore, key_env) as client:
        _quote(obj, client, instruction_id, refiner_id, query, params, nonce, deadline_s, compute_job)


@job.command("submit")
@_request_options
@click.option("--dry-run", "dry_run", is_flag=True,
              help="Only quote it (as `registry job quote`): price and access report, or the refusal.")
@click.option("--wait", "wait_", is_flag=True, help="Follow the job until it ends, printing each step.")
@_wait_options
@engine_options
@pass_cli
def submit(obj: CliContext, instruction_id: int, refiner_id: int, query: str, params_text: str | None,
           nonce: int | None, deadline_s: int, compute_job: int | None, max_timeout_s: int, dry_run: bool,
           wait_: bool, timeout_s: float, poll_s: float, engine_url: str, keystore: str | None,
           key_env: str | None) -> None:
    """Sign and submit a job; prints its id. A priced query is charged to an on-chain job of yours.

    First `registry deposit AMOUNT`; the engine charges the price from it before the run.
    The engine refuses at once (4xx, with the code) whatever `registry job quote` refuses.

    \b
    Example:
      registry job submit --instruction 1 --refiner 1 --key-env BUILDER_KEY \\
          --query "SELECT locale, count(*) AS n FROM users WHERE age > ? GROUP BY locale" --params '[30]'
    """
    params = _parse_params(params_text)
    account = load_wallet(keystore, key_env)
    if dry_run:
        with _client(obj, engine_url, keystore, key_env, account) as client:
            _quote(obj, client, instruction_id, refiner_id, query, params, nonce, deadline_s, compute_job)
        return
    if compute_job is None:
        compute_job = open_compute_job(obj, account, instruction_id, refiner_id, max_timeout_s)
    with _client(obj, engine_url, keystore, key_env, account) as client:
        created = client.submit(instruction_id, refiner_id, query, params, nonce=nonce,
                                deadline=int(time.time()) + deadline_s, compute_job_id=compute_job)
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
        listing = client.artifact_listing(job_id)
    expires = listing.get("expires_at")
    items = [{**a, "expires_at": expires} for a in listing.get("artifacts", [])]
    text = table(items, [("name", "NAME"), ("size", "SIZE"), ("sha256", "SHA256"), ("media_type", "TYPE")],
                 "(no artifacts)")
    if items and expires is not None:
        text += f"\nkept until {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(float(expires)))}"
    obj.output(items, text)


@job.command("download")
@JOB_ID
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Directory to write the artifacts into (sub-folders kept).")
@click.option("--zip", "as_zip", is_flag=True, help="Download one zip of every artifact instead.")
@click.option("--force", is_flag=True, help="Replace files that already exist (refused otherwise).")
@engine_options
@pass_cli
def download(obj: CliContext, job_id: str, out_dir: Path, as_zip: bool, force: bool, engine_url: str,
             keystore: str | None, key_env: str | None) -> None:
    """Download a job's artifacts, each checked against its sha256; prints their absolute paths.

    An existing file is never replaced without --force. An artifact name that would
    leave --out (absolute, `..`, NUL) is refused on its own; the others download.

    \b
    Example:
      registry job download 3f2a... --out results --key-env BUILDER_KEY
    """
    refused: list[Any] = []
    bar = _DownloadBar(enabled=not obj.json_output and sys.stderr.isatty())
    try:
        with _client(obj, engine_url, keystore, key_env) as client:
            if as_zip:
                paths = [client.download_zip(job_id, out_dir / f"job-{job_id}-artifacts.zip", force=force,
                                             progress=bar)]
            else:
                paths, refused = client.download_report(job_id, out_dir, force=force, progress=bar)
    finally:
        bar.close()
    data = {"job_id": job_id, "files": [str(p) for p in paths],
            "refused": [{"name": r.name, "code": r.code, "reason": r.reason} for r in refused]}
    obj.output(data, "\n".join(str(p) for p in paths))
    if refused:
        for r in refused[1:]:
            click.echo(error_line(r.reason, r.code), err=True)
        raise CliError(refused[0].reason + (f" (and {len(refused) - 1} more refused)" if len(refused) > 1 else ""),
                       refused[0].code)


class _DownloadBar:
    """A progress bar on stderr, only on a terminal (never under --json): stdout stays the result."""

    def __init__(self, *, enabled: bool):
        self.enabled = enabled
        self._bar: Any = None

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            self._bar = click.progressbar(length=total or done, label="downloading", file=sys.stderr,
                                          show_pos=True)
            self._bar.__enter__()
        if total is None:
            self._bar.length = max(self._bar.length, done)
        self._bar.update(done - self._bar.pos)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


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
@click.option("--follow", is_flag=True, help="Wait until the job ends, printing the logs as they appear.")
@_wait_options
@engine_options
@pass_cli
def logs(obj: CliContext, job_id: str, follow: bool, timeout_s: float, poll_s: float, engine_url: str,
         keystore: str | None, key_env: str | None) -> None:
    """Print the container's logs (only where the engine operator shares them).

    The engine keeps a container's logs when it stops, so `--follow` prints them
    once the run has ended (it long-polls the job until then).

    \b
    Example:
      registry job logs 3f2a... --follow --key-env BUILDER_KEY
    """
    with _client(obj, engine_url, keystore, key_env) as client:
        text = client.logs(job_id)  # LOGS_DISABLED at once, not after the wait
        if follow:
            text = _follow_logs(obj, client, job_id, text, timeout_s, poll_s)
    if follow and not obj.json_output:
        return  # printed as it came
    obj.output({"job_id": job_id, "logs": text}, text.rstrip("\n"))


def _follow_logs(obj: CliContext, client: EngineClient, job_id: str, text: str, timeout_s: float,
                 poll_s: float) -> str:
    """Long-poll the job, printing what the logs gained, until it ends; the whole text."""
    deadline = time.monotonic() + timeout_s
    shown, known = 0, None
    while True:
        if not obj.json_output and len(text) > shown:
            click.echo(text[shown:], nl=False)
            shown = len(text)
        current = client.status(job_id, wait_s=max(0.0, min(20.0, deadline - time.monotonic())),
                                known_status=known)
        if current.get("status") == known:
            time.sleep(poll_s)
        known = current.get("status")
        text = client.logs(job_id)
        if current.get("finished_at") is not None or time.monotonic() >= deadline:
            if not obj.json_output and len(text) > shown:
                click.echo(text[shown:], nl=False)
            return text


@job.command("list")
@click.option("--status", "status_", type=click.Choice(JOB_STATUSES, case_sensitive=False),
              help="Only jobs in this status.")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True, help="Jobs per page.")
@click.option("--cursor", metavar="CURSOR", help="The next page: the cursor the previous page printed.")
@engine_options
@pass_cli
def list_jobs(obj: CliContext, status_: str | None, limit: int, cursor: str | None, engine_url: str,
              keystore: str | None, key_env: str | None) -> None:
    """List your jobs on the engine, newest first (a table; --json the page).

    \b
    Example:
      registry job list --status SUCCEEDED --limit 5 --key-env BUILDER_KEY
    """
    with _client(obj, engine_url, keystore, key_env) as client:
        page = client.jobs(status=status_.upper() if status_ else None, limit=limit, cursor=cursor)
    # --json is the array every list command prints; the next page's cursor goes to stderr.
    obj.output(page.get("jobs") or [], format_job_list(page))
    if page.get("next_cursor"):
        click.echo(f"more: --cursor {page['next_cursor']}", err=True)


def format_job_list(page: dict[str, Any]) -> str:
    rows = [{**j, "created": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(j["created_at"])))}
            for j in page.get("jobs") or []]
    return table(rows, [("id", "ID"), ("status", "STATUS"), ("instruction_id", "INSTRUCTION"),
                        ("refiner_id", "REFINER"), ("price_wei", "PRICE_WEI"), ("created", "CREATED (UTC)")],
                 "(no jobs)")


@click.command("schema")
@click.argument("refiner_id", metavar="ID", type=ID)
@engine_options
@pass_cli
def refiner_schema(obj: CliContext, refiner_id: int, engine_url: str, keystore: str | None,
                   key_env: str | None) -> None:
    """The tables and columns of a refiner's data on the engine, and which your permissions cover, at what price.

    Asks the engine (`--engine`, as the job commands do), signed by your wallet.

    \b
    Example:
      registry refiner schema 1 --key-env BUILDER_KEY
    """
    with _client(obj, engine_url, keystore, key_env) as client:
        schema = client.refiner_schema(refiner_id)
    obj.output(schema, format_schema(schema))


def format_schema(schema: dict[str, Any]) -> str:
    rows = [{"table": t["name"], **c, "covered": "yes" if c["covered"] else "no"}
            for t in schema.get("tables") or [] for c in t["columns"]]
    return table(rows, [("table", "TABLE"), ("name", "COLUMN"), ("type", "TYPE"), ("covered", "COVERED"),
                        ("price_wei", "PRICE_WEI")], f"refiner {schema.get('refiner_id')} has no tables")
