// The DLP owner's desk: my DLPs and refiners, instructions to audit and approve, permissions, earnings, activity.
import { renderAudit } from "./audit.js";
import { act, card, formatWei, h, say, short, table } from "./ui.js";

async function instructionRows(chain, dlp, render) {
  const all = await chain.instructions();
  const rows = await Promise.all(all.map(async (ins) => {
    const approved = await chain.isApproved(ins.id, dlp.id);
    const auditBox = h("div");
    const toggle = h("button", { type: "button", class: approved ? "" : "primary",
      "data-action": approved ? "revoke" : "approve", "data-instruction": String(ins.id) },
    approved ? "Revoke" : "Approve");
    toggle.addEventListener("click", () => act(toggle, async () => {
      await chain.write("instruction", "updateComputeInstruction", [ins.id, dlp.id, !approved]);
      say("ok", `Instruction ${ins.id} ${approved ? "revoked" : "approved"} for DLP ${dlp.id}.`);
      await render();
    }));
    const auditButton = h("button", { type: "button", "data-action": "audit", "data-instruction": String(ins.id) }, "Audit");
    auditButton.addEventListener("click", () => act(auditButton, () => renderAudit(ins.id, auditBox)));
    return [h("tr", { "data-instruction": String(ins.id) },
      h("td", {}, String(ins.id)), h("td", { class: "mono" }, short(ins.owner)),
      h("td", { class: "mono" }, ins.url), h("td", { class: "mono" }, ins.hash.slice(0, 18) + "…"),
      h("td", {}, h("span", { class: `pill ${approved ? "ok" : "warn"}`, "data-status": approved ? "approved" : "pending" },
        approved ? "approved" : "pending")),
      h("td", {}, auditButton, " ", toggle)),
    h("tr", {}, h("td", { colspan: 6 }, auditBox))];
  }));
  // Pending first: they are what the owner has to decide on.
  return rows.sort((a, b) => (a[0].querySelector("[data-status]").dataset.status === "pending" ? -1 : 1)
    - (b[0].querySelector("[data-status]").dataset.status === "pending" ? -1 : 1));
}

function grantForm(chain, refiner, render) {
  const grantee = h("input", { name: "grantee", placeholder: "0x… builder", size: 44 });
  const tableName = h("input", { name: "table", placeholder: "table", size: 12 });
  const column = h("input", { name: "column", placeholder: "column (empty: all)", size: 16 });
  const price = h("input", { name: "price", placeholder: "price (wei)", value: "0", size: 10 });
  const submit = h("button", { type: "submit", class: "primary" }, "Grant");
  const form = h("form", { class: "row", "data-form": "grant", "data-refiner": String(refiner.id) },
    h("label", {}, "grantee", grantee), h("label", {}, "table", tableName), h("label", {}, "column", column),
    h("label", {}, "price", price), submit);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(submit, async () => {
      await chain.write("query", "addPermission", [grantee.value.trim(), refiner.id, tableName.value.trim(),
        column.value.trim(), "0x0000000000000000000000000000000000000000", BigInt(price.value || "0")]);
      say("ok", `Permission on ${tableName.value}.${column.value || "*"} granted to ${short(grantee.value.trim())}.`);
      await render();
    });
  });
  return form;
}

async function refinerCard(chain, refiner, render) {
  const perms = await chain.permissions(refiner.id);
  const rows = perms.map((p) => {
    const button = h("button", { type: "button", "data-action": p.approved ? "revoke-permission" : "restore-permission",
      "data-permission": String(p.id) }, p.approved ? "Revoke" : "Restore");
    button.addEventListener("click", () => act(button, async () => {
      await chain.write("query", "updatePermissionApproval", [p.id, !p.approved]);
      say("ok", `Permission ${p.id} ${p.approved ? "revoked" : "restored"}.`);
      await render();
    }));
    return h("tr", { "data-permission": String(p.id) }, h("td", {}, String(p.id)), h("td", { class: "mono" }, short(p.grantee)),
      h("td", {}, p.tableName), h("td", {}, p.columnName || "*"), h("td", {}, formatWei(p.price)),
      h("td", {}, h("span", { class: `pill ${p.approved ? "ok" : "bad"}` }, p.approved ? "granted" : "revoked")), h("td", {}, button));
  });
  return h("div", { "data-refiner": String(refiner.id) },
    h("h3", {}, `Refiner ${refiner.id}: ${refiner.name}`),
    h("p", { class: "muted" }, `schema ${refiner.schemaDefinitionUrl || "(none)"}`),
    table(["id", "grantee", "table", "column", "price", "state", ""], rows, { "data-table": "permissions" }),
    grantForm(chain, refiner, render));
}

async function dlpSection(chain, dlp, payments, render) {
  const refiners = await chain.refiners(dlp.id);
  const earnings = await chain.earnings(dlp.id);
  const claim = h("button", { type: "button", "data-action": "claim", "data-dlp": String(dlp.id), disabled: earnings === 0n }, "Claim");
  claim.addEventListener("click", () => act(claim, async () => {
    await chain.write("query", "claimDlpPayment", [dlp.id, "0x0000000000000000000000000000000000000000"]);
    say("ok", `Claimed ${formatWei(earnings)} to the treasury ${short(dlp.treasuryAddress)}.`);
    await render();
  }));
  const refinerIds = new Set(refiners.map((r) => r.id));
  const activity = refiners.map((r) => {
    const paid = payments.filter((p) => p.refinerId === r.id);
    const total = paid.reduce((sum, p) => sum + p.amount, 0n);
    return h("tr", { "data-activity": String(r.id) }, h("td", {}, `${r.id} ${r.name}`),
      h("td", {}, String(new Set(paid.map((p) => p.jobId)).size)), h("td", {}, formatWei(total)));
  });
  const instructions = await instructionRows(chain, dlp, render);
  return card(`DLP ${dlp.id}: ${dlp.name}`, { "data-dlp": String(dlp.id) },
    h("div", { class: "row" }, h("span", { "data-earnings": String(earnings) }, `Earnings: ${formatWei(earnings)}`), claim,
      h("span", { class: "muted" }, `treasury ${short(dlp.treasuryAddress)}`)),
    h("h3", {}, "Instructions (pending first)"),
    table(["id", "owner", "url", "sha256", "state", ""], instructions.flat(), { "data-table": "instructions" }),
    ...(await Promise.all(refiners.map((r) => refinerCard(chain, r, render)))),
    h("h3", {}, "Activity (paid jobs per refiner, from chain events; never data)"),
    table(["refiner", "paid jobs", "amount paid"], activity, { "data-table": "activity" }),
    refinerIds.size ? null : h("p", { class: "muted" }, "No refiners yet."));
}

export async function renderOwner(root, chain, config) {
  const render = () => renderOwner(root, chain, config);
  root.replaceChildren(h("p", { class: "muted" }, "Reading your DLPs from the chain…"));
  const [dlps, payments] = await Promise.all([chain.myDlps(), chain.payments(config.deploy_block)]);
  if (!dlps.length) {
    root.replaceChildren(card("My DLPs", {}, h("p", {}, `The wallet ${chain.account} owns no DLP on this chain.`)));
    return;
  }
  const sections = await Promise.all(dlps.map((dlp) => dlpSection(chain, dlp, payments, render)));
  root.replaceChildren(h("div", { id: "owner" }, sections));
}
