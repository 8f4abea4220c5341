"""The HTTP connection to the chain node: one Web3 per URL, its calls kept alive.

``make_web3(url)`` is web3's ``HTTPProvider`` (its encoding, batching, retry
of a dropped call) with the transport underneath chosen once:

- straight to the node (no proxy applies to the URL, no ~/.netrc entry for
  it): ``registry_client/kept_alive.py``'s connections on ``http.client``,
  TLS verified against ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` or
  certifi's bundle, as requests would. An engine makes three RPCs per job;
  through requests each cost about a millisecond of CPU, this a quarter;
- through a proxy or with netrc credentials: one requests ``Session`` with
  them read once (``rpc_session``), since the URL never changes.

Either way the errors are requests' (ConnectionError, Timeout, HTTPError for
HTTP 429/5xx), which ``registry_client/contracts.py`` turns into RpcUnavailable.
"""

from __future__ import annotations

import http.client
import os
import re
import ssl
import urllib.parse
from functools import cache
from typing import Any

import requests
import requests.adapters
import requests.exceptions
import requests.utils
from web3 import HTTPProvider, Web3
from web3._utils.http_session_manager import HTTPSessionManager
from web3.providers.rpc.utils import ExceptionRetryConfiguration

from registry_client.errors import InputError
from registry_client.kept_alive import KeptAlive, shaped_response

__all__ = ["REPLY_MAX_BYTES", "make_web3", "rpc_session"]

_POOL_SIZE = 32  # connections kept to the node: the engine's workers and API threads share them
REPLY_MAX_BYTES = 64 * 1024 * 1024  # a node's answer is input too (a wide eth_getLogs is the big one)


def make_web3(rpc_url: str, timeout: float = 10.0) -> Web3:
    if not re.match(r"^https?://", rpc_url or ""):
        raise InputError(f"RPC URL must start with http:// or https://, got {rpc_url!r}")
    # One quick retry: a local node that is down should fail fast, not after ~4 s.
    retry = ExceptionRetryConfiguration(
        errors=(requests.exceptions.ConnectionError, requests.exceptions.Timeout),
        retries=1, backoff_factor=0.05)
    session = rpc_session(rpc_url)
    provider = HTTPProvider(rpc_url, request_kwargs={"timeout": timeout},
                            exception_retry_configuration=retry, session=session)
    if not session.proxies and session.auth is None:
        provider._request_session_manager = _KeptAliveNode(rpc_url, session.verify)
    return Web3(provider)


def rpc_session(rpc_url: str) -> requests.Session:
    """One requests Session for every call to ``rpc_url``, from any thread.

    What requests reads from the environment on every request (the proxy for
    this URL, NO_PROXY, a CA bundle, ~/.netrc) is read once here instead: the
    URL never changes, and that per-request look-up was about a third of a
    millisecond of CPU for each RPC.
    """
    session = requests.Session()
    session.trust_env = False
    session.proxies = requests.utils.get_environ_proxies(rpc_url)
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.auth = requests.utils.get_netrc_auth(rpc_url)
    adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=_POOL_SIZE)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class _KeptAliveNode(HTTPSessionManager):
    """web3's session manager with its one POST on kept-alive ``http.client`` connections."""

    def __init__(self, rpc_url: str, verify: bool | str):
        super().__init__()
        url = urllib.parse.urlsplit(rpc_url)
        self._target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        host, port = url.hostname or "", url.port
        if url.scheme == "https":
            context = _tls_context(verify if isinstance(verify, str) else None)

            def connect(timeout: float) -> http.client.HTTPConnection:
                return http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        else:
            def connect(timeout: float) -> http.client.HTTPConnection:
                return http.client.HTTPConnection(host, port, timeout=timeout)
        self._pool = KeptAlive(connect, idle_kept=_POOL_SIZE)

    def make_post_request(self, endpoint_uri: Any, data: bytes | dict[str, Any], **kwargs: Any) -> bytes:
        body = data if isinstance(data, bytes) else str(data).encode()
        with self._pool.request("POST", self._target, body=body, headers=kwargs.get("headers"),
                                timeout=kwargs.get("timeout", 10.0), what="the RPC call") as reply:
            content = reply.read_all(REPLY_MAX_BYTES)
        if not 200 <= reply.status < 300:
            shaped = shaped_response(reply, content, str(endpoint_uri))
            shaped.raise_for_status()  # 4xx/5xx: HTTPError, as requests' would be
            raise requests.exceptions.HTTPError(  # a redirect: not followed for a node
                f"the node answered HTTP {reply.status} (redirects are not followed)", response=shaped)
        return content


@cache
def _tls_context(bundle: str | None) -> ssl.SSLContext:
    """Verified TLS with requests' trust: the bundle it was told to use, else certifi's."""
    if bundle is None:
        import certifi

        bundle = certifi.where()
    return ssl.create_default_context(cafile=bundle)
