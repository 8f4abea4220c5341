// The browser wallet (EIP-1193): presence, chain, accounts, the sign-in signature.
import { numberToHex } from "viem";

export function provider() {
  return typeof window !== "undefined" && window.ethereum ? window.ethereum : null;
}

export async function chainId(eth) {
  return Number(BigInt(await eth.request({ method: "eth_chainId" })));
}

export async function switchChain(eth, id) {
  await eth.request({ method: "wallet_switchEthereumChain", params: [{ chainId: numberToHex(id) }] });
}

export async function requestAccount(eth) {
  const accounts = await eth.request({ method: "eth_requestAccounts" });
  if (!accounts?.length) throw new Error("The wallet shared no account.");
  return accounts[0];
}

export async function personalSign(eth, address, text) {
  const hex = "0x" + Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, "0")).join("");
  return eth.request({ method: "personal_sign", params: [hex, address] });
}

// The JobRequest typed data exactly as the engine's config.json states it, with this message.
export async function signTypedData(eth, address, shape, message) {
  const doc = { types: shape.types, primaryType: shape.primaryType, domain: shape.domain, message };
  return eth.request({ method: "eth_signTypedData_v4", params: [address, JSON.stringify(doc)] });
}

const ZERO = { address: "0x0000000000000000000000000000000000000000", bool: false, string: "", bytes: "0x" };

// The message for a primary type as the engine's config states it: known fields from `values`,
// any field the console does not know (a newer engine's) as its type's zero value.
export function messageFor(shape, values) {
  const message = {};
  for (const { name, type } of shape.types[shape.primaryType]) {
    if (name in values) message[name] = values[name];
    else if (/^u?int\d*$/.test(type)) message[name] = 0;
    else if (/^bytes\d+$/.test(type)) message[name] = "0x" + "00".repeat(Number(type.slice(5)));
    else message[name] = ZERO[type] ?? null;
  }
  return message;
}
