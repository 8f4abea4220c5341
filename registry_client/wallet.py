"""Wallet loading: an encrypted keystore JSON file or a key held in a named env var.

A private key is never taken as a command-line argument (it would land in
shell history and `ps`). The two ways in:

- `load_keystore(path)`: password from `REGISTRY_PASSWORD`, else from the
  `prompt` callable (the CLI passes a hidden prompt);
- `load_env_key("VAR")`: the hex key in environment variable VAR.

`create_keystore` writes a new keystore file (for set-up scripts and docs).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from registry_client.errors import WalletError

__all__ = [
    "PASSWORD_ENV",
    "LocalAccount",
    "create_keystore",
    "load_env_key",
    "load_keystore",
    "load_wallet",
]

PASSWORD_ENV = "REGISTRY_PASSWORD"


def _password(path: Path, prompt: Callable[[str], str] | None) -> str:
    env = os.environ.get(PASSWORD_ENV)
    if env is not None:
        return env
    if prompt is None:
        raise WalletError(f"no password for keystore {path}: set {PASSWORD_ENV}")
    return prompt(f"Password for {path}")


def load_keystore(
    path: str | os.PathLike[str], *, password: str | None = None, prompt: Callable[[str], str] | None = None
) -> LocalAccount:
    """Decrypt a keystore JSON file; WalletError when missing, invalid or locked."""
    p = Path(path)
    try:
        keyfile = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise WalletError(f"keystore {p} not found") from exc
    except OSError as exc:
        raise WalletError(f"cannot read keystore {p}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise WalletError(f"keystore {p} is not JSON") from exc
    if not isinstance(keyfile, dict) or "crypto" not in {k.lower() for k in keyfile}:
        raise WalletError(f"{p} is not an encrypted keystore file")
    secret = password if password is not None else _password(p, prompt)
    try:
        key = Account.decrypt(keyfile, secret)
    except ValueError as exc:
        if "mac mismatch" in str(exc).lower():
            raise WalletError(f"wrong password for keystore {p}") from exc
        raise WalletError(f"keystore {p} is invalid: {exc}") from exc
    except (KeyError, TypeError) as exc:
        raise WalletError(f"keystore {p} is invalid: missing {exc}") from exc
    return Account.from_key(key)


def load_env_key(var: str) -> LocalAccount:
    """Build an account from the hex private key held in env var `var`."""
    value = os.environ.get(var)
    if value is None or not value.strip():
        raise WalletError(f"environment variable {var} is not set")
    try:
        return Account.from_key(value.strip())
    except (ValueError, TypeError) as exc:
        # Never echo the value: it is (almost) a private key.
        raise WalletError(f"environment variable {var} does not hold a valid private key") from exc


def load_wallet(
    keystore: str | os.PathLike[str] | None = None,
    key_env: str | None = None,
    *,
    prompt: Callable[[str], str] | None = None,
) -> LocalAccount:
    """Exactly one of `keystore` / `key_env`; WalletError otherwise."""
    if keystore and key_env:
        raise WalletError("use either --keystore or --key-env, not both")
    if keystore:
        return load_keystore(keystore, prompt=prompt)
    if key_env:
        return load_env_key(key_env)
    raise WalletError("this command sends a transaction: pass --keystore FILE or --key-env VAR")


def create_keystore(
    path: str | os.PathLike[str],
    password: str,
    *,
    key: str | bytes | None = None,
    iterations: int | None = None,
) -> str:
    """Encrypt `key` (or a fresh one) into a new keystore file; return its address.

    Refuses to overwrite an existing file: a keystore may be the only copy of a key.
    """
    p = Path(path)
    if p.exists():
        raise WalletError(f"{p} already exists: refusing to overwrite a keystore")
    account = Account.from_key(key) if key is not None else Account.create()
    keyfile = Account.encrypt(account.key, password, iterations=iterations)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(keyfile, fh)
    return account.address
