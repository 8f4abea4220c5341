// This engine's HTTP API, read with the session token (Authorization: Bearer) after one sign-in.
import { getAddress } from "viem";
import { createSiweMessage } from "viem/siwe";
import { personalSign } from "./wallet.js";

export class ProblemError extends Error {
  constructor(status, problem) {
    super(`${problem.detail} (${problem.code})`);
    this.status = status;
    this.problem = problem;
  }
}

let token = null;
let sessionEnded = () => {};

// Called when the engine refuses the token (expired, another key…): the page asks to sign in again.
export function onSessionEnded(fn) {
  sessionEnded = fn;
}

export function signedIn() {
  return token !== null;
}

export function signOut() {
  // Sessions are stateless on the engine: forgetting the token is signing out.
  token = null;
  sessionStorage.removeItem("console-session");
}

export function restoreSession(address, chain) {
  const saved = JSON.parse(sessionStorage.getItem("console-session") || "null");
  if (saved && saved.address === address && saved.chain === chain && saved.expires_at * 1000 > Date.now()) {
    token = saved.token;
  }
  return signedIn();
}

export async function api(path, { method = "GET", body, auth = true, raw = false } = {}) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (auth && token) headers.Authorization = `Bearer ${token}`;
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!resp.ok) {
    let problem;
    try {
      problem = await resp.json();
    } catch {
      problem = { code: `HTTP_${resp.status}`, detail: resp.statusText };
    }
    if (resp.status === 401 && /^SESSION_/.test(problem.code || "")) {
      signOut();
      sessionEnded(problem);
    }
    throw new ProblemError(resp.status, { code: problem.code || `HTTP_${resp.status}`, detail: problem.detail || "" });
  }
  return raw ? resp : resp.json();
}

// A route another part of the engine adds (audit, schema, quote, job list): 404 means "not on this engine yet".
export async function optional(path, options) {
  try {
    return { ok: true, value: await api(path, options) };
  } catch (err) {
    // No such route (404 "no route ...") or only other methods on that path (405).
    const noRoute = err instanceof ProblemError && ((err.status === 404 && err.problem.detail.startsWith("no route"))
      || err.status === 405);
    if (noRoute) {
      return { ok: false, missing: true };
    }
    throw err;
  }
}

export async function signIn(eth, address, config) {
  const nonce = await api("/session/nonce", { auth: false });
  const now = new Date();
  const lifetime = Math.min(config.session.max_lifetime_s, 3600);
  const message = createSiweMessage({
    domain: nonce.domain,
    address: getAddress(address),
    statement: "Sign in to the compute engine console: read and cancel your jobs without a signature per request.",
    uri: `${location.origin}/console`,
    version: "1",
    chainId: config.chain_id,
    nonce: nonce.nonce,
    issuedAt: now,
    expirationTime: new Date(now.getTime() + (lifetime - 30) * 1000),
  });
  const signature = await personalSign(eth, address, message);
  const session = await api("/session", { method: "POST", body: { message, signature }, auth: false });
  token = session.token;
  sessionStorage.setItem("console-session", JSON.stringify({ ...session, chain: config.chain_id }));
  return session;
}

export const jobs = {
  submit: (body) => api("/jobs", { method: "POST", body, auth: false }),
  get: (id, status, wait) => api(`/jobs/${encodeURIComponent(id)}` + (status ? `?status=${status}&wait=${wait}` : "")),
  cancel: (id) => api(`/jobs/${encodeURIComponent(id)}/cancel`, { method: "POST" }),
  list: () => optional("/jobs?limit=50"),
  artifacts: (id) => api(`/jobs/${encodeURIComponent(id)}/artifacts`),
  async download(url) {
    const resp = await api(url, { raw: true });
    return resp.blob();
  },
};

export const audit = (instructionId) => optional(`/instructions/${instructionId}/inspect`, { auth: false });
export const schema = (refinerId) => optional(`/refiners/${refinerId}/schema`);
export const quote = (body) => optional("/jobs/quote", { method: "POST", body });
