"""Sign in once: EIP-4361 (Sign-In with Ethereum) messages in, short-lived session tokens out.

Pure except for the key file: the caller passes ``now`` and the engine's
domain. Three pieces:

- ``parse_siwe``: the standard EIP-4361 text (registry_client/siwe.py, shared
  with the client that builds it), its errors as ``SIWE_INVALID``;
- ``NonceBook``: nonces the engine issued (``GET /session/nonce``), each usable
  once until it expires, at most ``max_nonces`` outstanding (per process);
- ``SessionKeys``: ``verify_sign_in`` checks a signed message against the
  engine's host, chain and clock and issues a token; ``verify_token`` turns a
  token back into the wallet. A token is stateless:
  ``cs1.<address>.<chain id>.<expires>.<hmac>`` where the HMAC-SHA256 (key from
  a 0600 file) covers address, chain id, registry and expiry, so every engine
  sharing the key file accepts it and none needs a session table.

Errors are ``AuthError`` (401) with stable codes (``SIWE_*`` for the sign-in,
``SESSION_*`` for a token) or ``RequestError`` 503 ``SESSION_NONCES_FULL``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import to_checksum_address

from engine.errors import AuthError, EngineError, RequestError
from registry_client.errors import InputError
from registry_client.siwe import ADDRESS, MAX_MESSAGE_CHARS, SiweMessage, build_siwe, iso_time
from registry_client.siwe import parse_siwe as _parse

__all__ = [
    "MAX_MESSAGE_CHARS",
    "TOKEN_PREFIX",
    "NonceBook",
    "Session",
    "SessionKeys",
    "SiweMessage",
    "build_siwe",
    "load_key",
    "parse_siwe",
    "sessions_from_settings",
]

TOKEN_PREFIX = "cs1"
CLOCK_SKEW_S = 60  # a wallet's clock may run this far ahead of the engine's


def _bad(message: str) -> AuthError:
    return AuthError(f"sign-in message: {message}", code="SIWE_INVALID")


def parse_siwe(text: str) -> SiweMessage:
    """registry_client.siwe.parse_siwe with its error as AuthError(SIWE_INVALID)."""
    try:
        return _parse(text)
    except InputError as exc:
        raise AuthError(exc.message, code="SIWE_INVALID") from exc


class NonceBook:
    """Nonces this engine issued: each valid once, for `ttl_s`, at most `max_nonces` outstanding."""

    def __init__(self, ttl_s: float = 300.0, max_nonces: int = 10_000):
        self.ttl_s = ttl_s
        self.max_nonces = max_nonces
        self._issued: OrderedDict[str, float] = OrderedDict()  # nonce -> expires at, oldest first
        self._lock = threading.Lock()

    def _drop_expired(self, now: float) -> None:
        while self._issued:
            nonce, expires = next(iter(self._issued.items()))
            if expires > now:
                return
            del self._issued[nonce]

    def issue(self, now: float) -> str:
        with self._lock:
            self._drop_expired(now)
            if len(self._issued) >= self.max_nonces:
                raise RequestError(f"the engine holds {self.max_nonces} unused sign-in nonces; retry shortly",
                                   code="SESSION_NONCES_FULL", http_status=503)
            nonce = secrets.token_hex(16)
            self._issued[nonce] = now + self.ttl_s
            return nonce

    def use(self, nonce: str, now: float) -> None:
        """Consume `nonce`; AuthError(SIWE_NONCE_UNKNOWN) if never issued, expired or already used."""
        with self._lock:
            expires = self._issued.pop(nonce, None)
        if expires is None or expires <= now:
            raise AuthError("the sign-in nonce is unknown, expired or already used: ask GET /session/nonce "
                            "for a new one", code="SIWE_NONCE_UNKNOWN")


@dataclass(frozen=True)
class Session:
    token: str
    address: str
    expires_at: int


def load_key(path: Path) -> bytes:
    """The session key in `path`, created (32 random bytes, mode 0600) at first use."""
    if not path.exists():
        # Written whole under a temporary name, then linked: an engine starting at the same
        # moment sees either no file or the complete key, and only one key ever wins.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    try:
        if path.stat().st_mode & 0o077:
            raise EngineError(f"the session key file {path} is readable by others: chmod 600 it",
                              code="CONFIG_INVALID")
        text = path.read_text().strip()
        key = bytes.fromhex(text)
    except (OSError, ValueError) as exc:
        raise EngineError(f"the session key file {path} is unreadable or not hex", code="CONFIG_INVALID") from exc
    if len(key) < 16:
        raise EngineError(f"the session key file {path} holds under 16 bytes", code="CONFIG_INVALID")
    return key


class SessionKeys:
    """Signs in wallets for one engine (chain id + registry) and checks their tokens."""

    def __init__(self, key: bytes, chain_id: int, registry: str, *, max_lifetime_s: int = 3600,
                 nonces: NonceBook | None = None):
        self._key = key
        self.chain_id = chain_id
        self.registry = to_checksum_address(registry)
        self.max_lifetime_s = max_lifetime_s
        self.nonces = nonces or NonceBook()

    def _mac(self, address: str, chain_id: int, expires: int) -> str:
        text = f"{TOKEN_PREFIX}|{address}|{chain_id}|{self.registry}|{expires}".encode()
        return hmac.new(self._key, text, hashlib.sha256).hexdigest()

    def issue(self, address: str, expires: int) -> Session:
        address = to_checksum_address(address)
        token = f"{TOKEN_PREFIX}.{address}.{self.chain_id}.{expires}.{self._mac(address, self.chain_id, expires)}"
        return Session(token, address, expires)

    def verify_token(self, token: str, now: float) -> str:
        """The wallet a token was issued to; AuthError SESSION_INVALID / SESSION_WRONG_CHAIN / SESSION_EXPIRED."""
        parts = token.split(".") if isinstance(token, str) and len(token) < 256 else []
        if len(parts) != 5 or parts[0] != TOKEN_PREFIX or not (parts[2].isdigit() and parts[3].isdigit()):
            raise AuthError("the session token is malformed; sign in again", code="SESSION_INVALID")
        _, address, chain, expires, mac = parts
        if int(chain) != self.chain_id:
            raise AuthError(f"the session token is for chain {int(chain)}, this engine serves chain "
                            f"{self.chain_id}; sign in here", code="SESSION_WRONG_CHAIN")
        if not ADDRESS.match(address) or not hmac.compare_digest(mac, self._mac(address, int(chain), int(expires))):
            raise AuthError("the session token was not issued by this engine (or was altered); sign in again",
                            code="SESSION_INVALID")
        if int(expires) <= now:
            raise AuthError(f"the session expired at {iso_time(int(expires))}; sign in again", code="SESSION_EXPIRED")
        return address

    def verify_sign_in(self, text: str, signature: str, host: str, now: float) -> Session:
        """Check a signed EIP-4361 message for this engine (`host` as the browser reached it)."""
        msg = parse_siwe(text)
        self._check_scope(msg, host)
        expires = self._check_times(msg, now)
        signer = _recover(text, signature)
        if signer != to_checksum_address(msg.address):
            raise AuthError("the signature is not the message's address's", code="SIWE_BAD_SIGNATURE")
        if msg.address != signer:
            raise _bad("the address must be EIP-55 checksummed")
        self.nonces.use(msg.nonce, now)  # last: a bad message does not burn the nonce
        return self.issue(signer, expires)

    def _check_scope(self, msg: SiweMessage, host: str) -> None:
        if msg.domain.lower() != host.lower():
            raise AuthError(f"the message is for {msg.domain[:80]!r}, this engine is {host[:80]!r}",
                            code="SIWE_WRONG_DOMAIN")
        scheme, sep, rest = msg.uri.partition("://")
        if not sep or scheme not in ("http", "https") or rest.split("/", 1)[0].lower() != host.lower():
            raise AuthError(f"the message's URI must be on {host[:80]!r}", code="SIWE_WRONG_DOMAIN")
        if msg.chain_id != self.chain_id:
            raise AuthError(f"the message is for chain {msg.chain_id}, this engine serves chain {self.chain_id}",
                            code="SIWE_WRONG_DOMAIN")
        if msg.version != "1":
            raise _bad(f"Version must be 1, got {msg.version[:8]!r}")

    def _check_times(self, msg: SiweMessage, now: float) -> int:
        if msg.expiration_time is None:
            raise _bad("an Expiration Time is required")
        if msg.issued_at > now + CLOCK_SKEW_S:
            raise _bad("Issued At is in the future")
        if msg.expiration_time <= now:
            raise AuthError("the sign-in message has expired; sign a new one", code="SIWE_EXPIRED")
        if msg.not_before is not None and msg.not_before > now + CLOCK_SKEW_S:
            raise AuthError("the sign-in message is not valid yet (Not Before)", code="SIWE_EXPIRED")
        if msg.expiration_time - msg.issued_at > self.max_lifetime_s or msg.expiration_time > now + self.max_lifetime_s:
            raise _bad(f"the session would last over {self.max_lifetime_s} s; ask for a shorter Expiration Time")
        return msg.expiration_time


def _recover(text: str, signature: str) -> str:
    try:
        raw = bytes.fromhex(signature.removeprefix("0x"))
        if len(raw) != 65:
            raise ValueError("length")
        return to_checksum_address(Account.recover_message(encode_defunct(text=text), signature=raw))
    except Exception as exc:
        raise AuthError("the signature is not a 65-byte personal_sign signature", code="SIWE_BAD_SIGNATURE") from exc


def sessions_from_settings(settings: Any, chain_id: int, registry: str) -> SessionKeys:
    """The engine's sessions: key from `session_key_file` (default `<data_dir>/session.key`);
    settings without either (an app over a fake service) get a key that lives as long as the process."""
    key_file = getattr(settings, "session_key_file", None)
    data_dir = getattr(settings, "data_dir", None)
    if key_file is None and data_dir is not None:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        key_file = Path(data_dir) / "session.key"
    key = load_key(Path(key_file)) if key_file is not None else secrets.token_bytes(32)
    nonces = NonceBook(float(getattr(settings, "session_nonce_ttl_s", 300.0)),
                       int(getattr(settings, "session_max_nonces", 10_000)))
    return SessionKeys(key, chain_id, registry, max_lifetime_s=int(getattr(settings, "session_max_s", 3600)),
                       nonces=nonces)
