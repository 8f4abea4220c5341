"""An EIP-1193 wallet for the browser tests: `window.ethereum` in the page, anvil dev keys in Python.

``install(page, wallet)`` adds an init script defining ``window.ethereum``
whose ``request()`` calls the exposed Python function ``__walletRequest``.
``FakeWallet`` answers as a wallet would: accounts, chain id (and a switch),
``personal_sign`` and ``eth_signTypedData_v4`` with the account's key,
``eth_sendTransaction`` signed locally and sent raw to anvil; everything else
goes to anvil as JSON-RPC. Methods in ``reject`` fail with EIP-1193's 4001.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import requests
from eth_account.messages import encode_defunct, encode_typed_data
from web3 import HTTPProvider, Web3

__all__ = ["FakeWallet", "install"]

_INIT = """
(() => {
  const listeners = {};
  const emit = (event, value) => (listeners[event] || []).forEach((fn) => fn(value));
  window.ethereum = {
    isFakeWallet: true,
    async request({ method, params }) {
      const reply = JSON.parse(await window.__walletRequest(method, JSON.stringify(params ?? [])));
      if (reply.error) {
        const err = new Error(reply.error.message);
        err.code = reply.error.code;
        if (reply.error.data !== undefined) err.data = reply.error.data;
        throw err;
      }
      if (method === "wallet_switchEthereumChain") setTimeout(() => emit("chainChanged", params[0].chainId), 0);
      return reply.result;
    },
    on(event, fn) { (listeners[event] ||= []).push(fn); },
    removeListener(event, fn) { listeners[event] = (listeners[event] || []).filter((f) => f !== fn); },
  };
})();
"""


class WalletRpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


@dataclass
class FakeWallet:
    rpc_url: str
    account: Any
    chain_id: int
    reject: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.w3 = Web3(HTTPProvider(self.rpc_url, request_kwargs={"timeout": 10}))
        self._http = requests.Session()

    def request(self, method: str, params_json: str) -> str:
        self.calls.append(method)
        try:
            result = self._handle(method, json.loads(params_json or "[]"))
        except WalletRpcError as exc:
            error = {"code": exc.code, "message": exc.message}
            if exc.data is not None:
                error["data"] = exc.data
            return json.dumps({"error": error})
        return json.dumps({"result": result})

    def _handle(self, method: str, params: list) -> Any:
        if method in self.reject:
            raise WalletRpcError(4001, "User rejected the request.")
        if method == "eth_chainId":
            return hex(self.chain_id)
        if method in ("eth_accounts", "eth_requestAccounts"):
            return [self.account.address]
        if method == "wallet_switchEthereumChain":
            self.chain_id = int(params[0]["chainId"], 16)
            return None
        if method == "personal_sign":
            return self._sig(self.account.sign_message(encode_defunct(hexstr=params[0])))
        if method == "eth_signTypedData_v4":
            return self._sig(self.account.sign_message(encode_typed_data(full_message=json.loads(params[1]))))
        if method == "eth_sendTransaction":
            return self._send(params[0])
        return self._forward(method, params)

    @staticmethod
    def _sig(signed: Any) -> str:
        return "0x" + bytes(signed.signature).hex()

    def _send(self, tx: dict) -> str:
        call = {"from": self.account.address, "to": tx.get("to"), "data": tx.get("data", "0x"),
                "value": int(tx.get("value", "0x0"), 16)}
        gas = int(tx["gas"], 16) if tx.get("gas") else int(self._forward("eth_estimateGas", [tx]), 16)
        signed = self.account.sign_transaction({
            **call, "gas": gas, "gasPrice": self.w3.eth.gas_price, "chainId": self.w3.eth.chain_id,
            "nonce": self.w3.eth.get_transaction_count(self.account.address, "pending"),
        })
        return self._forward("eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()])

    def _forward(self, method: str, params: list) -> Any:
        reply = self._http.post(self.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
                                timeout=10).json()
        if "error" in reply:
            err = reply["error"]
            raise WalletRpcError(err.get("code", -32603), err.get("message", "error"), err.get("data"))
        return reply["result"]


def install(page: Any, wallet: FakeWallet) -> None:
    page.expose_function("__walletRequest", wallet.request)
    page.add_init_script(_INIT)
