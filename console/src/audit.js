// One instruction's static audit (GET /instructions/{id}/inspect): what the image runs, before approval.
import { audit } from "./engine.js";
import { describeError, h, table } from "./ui.js";

const list = (items) => (items?.length ? items.join(", ") : "none");

function imagePart(image) {
  const rows = [
    ["entrypoint", JSON.stringify(image.entrypoint ?? null)], ["cmd", JSON.stringify(image.cmd ?? null)],
    ["user", image.user || "(root)"], ["working dir", image.working_dir || "/"],
    ["environment", list(image.env_names)], ["exposed ports", list(image.exposed_ports)],
    ["volumes", list(image.volumes)], ["input layout", image.layout || "vana (default)"],
    ["labels", Object.entries(image.labels || {}).map(([k, v]) => `${k}=${v}`).join("; ") || "none"],
  ];
  return table(["", ""], rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", { class: "mono" }, v))));
}

export async function renderAudit(instructionId, into) {
  into.replaceChildren(h("p", { class: "muted" }, "Reading the image archive…"));
  let result;
  try {
    result = await audit(instructionId);
  } catch (err) {
    // A refusal (hash mismatch, fetch failed, too large…) is itself what the owner must see.
    into.replaceChildren(h("p", { class: "audit-failed pill bad" }, `Audit failed: ${describeError(err)}`));
    throw err;
  }
  if (!result.ok) {
    into.replaceChildren(h("p", { class: "audit-missing" },
      "This engine does not offer the image audit yet (GET /instructions/{id}/inspect answered 404). "
      + "Inspect the archive with `registry instruction inspect` before approving."));
    return;
  }
  const a = result.value;
  const warnings = (a.warnings || []).map((w) => h("li", { class: "pill warn" }, `${w.code}: ${w.message}`));
  const files = a.files || {};
  const sources = (a.sources || []).map((s) => h("details", {}, h("summary", {}, `${s.path} (${s.size} bytes)`),
    h("pre", {}, s.text + (s.truncated ? "\n…(truncated)" : ""))));
  const packages = Object.entries(a.packages || {}).filter(([, pkgs]) => Array.isArray(pkgs))
    .map(([kind, pkgs]) => `${kind}: ${pkgs.length}`).join(", ");
  into.replaceChildren(h("div", { class: "audit", "data-instruction": String(instructionId) },
    h("h3", {}, `Audit of instruction ${instructionId}`),
    h("p", { class: "mono" }, `sha256 ${a.sha256} · ${a.archive_bytes} bytes · ${(a.layers || []).length} layers`),
    warnings.length ? h("ul", { class: "warnings" }, warnings) : h("p", { class: "pill ok" }, "no warnings"),
    imagePart(a.image || {}),
    h("p", {}, `Files: ${files.count ?? "?"} (${files.total_bytes ?? "?"} bytes), executables `
      + `${files.executables?.count ?? "?"}, setuid ${list(files.setuid)}, setgid ${list(files.setgid)}`),
    h("p", {}, `Packages: ${packages || "none found"}`),
    sources.length ? h("div", {}, h("h3", {}, "The job's source"), sources) : null));
}
