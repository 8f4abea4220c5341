"""`registry deposit|withdraw|balance|engine authorize|dlp earnings|dlp claim` and `job submit --compute-job`.

In-process (CliRunner) against the session's anvil deployment (rolled back after
each test). For `job submit` the on-chain part is real and the engine is not
needed: `EngineClient.submit_request` is replaced to keep the signed request
(the engine's side of computeJobId is tests/integration/test_engine_payments.py).
"""

from __future__ import annotations

import pytest

from registry_client.contracts import connect
from registry_client.payments import Payments
from tests.registry_client.conftest import assert_clean_error

pytestmark = pytest.mark.chain
HASH = "cd" * 32


def test_deposit_balance_withdraw(cli, accounts):
    assert cli.json("deposit", "5000", as_="builder")["balance_wei"] == "5000"
    assert cli.ok("balance", as_="builder").stdout.strip() == "5000"
    shown = cli.json("balance", "--account", accounts.builder.address)  # no wallet needed
    assert shown == {"account": accounts.builder.address, "balance_wei": "5000", "token": None}
    assert cli.json("withdraw", "2000", as_="builder")["balance_wei"] == "3000"
    assert_clean_error(cli("withdraw", "4000", as_="builder"), "deposit is smaller")
    result = cli("deposit", "0", as_="builder")
    assert result.exit_code == 2 and "below the minimum 1" in result.stderr


def test_engine_authorize_dlp_earnings_and_claim(cli, chain, deployment, accounts):
    owner = connect(chain.url, deployment, accounts.dlp_owner)
    dlp_id = owner.register_dlp("Money CLI DLP", treasury=accounts.grantee.address)
    refiner_id = owner.add_refiner(dlp_id, "r", "https://s")
    builder = Payments(connect(chain.url, deployment, accounts.builder))
    instruction_id = builder.reg.add_instruction(HASH, "https://img")
    builder.deposit(10_000)
    job_id = builder.submit_job(instruction_id, 60)

    authorized = cli.json("engine", "authorize", accounts.stranger.address, as_="deployer")
    assert authorized["authorized"] is True
    assert_clean_error(cli("engine", "authorize", accounts.builder.address, as_="builder"), "lacks the role")
    Payments(connect(chain.url, deployment, accounts.stranger)).request_payment(job_id, refiner_id, 1_000)

    earnings = cli.json("dlp", "earnings", str(dlp_id))
    assert earnings["earnings_wei"] == "800" and earnings["share_percent"] == 80
    assert_clean_error(cli("dlp", "claim", str(dlp_id), as_="builder"), "")
    before = owner.w3.eth.get_balance(accounts.grantee.address)
    claimed = cli.json("dlp", "claim", str(dlp_id), as_="dlp_owner")
    assert claimed["claimed_wei"] == "800" and claimed["treasury"] == accounts.grantee.address
    assert owner.w3.eth.get_balance(accounts.grantee.address) == before + 800
    assert cli.ok("dlp", "earnings", str(dlp_id)).stdout.strip() == "0"


def _submit(cli, *extra: str):
    return cli("--json", "job", "submit", *extra, "--query", "SELECT 1", as_="builder")


def test_job_submit_opens_an_on_chain_job_when_the_price_is_above_0(cli, chain, deployment, accounts, monkeypatch):
    from registry_client.engine_client import EngineClient

    submitted = []

    def keep(self, req):
        submitted.append(req)
        return {"id": f"job-{len(submitted)}"}

    monkeypatch.setattr(EngineClient, "submit_request", keep)
    owner = connect(chain.url, deployment, accounts.dlp_owner)
    dlp_id = owner.register_dlp("Priced CLI DLP")
    priced = owner.add_refiner(dlp_id, "priced", "https://s")
    free = owner.add_refiner(dlp_id, "free", "https://s")
    owner.add_permission(priced, accounts.builder.address, "users", "", 700)
    owner.add_permission(free, accounts.builder.address, "users", "", 0)
    builder = Payments(connect(chain.url, deployment, accounts.builder))
    instruction_id = builder.reg.add_instruction(HASH, "https://img")

    opened = _submit(cli, "--instruction", str(instruction_id), "--refiner", str(priced),
                     "--max-timeout", "90")
    assert opened.exit_code == 0, opened.stderr
    assert "opened on-chain compute job" in opened.stderr
    compute_job = submitted[-1].compute_job_id
    job = builder.job(compute_job)
    assert job.owner == accounts.builder.address and job.max_timeout == 90 and job.instruction_id == instruction_id

    assert _submit(cli, "--instruction", str(instruction_id), "--refiner", str(free)).exit_code == 0
    assert submitted[-1].compute_job_id == 0  # nothing priced: a free job, no transaction
    assert _submit(cli, "--instruction", str(instruction_id), "--refiner", str(priced),
                   "--compute-job", str(compute_job)).exit_code == 0
    assert submitted[-1].compute_job_id == compute_job
    assert _submit(cli, "--instruction", str(instruction_id), "--refiner", str(priced),
                   "--compute-job", "none").exit_code == 0
    assert submitted[-1].compute_job_id == 0
    bad = _submit(cli, "--instruction", "1", "--refiner", "1", "--compute-job", "soon")
    assert bad.exit_code == 2 and "'soon' is not a whole number" in bad.stderr
