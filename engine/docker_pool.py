"""One connection pool for the Docker socket, whatever the URL: keep-alive instead of a connect per call.

docker-py's ``UnixHTTPAdapter`` keys its pools by the request's whole URL
(``.../containers/<id>/json``), so every call about a new container or image
makes a new pool and opens a new socket, and past 25 URLs the least recent
pools are closed: a job's dozen Docker calls each paid a connect and a close
(~7 % of the engine's CPU under load, measured with py-spy). Every pool of
that adapter talks to the same socket, so one pool serves them all. And no
proxy setting applies to a socket: the client stops reading the environment
for one on every call.
"""

from __future__ import annotations

from typing import Any

from docker.transport.unixconn import UnixHTTPAdapter

__all__ = ["share_one_pool"]

_ONE_KEY = "http+docker://localhost"  # the pool's key; the socket path is the adapter's


class _OnePoolAdapter(UnixHTTPAdapter):
    def get_connection(self, url: str, proxies: Any = None) -> Any:
        return super().get_connection(_ONE_KEY, proxies)


def share_one_pool(client: Any) -> None:
    """Make ``client`` (a DockerClient or APIClient) reuse one pool for its Unix socket."""
    api = getattr(client, "api", client)
    old = getattr(api, "_custom_adapter", None)
    if type(old) is not UnixHTTPAdapter:
        return  # TCP, SSH, npipe: requests' own adapters pool by host; or done already
    new = _OnePoolAdapter("http+unix://" + old.socket_path, old.timeout, pool_connections=1,
                          max_pool_size=old.max_pool_size)
    api.mount("http+docker://", new)
    api._custom_adapter = new
    old.close()
    # No proxy, CA bundle or netrc applies to a Unix socket: skip requests' look-up of
    # them in the environment on every call (a third of a millisecond of CPU each).
    api.trust_env = False
