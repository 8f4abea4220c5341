"""The browser console in real Chromium (issue 11 items 2-4): the DLP owner's and the builder's stories.

Debian's /usr/bin/chromium driven by Playwright (no browser download), one
browser for the module; each test opens its own page with an injected EIP-1193
wallet (tests/integration/console_wallet.py) holding an anvil dev key. The
engine is real (anvil, Docker, HTTP) and charges prices, like
test_engine_payments.py. `CONSOLE_SCREENSHOTS=1` copies the main screens to
docs/console/*.png.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.api.routers.console import CONSOLE_DIR
from registry_client import sealing
from registry_client.contracts import connect
from registry_client.payments import Payments
from tests.conftest import ROOT
from tests.integration.conftest import SIMPLE_QUERY, running_engine
from tests.integration.console_wallet import FakeWallet, install

pytestmark = [pytest.mark.docker, pytest.mark.chain]

CHROMIUM = Path(os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium"))
TIMEOUT_MS = 60_000
PRICE = 1_000  # activities, all columns (conftest GRANTS)
OK_SCRIPT = 'echo "ok $COMPUTE_JOB_ID" > /mnt/output/result.txt\n'
SHOTS = ROOT / "docs" / "console"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    missing = None
    if not CHROMIUM.exists():
        missing = f"{CHROMIUM} is missing: `make chromium` installs Debian's chromium"
    elif not (CONSOLE_DIR / "index.html").is_file():
        missing = "the console bundle is missing: `make console` (part of `make setup`) builds it"
    if missing:
        if os.environ.get("CI"):
            raise RuntimeError(missing)  # CI runs `make test`, which provides both
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def desk(world, docker_client, job_image, tmp_path_factory) -> Iterator[object]:
    """An engine that charges (its wallet is anvil key 4, authorised as the QueryEngine's engine)."""
    deployer = Payments(connect(world.rpc_url, world.deployment, world.accounts.deployer))
    deployer.authorize_engine(world.accounts.stranger.address)
    with running_engine(world, tmp_path_factory.mktemp("console-engine"), charge_prices=True) as engine:
        yield engine


class Console:
    """One page of the console with its wallet."""

    def __init__(self, browser, url: str, wallet: FakeWallet | None, shots: Path):
        self.context = browser.new_context(accept_downloads=True, viewport={"width": 1200, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.wallet = wallet
        self.shots = shots
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        if wallet is not None:
            install(self.page, wallet)
        self.page.goto(f"{url}/console")

    def message(self) -> str:
        return self.page.locator("#messages .msg").inner_text()

    def sign_in(self) -> None:
        self.page.click("#connect")
        self.page.click("#sign-in")
        self.page.wait_for_selector("#session")

    def shot(self, name: str) -> None:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        if os.environ.get("CONSOLE_SCREENSHOTS"):
            SHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, SHOTS / path.name)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_console(browser, desk, world, tmp_path_factory):
    opened: list[Console] = []
    shots = tmp_path_factory.mktemp("console-shots")

    def make(role: str | None = "builder", *, chain_id: int | None = None, reject: tuple[str, ...] = ()) -> Console:
        wallet = None
        if role is not None:
            wallet = FakeWallet(world.rpc_url, getattr(world.accounts, role), chain_id or world.chain_id, set(reject))
        console = Console(browser, desk.url, wallet, shots)
        opened.append(console)
        return console

    yield make
    for console in opened:
        console.close()


def test_builder_deposits_submits_watches_and_downloads(open_console, world, job_image):
    instruction_id = world.publish_image(job_image("console-ok", OK_SCRIPT))
    builder = Payments(world.builder)
    balance = builder.balance()
    console = open_console("builder")
    console.sign_in()
    page = console.page
    page.click("#tab-builder")
    page.wait_for_selector(f"#my-instructions tr[data-instruction='{instruction_id}'] .pill.ok")

    page.fill("#money input[name=amount]", "5000")
    page.click("[data-action=deposit]")
    page.wait_for_selector(f"[data-balance='{balance + 5000}']")
    assert builder.balance() == balance + 5000

    page.fill("#run input[name=instruction]", str(instruction_id))
    page.fill("#run input[name=refiner]", str(world.refiner_id))
    page.fill("#run textarea[name=query]", SIMPLE_QUERY)
    page.click("[data-action=schema]")
    schema = page.wait_for_selector("[data-schema=ok]").inner_text()  # GET /refiners/{id}/schema
    assert "activities" in schema and "not covered" in schema and "1000 wei" in schema
    signatures = console.wallet.calls.count("eth_signTypedData_v4")
    page.click("[data-action=sign]")  # one on-chain job (transaction), then ONE typed-data signature
    page.wait_for_selector("[data-action=submit]:not([disabled])")
    assert console.wallet.calls.count("eth_signTypedData_v4") == signatures + 1
    page.click("[data-action=quote]")
    # POST /jobs/quote with the same signed body: the price, and the nonce stays unused for the submit.
    assert page.wait_for_selector("[data-quote]").get_attribute("data-quote") == str(PRICE)
    page.click("[data-action=submit]")  # the engine accepts the browser's signature: 201
    page.wait_for_selector("#my-jobs [data-status=SUCCEEDED]", timeout=TIMEOUT_MS)
    # Watched by long-poll with the session token: no signature per status read.
    assert console.wallet.calls.count("eth_signTypedData_v4") == signatures + 1
    assert "personal_sign" in console.wallet.calls and console.wallet.calls.count("personal_sign") == 1
    button = page.wait_for_selector("[data-action=download][data-artifact='result.txt']")
    console.shot("builder")
    with page.expect_download() as download:
        button.click()
    # Sealed to the builder's wallet: the browser saves the ciphertext as stored (an EIP-1193
    # wallet cannot decrypt with its key); the builder's key opens it, as `registry job download` does.
    assert button.get_attribute("data-sealed") == "1" and download.value.suggested_filename == "result.txt.sealed"
    blob = Path(download.value.path()).read_bytes()
    assert blob.startswith(sealing.MAGIC)
    text = sealing.open_bytes(blob, private_key=bytes(world.accounts.builder.key)).decode()
    assert text.startswith("ok ") and int(text.split()[1]) > 0  # it ran for the on-chain job it paid with
    assert builder.balance() == balance + 5000 - PRICE
    page.wait_for_selector(f"[data-balance='{balance + 5000 - PRICE}']")  # refreshed when the job ended
    assert page.locator("#my-jobs [data-paid]").first.get_attribute("data-paid").startswith(f"{PRICE} wei")
    assert not console.errors
    job_id = page.locator("#my-jobs tr[data-job]").first.get_attribute("data-job")

    # Another browser session lists the job from the engine (GET /jobs with its own session token).
    later = open_console("builder")
    later.sign_in()
    later.page.click("#tab-builder")
    later.page.wait_for_selector(f"#my-jobs tr[data-job='{job_id}'] [data-status=SUCCEEDED]")
    assert later.page.locator("[data-jobs=local]").count() == 0


def test_owner_audits_approves_grants_and_claims(open_console, world, job_image):
    image = job_image("console-pending", 'echo pending > /mnt/output/result.txt\n')
    pending = world.publish(image.sha256, image.url, approve=False)
    owner = Payments(world.owner)
    console = open_console("dlp_owner")
    console.sign_in()
    page = console.page
    row = f"#owner [data-dlp='{world.dlp_id}'] tr[data-instruction='{pending}']"
    page.wait_for_selector(f"{row} [data-status=pending]")

    page.click(f"{row} [data-action=audit]")
    # What the image runs, read statically by GET /instructions/{id}/inspect, before any approval.
    report = page.wait_for_selector(f".audit[data-instruction='{pending}']").inner_text()
    assert image.sha256 in report and '["/bin/sh","/job.sh"]' in report and "(root)" in report
    assert "RUNS_AS_ROOT" in report and "/job.sh" in report  # the warning, and the job's own source
    console.shot("owner-audit")
    page.click(f"{row} [data-action=approve]")
    page.wait_for_selector(f"{row} [data-status=approved]")
    assert world.owner.is_approved(pending, world.dlp_id)
    assert "approved" in console.message()
    page.click(f"{row} [data-action=revoke]")
    page.wait_for_selector(f"{row} [data-status=pending]")
    assert not world.owner.is_approved(pending, world.dlp_id)
    page.click(f"{row} [data-action=approve]")
    page.wait_for_selector(f"{row} [data-status=approved]")

    grantee = world.accounts.grantee.address
    form = f"form[data-form=grant][data-refiner='{world.refiner_id}']"
    page.fill(f"{form} input[name=grantee]", grantee)
    page.fill(f"{form} input[name=table]", "users")
    page.fill(f"{form} input[name=column]", "locale")
    page.fill(f"{form} input[name=price]", "7")
    page.click(f"{form} button[type=submit]")
    page.wait_for_selector("#messages .msg.ok >> text=granted")
    granted = [p for p in world.owner.get_permissions(world.refiner_id, grantee)
               if (p.table, p.column, p.price, p.approved) == ("users", "locale", 7, True)]
    assert granted, "the permission is not on chain"
    permission = page.locator(f"[data-refiner='{world.refiner_id}'] tr[data-permission='{granted[0].id}']")
    assert "users" in permission.inner_text() and "7 wei" in permission.inner_text()
    permission.locator("[data-action=revoke-permission]").click()
    page.wait_for_selector(f"tr[data-permission='{granted[0].id}'] [data-action=restore-permission]")
    assert not world.owner.permission(granted[0].id).approved

    # Earnings and activity come from the chain: the builder's paid job above (if it ran first) shows here.
    earnings = owner.dlp_earnings(world.dlp_id)
    page.wait_for_selector(f"[data-earnings='{earnings}']")
    activity = page.locator(f"tr[data-activity='{world.refiner_id}']").inner_text()
    console.shot("owner")
    if earnings:
        assert "1000 wei" in activity
        page.click(f"[data-action=claim][data-dlp='{world.dlp_id}']")
        page.wait_for_selector("#messages .msg.ok >> text=Claimed")
        assert owner.dlp_earnings(world.dlp_id) == 0
    assert not console.errors


def test_no_wallet_says_so(open_console):
    console = open_console(None)
    console.page.wait_for_selector("#no-wallet")
    assert "No wallet found" in console.message()
    console.shot("no-wallet")


def test_wrong_chain_offers_the_switch(open_console, world):
    console = open_console("builder", chain_id=1)
    console.page.wait_for_selector("#wrong-chain")
    assert f"chain 1, this engine serves chain {world.chain_id}" in console.message()
    console.shot("wrong-chain")
    console.page.click("#switch-chain")
    console.page.wait_for_selector("#connect")
    assert console.wallet.chain_id == world.chain_id
    assert "wallet_switchEthereumChain" in console.wallet.calls


def test_a_refused_chain_switch_is_explained(open_console):
    console = open_console("builder", chain_id=1, reject=("wallet_switchEthereumChain",))
    console.page.click("#switch-chain")
    console.page.wait_for_selector("#messages .msg.error >> text=rejected")
    assert "4001" in console.message() and console.wallet.chain_id == 1
    assert console.page.locator("#connect").count() == 0


def test_rejected_signature_is_explained(open_console):
    console = open_console("builder", reject=("personal_sign",))
    console.page.click("#connect")
    console.page.click("#sign-in")
    console.page.wait_for_selector("#messages .msg.error")
    assert "rejected" in console.message() and "4001" in console.message()
    assert console.page.locator("#session").count() == 0


def test_reverted_transaction_is_decoded_by_name(open_console, world):
    console = open_console("builder")
    console.sign_in()
    page = console.page
    page.click("#tab-builder")
    page.fill("#money input[name=amount]", str(10**30))  # more than any deposit
    page.click("[data-action=withdraw]")
    page.wait_for_selector("#messages .msg.error")
    assert "reverted: InsufficientBalance()" in console.message()
    console.shot("reverted")


def test_a_rejected_transaction_sends_nothing(open_console, world):
    balance = Payments(world.builder).balance()
    console = open_console("builder", reject=("eth_sendTransaction",))
    console.sign_in()
    console.page.click("#tab-builder")
    console.page.click("[data-action=deposit]")
    console.page.wait_for_selector("#messages .msg.error")
    assert "rejected" in console.message() and "4001" in console.message()
    assert Payments(world.builder).balance() == balance


def test_a_refused_session_asks_to_sign_in_again(open_console, world):
    console = open_console("builder")
    console.sign_in()
    # The stored session is altered (as if the engine's key changed): the next read is refused.
    console.page.evaluate("""() => {
        const saved = JSON.parse(sessionStorage.getItem("console-session"));
        saved.token = saved.token.slice(0, -4) + "0000";
        sessionStorage.setItem("console-session", JSON.stringify(saved));
    }""")
    console.page.reload()
    console.page.click("#connect")
    console.page.click("#tab-builder")
    console.page.wait_for_selector("#session-ended")
    assert "SESSION_INVALID" in console.message()
    console.page.click("#sign-in")
    console.page.wait_for_selector("#session")
