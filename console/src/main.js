// Boot: config from the engine, then the wallet (present? right chain? account?), sign-in, the two desks.
import { connectChain } from "./chain.js";
import { api, onSessionEnded, restoreSession, signIn, signOut, signedIn } from "./engine.js";
import { renderBuilder } from "./builder.js";
import { renderOwner } from "./owner.js";
import { act, clearMessages, fail, h, say, short } from "./ui.js";
import { chainId, provider, requestAccount, switchChain } from "./wallet.js";

const state = { config: null, eth: null, account: null, chain: null, tab: "owner" };

function bar(...items) {
  document.getElementById("wallet-bar").replaceChildren(...items);
}

function main(...children) {
  document.getElementById("main").replaceChildren(...children);
}

async function showTab(tab) {
  state.tab = tab;
  for (const el of document.querySelectorAll(".tab")) el.classList.toggle("active", el.dataset.tab === tab);
  const root = h("div", { id: `panel-${tab}` });
  main(root);
  try {
    await (tab === "owner" ? renderOwner : renderBuilder)(root, state.chain, state.config);
  } catch (err) {
    fail(err);
  }
}

function signedInBar() {
  const out = h("button", { type: "button", id: "sign-out" }, "Sign out");
  out.addEventListener("click", () => { signOut(); start(); });
  bar(h("span", { id: "account", class: "mono" }, short(state.account)), h("span", { class: "pill ok", id: "session" }, "signed in"), out);
}

function askSignIn() {
  const button = h("button", { type: "button", class: "primary", id: "sign-in" }, "Sign in with your wallet");
  button.addEventListener("click", () => act(button, async () => {
    await signIn(state.eth, state.account, state.config);
    clearMessages();
    await ready();
  }));
  bar(h("span", { id: "account", class: "mono" }, short(state.account)), button);
  main(h("p", {}, "Sign in once (one EIP-4361 message): reads and cancels then need no signature per request."));
}

async function ready() {
  signedInBar();
  document.getElementById("tabs").hidden = false;
  await showTab(state.tab);
}

async function checkChain() {
  const current = await chainId(state.eth);
  if (current === state.config.chain_id) return true;
  const button = h("button", { type: "button", class: "primary", id: "switch-chain" }, `Switch to chain ${state.config.chain_id}`);
  button.addEventListener("click", () => act(button, async () => {
    try {
      await switchChain(state.eth, state.config.chain_id);
    } catch (err) {
      if (err?.code !== 4902) throw err;
      throw new Error(`Your wallet does not know chain ${state.config.chain_id} (EIP-3326 error 4902): `
        + "add this network in the wallet, then switch again.");
    }
    await start();
  }));
  say("error", `Wrong chain: the wallet is on chain ${current}, this engine serves chain ${state.config.chain_id}.`, "wrong-chain");
  bar(button);
  return false;
}

async function start() {
  document.getElementById("tabs").hidden = true;
  main();
  state.eth = provider();
  if (!state.eth) {
    say("error", "No wallet found: this console needs an EIP-1193 browser wallet (window.ethereum). "
      + "Install or enable one, then reload.", "no-wallet");
    return;
  }
  if (!(await checkChain())) return;
  const connect = h("button", { type: "button", class: "primary", id: "connect" }, "Connect wallet");
  connect.addEventListener("click", () => act(connect, async () => {
    state.account = await requestAccount(state.eth);
    state.chain = connectChain(state.eth, state.config, state.account);
    clearMessages();
    if (restoreSession(state.account, state.config.chain_id) && signedIn()) await ready();
    else askSignIn();
  }));
  bar(connect);
}

async function boot() {
  for (const el of document.querySelectorAll(".tab")) el.addEventListener("click", () => showTab(el.dataset.tab));
  try {
    state.config = await api("/console/config.json", { auth: false });
  } catch (err) {
    fail(err);
    return;
  }
  onSessionEnded((problem) => {
    askSignIn();
    document.getElementById("tabs").hidden = true;
    say("error", `Your session ended: ${problem.detail} (${problem.code}). Sign in again.`, "session-ended");
  });
  const eth = provider();
  eth?.on?.("chainChanged", () => start());
  eth?.on?.("accountsChanged", () => { signOut(); start(); });
  await start();
}

boot();
