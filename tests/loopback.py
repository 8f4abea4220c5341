"""A listening socket on a free loopback port, for a uvicorn run in a test's thread or process."""

from __future__ import annotations

import socket


def loopback_listener() -> socket.socket:
    """Bound to 127.0.0.1 on a free port (``getsockname()[1]``), for ``Server.run(sockets=[...])``.

    The protocol is given as TCP on purpose: asyncio turns Nagle off
    (TCP_NODELAY) only on sockets whose ``proto`` says TCP, and a bare
    ``socket.socket()`` says 0. Without it every request on a kept-alive
    connection waited ~40 ms for the client's delayed ACK, which an engine
    bound by uvicorn itself (host and port) never does.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock
