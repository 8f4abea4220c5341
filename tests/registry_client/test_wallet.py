"""Wallet loading from keystore files and env vars (no chain)."""

from __future__ import annotations

import json

import pytest
from eth_account import Account

from registry_client.errors import WalletError
from registry_client.wallet import create_keystore, load_env_key, load_keystore, load_wallet

KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
ADDRESS = Account.from_key(KEY).address


@pytest.fixture
def keystore(tmp_path):
    path = tmp_path / "k.json"
    assert create_keystore(path, "pw", key=KEY, iterations=2) == ADDRESS
    return path


def test_keystore_with_env_password(keystore, monkeypatch):
    monkeypatch.setenv("REGISTRY_PASSWORD", "pw")
    assert load_keystore(keystore).address == ADDRESS
    assert load_wallet(keystore=keystore).address == ADDRESS


def test_keystore_with_prompt(keystore, monkeypatch):
    monkeypatch.delenv("REGISTRY_PASSWORD", raising=False)
    asked = []
    account = load_keystore(keystore, prompt=lambda text: asked.append(text) or "pw")
    assert account.address == ADDRESS and str(keystore) in asked[0]
    with pytest.raises(WalletError, match="set REGISTRY_PASSWORD"):
        load_keystore(keystore)


def test_keystore_wrong_password(keystore):
    with pytest.raises(WalletError, match=f"wrong password for keystore {keystore}") as info:
        load_keystore(keystore, password="nope")
    assert info.value.code == "WALLET_ERROR"


def test_keystore_missing_or_not_a_keystore(tmp_path):
    with pytest.raises(WalletError, match="not found"):
        load_keystore(tmp_path / "none.json", password="pw")
    junk = tmp_path / "junk.json"
    junk.write_text("not json")
    with pytest.raises(WalletError, match="is not JSON"):
        load_keystore(junk, password="pw")
    junk.write_text(json.dumps({"hello": 1}))
    with pytest.raises(WalletError, match="not an encrypted keystore"):
        load_keystore(junk, password="pw")


def test_create_keystore_never_overwrites(keystore):
    before = keystore.read_text()
    with pytest.raises(WalletError, match="refusing to overwrite"):
        create_keystore(keystore, "other")
    assert keystore.read_text() == before
    assert oct(keystore.stat().st_mode & 0o777) == "0o600"


def test_env_key(monkeypatch):
    monkeypatch.setenv("MY_KEY", KEY)
    assert load_env_key("MY_KEY").address == ADDRESS
    monkeypatch.setenv("MY_KEY", KEY[2:])  # without 0x is fine too
    assert load_wallet(key_env="MY_KEY").address == ADDRESS


@pytest.mark.parametrize("value, fragment", [
    (None, "MY_KEY is not set"), ("", "MY_KEY is not set"), ("0x1234", "does not hold a valid private key"),
    ("zz" * 32, "does not hold a valid private key"),
])
def test_env_key_invalid(monkeypatch, value, fragment):
    if value is None:
        monkeypatch.delenv("MY_KEY", raising=False)
    else:
        monkeypatch.setenv("MY_KEY", value)
    with pytest.raises(WalletError, match=fragment) as info:
        load_env_key("MY_KEY")
    assert not value or value not in str(info.value)


def test_exactly_one_source(keystore):
    with pytest.raises(WalletError, match="not both"):
        load_wallet(keystore=keystore, key_env="X")
    with pytest.raises(WalletError, match="pass --keystore FILE or --key-env VAR"):
        load_wallet()
