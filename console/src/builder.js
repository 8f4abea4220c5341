// The builder's desk: my instructions and approvals, deposit and balance, schema/quote/submit, my jobs live.
import { jobs, quote, schema } from "./engine.js";
import { messageFor, signTypedData } from "./wallet.js";
import { act, card, formatWei, h, say, table } from "./ui.js";

const FINAL = new Set(["SUCCEEDED", "FAILED", "CANCELLED"]);
const WAIT_S = 20;
const known = new Map(); // job id -> last JobPublic seen in this page
let onFinal = () => {}; // refreshes the balance when a (possibly paid) job ends

async function instructionsCard(chain) {
  const [mine, dlps] = await Promise.all([chain.instructions(), chain.allDlps()]);
  const own = mine.filter((i) => i.owner.toLowerCase() === chain.account.toLowerCase());
  const rows = await Promise.all(own.map(async (ins) => {
    const approvals = await Promise.all(dlps.map(async (d) => [d, await chain.isApproved(ins.id, d.id)]));
    const approvedBy = approvals.filter(([, ok]) => ok).map(([d]) => `DLP ${d.id} ${d.name}`);
    return h("tr", { "data-instruction": String(ins.id) }, h("td", {}, String(ins.id)), h("td", { class: "mono" }, ins.url),
      h("td", {}, approvedBy.length ? approvedBy.map((t) => h("span", { class: "pill ok" }, t)) : h("span", { class: "pill warn" }, "not approved yet")));
  }));
  return card("My instructions", { id: "my-instructions" },
    own.length ? table(["id", "url", "approved by"], rows) : h("p", { class: "muted" }, "You have published no instruction."));
}

function moneyCard(chain, balance, rerender) {
  const amount = h("input", { name: "amount", value: "10000", size: 12 });
  const deposit = h("button", { type: "button", class: "primary", "data-action": "deposit" }, "Deposit");
  const withdraw = h("button", { type: "button", "data-action": "withdraw" }, "Withdraw");
  deposit.addEventListener("click", () => act(deposit, async () => {
    const wei = BigInt(amount.value);
    await chain.write("compute", "deposit", ["0x0000000000000000000000000000000000000000", wei], wei);
    say("ok", `Deposited ${formatWei(wei)} in the ComputeEngine.`);
    await rerender();
  }));
  withdraw.addEventListener("click", () => act(withdraw, async () => {
    const wei = BigInt(amount.value);
    await chain.write("compute", "withdraw", ["0x0000000000000000000000000000000000000000", wei]);
    say("ok", `Withdrew ${formatWei(wei)}.`);
    await rerender();
  }));
  return card("Deposit and balance", { id: "money" },
    h("p", {}, "ComputeEngine balance: ", h("strong", { "data-balance": String(balance) }, formatWei(balance))),
    h("div", { class: "row" }, h("label", {}, "amount (wei)", amount), deposit, withdraw));
}

function schemaView(result) {
  if (!result.ok) return h("p", { class: "muted", "data-schema": "missing" }, "This engine does not serve refiner schemas yet (GET /refiners/{id}/schema answered 404).");
  return h("div", { "data-schema": "ok" }, result.value.tables.map((t) => h("div", {}, h("h3", {}, t.name),
    table(["column", "type", "your permission", "price"], t.columns.map((c) => h("tr", {}, h("td", {}, c.name), h("td", {}, c.type),
      h("td", {}, h("span", { class: `pill ${c.covered ? "ok" : "bad"}` }, c.covered ? "covered" : "not covered")),
      h("td", {}, c.price_wei === null ? "—" : `${c.price_wei} wei`)))))));
}

function runCard(chain, config, onSubmitted) {
  const instruction = h("input", { name: "instruction", placeholder: "instruction id", size: 8 });
  const refiner = h("input", { name: "refiner", placeholder: "refiner id", size: 8 });
  const query = h("textarea", { name: "query", placeholder: "SELECT … FROM …" });
  const params = h("input", { name: "params", value: "[]", size: 20 });
  const pay = h("input", { type: "checkbox", name: "pay", checked: true });
  const schemaOut = h("div", { id: "schema-out" });
  const out = h("div", { id: "run-out" });
  let signed = null; // the one signed body, quoted then submitted unchanged
  const buttons = {
    schema: h("button", { type: "button", "data-action": "schema" }, "Schema"),
    sign: h("button", { type: "button", class: "primary", "data-action": "sign" }, "Sign request"),
    quote: h("button", { type: "button", "data-action": "quote", disabled: true }, "Quote"),
    submit: h("button", { type: "button", class: "primary", "data-action": "submit", disabled: true }, "Submit"),
  };
  for (const input of [instruction, refiner, query, params, pay]) {
    input.addEventListener("input", () => { signed = null; buttons.quote.disabled = buttons.submit.disabled = true; });
  }
  buttons.schema.addEventListener("click", () => act(buttons.schema, async () => {
    schemaOut.replaceChildren(schemaView(await schema(BigInt(refiner.value))));
  }));
  buttons.sign.addEventListener("click", () => act(buttons.sign, async () => {
    let computeJobId = 0;
    if (pay.checked) {
      // The on-chain job the engine charges the price to (Vana's ComputeEngine.submitJob).
      const receipt = await chain.write("compute", "submitJob", [600n, false, BigInt(instruction.value)]);
      computeJobId = Number(chain.eventArg("compute", receipt, "JobRegistered", "jobId"));
    }
    // Field names and types come from the engine (config.json), so a newer JobRequest still signs.
    const message = messageFor(config.job_request, {
      instructionId: Number(instruction.value), refinerId: Number(refiner.value), query: query.value,
      params: JSON.stringify(JSON.parse(params.value || "null")), nonce: Math.floor(Math.random() * 2 ** 48),
      deadline: Math.floor(Date.now() / 1000) + 3600, computeJobId,
    });
    const signature = await signTypedData(window.ethereum, chain.account, config.job_request, message);
    signed = { request: message, signature, signer: chain.account };
    buttons.quote.disabled = buttons.submit.disabled = false;
    say("info", `Request signed${computeJobId ? ` (paid by on-chain job ${computeJobId})` : ""}: quote it or submit it.`);
  }));
  buttons.quote.addEventListener("click", () => act(buttons.quote, async () => {
    const result = await quote(signed);
    out.replaceChildren(result.ok
      ? h("p", { "data-quote": result.value.price_wei }, `Price: ${result.value.price_wei} wei`)
      : h("p", { class: "muted", "data-quote": "missing" }, "This engine does not quote yet (POST /jobs/quote is not served); the price is checked when the job runs."));
  }));
  buttons.submit.addEventListener("click", () => act(buttons.submit, async () => {
    const job = await jobs.submit(signed);
    say("ok", `Job ${job.id} submitted.`);
    signed = null;
    buttons.quote.disabled = buttons.submit.disabled = true;
    onSubmitted(job);
  }));
  return card("Run a job", { id: "run" },
    h("div", { class: "row" }, h("label", {}, "instruction", instruction), h("label", {}, "refiner", refiner),
      h("label", {}, "params (JSON)", params), h("label", {}, "pay with an on-chain job", pay)),
    h("label", {}, "query", query),
    h("div", { class: "row" }, buttons.schema, buttons.sign, buttons.quote, buttons.submit), out, schemaOut);
}

function downloadBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: name.split("/").pop() });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

async function artifactList(job) {
  const list = await jobs.artifacts(job.id);
  return h("ul", { class: "artifacts" }, list.artifacts.map((art) => {
    // Results are sealed to a wallet's key (ECIES over secp256k1). EIP-1193 wallets offer no
    // decryption with the account key, so the browser saves the sealed file as stored and
    // says how to open it: `registry job download` with the same wallet.
    const sealed = Boolean(art.sealed_sha256);
    const button = h("button", { type: "button", "data-action": "download", "data-artifact": art.name,
      "data-sealed": sealed ? "1" : "0" }, sealed ? `Download ${art.name} (sealed)` : `Download ${art.name}`);
    const saveAs = sealed ? `${art.name}.sealed` : art.name;
    button.addEventListener("click", () => act(button, async () => downloadBlob(await jobs.download(art.url), saveAs)));
    const hash = art.sha256 ? `sha256 ${art.sha256.slice(0, 12)}…` : "sha256 hidden: sealed to another wallet";
    const note = sealed ? ` (sealed to your wallet; open it with \`registry job download ${job.id}\`)` : "";
    return h("li", {}, button, ` ${art.size} bytes, ${hash}${note}`);
  }));
}

function jobRow(job) {
  const detail = h("td", { class: "job-detail" });
  if (job.status === "SUCCEEDED") act(null, async () => detail.replaceChildren(await artifactList(job)));
  if (job.failure) detail.replaceChildren(`${job.failure.code}: ${job.failure.message}`);
  const paid = job.payment?.charged ? `${job.payment.amount} wei (on-chain job ${job.payment.compute_job_id})` : "—";
  const cancel = !FINAL.has(job.status) ? h("button", { type: "button", "data-action": "cancel" }, "Cancel") : null;
  cancel?.addEventListener("click", () => act(cancel, async () => watchUpdate(await jobs.cancel(job.id))));
  return h("tr", { "data-job": job.id }, h("td", { class: "mono" }, job.id), h("td", {}, String(job.refiner_id)),
    h("td", {}, h("span", { class: `pill ${job.status === "SUCCEEDED" ? "ok" : job.status === "FAILED" ? "bad" : "warn"}`,
      "data-status": job.status }, job.status)), h("td", { "data-paid": paid }, paid), h("td", {}, cancel), detail);
}

function watchUpdate(job) {
  known.set(job.id, job);
  const row = document.querySelector(`tr[data-job="${CSS.escape(job.id)}"]`);
  if (row) row.replaceWith(jobRow(job));
  else document.querySelector("#my-jobs tbody")?.append(jobRow(job));
}

// Long-poll with the session token: one request per status change, no signature per request.
async function watch(job) {
  let current = job;
  watchUpdate(current);
  while (!FINAL.has(current.status) && document.querySelector(`tr[data-job="${CSS.escape(current.id)}"]`)) {
    try {
      current = await jobs.get(current.id, current.status, WAIT_S);
    } catch (err) {
      say("error", `Watching job ${current.id} stopped: ${err.message}`);
      return;
    }
    watchUpdate(current);
  }
  if (FINAL.has(current.status)) onFinal();
}

async function jobsCard() {
  const listed = await jobs.list();
  const note = listed.ok ? null : h("p", { class: "muted", "data-jobs": "local" },
    "This engine does not list jobs yet (GET /jobs is not served): showing the jobs submitted from this page.");
  if (listed.ok) for (const job of listed.value.jobs) known.set(job.id, job);
  const rows = [...known.values()].map(jobRow);
  return card("My jobs", { id: "my-jobs" }, note, table(["id", "refiner", "status", "paid", "", "result"], rows));
}

export async function renderBuilder(root, chain, config) {
  const rerender = () => renderBuilder(root, chain, config);
  root.replaceChildren(h("p", { class: "muted" }, "Reading your instructions and balance…"));
  const [instructions, balance, jobList] = await Promise.all([instructionsCard(chain), chain.balance(), jobsCard()]);
  onFinal = () => act(null, async () => {
    const now = await chain.balance();
    const el = document.querySelector("#money [data-balance]");
    if (el) { el.dataset.balance = String(now); el.textContent = formatWei(now); }
  });
  root.replaceChildren(h("div", { id: "builder" }, instructions, moneyCard(chain, balance, rerender),
    runCard(chain, config, (job) => watch(job)), jobList));
  for (const job of known.values()) if (!FINAL.has(job.status)) watch(job);
}

