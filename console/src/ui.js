// DOM helpers and the one message area: every failure ends up as a clear sentence here.
import { BaseError, ContractFunctionRevertedError, UserRejectedRequestError } from "viem";

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function table(headers, rows, attrs = {}) {
  return h("table", attrs, h("thead", {}, h("tr", {}, headers.map((t) => h("th", {}, t)))),
    h("tbody", {}, rows));
}

export function card(title, attrs, ...children) {
  return h("section", { class: "card", ...attrs }, h("h2", {}, title), ...children);
}

export function say(kind, text, id) {
  const box = document.getElementById("messages");
  box.replaceChildren(h("div", { class: `msg ${kind}`, "data-kind": kind, id: id || null }, text));
}

export function clearMessages() {
  document.getElementById("messages").replaceChildren();
}

// EIP-1193 4001: the user said no. Anything else is named as precisely as we can.
export function isRejection(err) {
  if (err?.code === 4001) return true;
  if (err instanceof BaseError) return Boolean(err.walk((e) => e instanceof UserRejectedRequestError || e?.code === 4001));
  return false;
}

export function describeError(err) {
  if (isRejection(err)) return "You rejected the request in your wallet (EIP-1193 error 4001): nothing was signed or sent.";
  if (err instanceof BaseError) {
    const reverted = err.walk((e) => e instanceof ContractFunctionRevertedError);
    if (reverted) {
      const name = reverted.data?.errorName || reverted.reason || "an unknown error";
      const args = (reverted.data?.args || []).map(String).join(", ");
      return `The transaction reverted: ${name}(${args}). Nothing was changed on chain.`;
    }
    return err.shortMessage || err.message;
  }
  if (err?.problem) return `${err.problem.detail} (${err.problem.code})`;
  return err?.message || String(err);
}

export function fail(err) {
  // A refused session was already reported (and sign-in offered) by the engine module.
  if (/^SESSION_/.test(err?.problem?.code || "")) return;
  say("error", describeError(err));
}

// Run an action from a button: disable it meanwhile, report failure in the message area.
export async function act(button, fn) {
  if (button) button.disabled = true;
  try {
    return await fn();
  } catch (err) {
    fail(err);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

export function formatWei(value) {
  return `${value.toString()} wei`;
}

export function short(address) {
  return address ? `${address.slice(0, 6)}…${address.slice(-4)}` : "";
}
