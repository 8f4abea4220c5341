"""Unit tests of engine/sessions.py: EIP-4361 parsing, sign-in checks, nonces, stateless tokens."""

from __future__ import annotations

import os
import stat
from dataclasses import replace

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from engine.errors import AuthError, EngineError, RequestError
from engine.sessions import NonceBook, SessionKeys, SiweMessage, build_siwe, load_key, parse_siwe
from tests.conftest import ANVIL_KEYS

WALLET = Account.from_key(ANVIL_KEYS[3])
OTHER = Account.from_key(ANVIL_KEYS[4])
REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
HOST = "127.0.0.1:8000"
NOW = 1_800_000_000


def keys(key: bytes = b"k" * 32, chain_id: int = 31337, **kw) -> SessionKeys:
    return SessionKeys(key, chain_id, REGISTRY, max_lifetime_s=3600, **kw)


def message(nonce: str, **changes) -> SiweMessage:
    base = SiweMessage(domain=HOST, address=WALLET.address, statement="Sign in to the compute engine.",
                       uri=f"http://{HOST}/console", version="1", chain_id=31337, nonce=nonce,
                       issued_at=NOW - 5, expiration_time=NOW + 1800)
    return replace(base, **changes)


def sign(text: str, account=WALLET) -> str:
    return "0x" + bytes(account.sign_message(encode_defunct(text=text)).signature).hex()


def sign_in(sessions: SessionKeys, host: str = HOST, account=WALLET, **changes):
    nonce = sessions.nonces.issue(NOW)
    text = build_siwe(message(nonce, **changes))
    return sessions.verify_sign_in(text, sign(text, account), host, NOW)


def code_of(fn, *args, **kw) -> str:
    with pytest.raises((AuthError, RequestError)) as info:
        fn(*args, **kw)
    return info.value.code


@pytest.mark.parametrize("statement", ["Sign in to the compute engine.", None])
def test_build_and_parse_round_trip(statement):
    msg = replace(message("abcdef0123456789", statement=statement), not_before=NOW - 10, request_id="r1",
                  resources=("https://example.org/a", "ipfs://b"))
    assert parse_siwe(build_siwe(msg)) == msg


def test_parses_the_standard_example_text():
    text = ("service.org wants you to sign in with your Ethereum account:\n"
            "0xe5A12547fe4E872D192E3eCecb76F2Ce1aeA4946\n\n"
            "I accept the ServiceOrg Terms of Service: https://service.org/tos\n\n"
            "URI: https://service.org/login\nVersion: 1\nChain ID: 1\nNonce: 32891757\n"
            "Issued At: 2021-09-30T16:25:24.000Z\n"
            "Resources:\n- ipfs://Qme7ss3ARVgxv6rXqVPiikMJ8u2NLgmgszg13pYrDKEoiu\n- https://example.com/my-web2-claim.json")
    msg = parse_siwe(text)
    assert (msg.domain, msg.chain_id, msg.nonce, msg.issued_at) == ("service.org", 1, "32891757", 1633019124)
    assert msg.expiration_time is None and len(msg.resources) == 2


@pytest.mark.parametrize("text", [
    "", "hello", "x wants you to sign in with your Ethereum account:\nnot-an-address\n\n\nURI: a",
    build_siwe(message("abcdef0123456789")).replace("Version: 1\n", ""),  # a required field missing
    build_siwe(message("abcdef0123456789")).replace("Chain ID: 31337", "Chain ID: 0x7a69"),
    build_siwe(message("short")),  # nonce under 8 characters
    build_siwe(message("abcdef0123456789")).replace("URI: ", "Uri: "),
    build_siwe(message("abcdef0123456789")) + "\nURI: http://evil",  # repeated field
    build_siwe(message("abcdef0123456789")).replace("2027-", "20x7-"),  # a bad time
    "a" * 5000,
])
def test_malformed_messages_are_siwe_invalid(text):
    assert code_of(parse_siwe, text) == "SIWE_INVALID"


def test_sign_in_issues_a_token_that_verifies():
    sessions = keys()
    session = sign_in(sessions)
    assert session.address == WALLET.address and session.expires_at == NOW + 1800
    assert sessions.verify_token(session.token, NOW + 10) == WALLET.address
    # Another engine sharing the key file accepts it: nothing is kept server-side.
    assert keys().verify_token(session.token, NOW + 10) == WALLET.address


@pytest.mark.parametrize(("changes", "host", "code"), [
    ({"domain": "evil.example"}, HOST, "SIWE_WRONG_DOMAIN"),
    ({}, "other.host:9", "SIWE_WRONG_DOMAIN"),
    ({"uri": "http://evil.example/console"}, HOST, "SIWE_WRONG_DOMAIN"),
    ({"chain_id": 1}, HOST, "SIWE_WRONG_DOMAIN"),
    ({"version": "2"}, HOST, "SIWE_INVALID"),
    ({"expiration_time": None}, HOST, "SIWE_INVALID"),
    ({"expiration_time": NOW - 1}, HOST, "SIWE_EXPIRED"),
    ({"not_before": NOW + 600}, HOST, "SIWE_EXPIRED"),
    ({"issued_at": NOW + 600, "expiration_time": NOW + 900}, HOST, "SIWE_INVALID"),
    ({"expiration_time": NOW + 3601}, HOST, "SIWE_INVALID"),  # longer than the engine allows
    ({"address": WALLET.address.lower()}, HOST, "SIWE_INVALID"),  # not EIP-55
])
def test_sign_in_refusals(changes, host, code):
    assert code_of(sign_in, keys(), host, **changes) == code


def test_a_signature_by_another_wallet_is_refused():
    assert code_of(sign_in, keys(), HOST, OTHER) == "SIWE_BAD_SIGNATURE"
    sessions = keys()
    text = build_siwe(message(sessions.nonces.issue(NOW)))
    assert code_of(sessions.verify_sign_in, text, "0x1234", HOST, NOW) == "SIWE_BAD_SIGNATURE"


def test_a_nonce_is_used_once_and_must_be_issued():
    sessions = keys()
    nonce = sessions.nonces.issue(NOW)
    text = build_siwe(message(nonce))
    sessions.verify_sign_in(text, sign(text), HOST, NOW)
    assert code_of(sessions.verify_sign_in, text, sign(text), HOST, NOW) == "SIWE_NONCE_UNKNOWN"
    made_up = build_siwe(message("abcdef0123456789"))
    assert code_of(sessions.verify_sign_in, made_up, sign(made_up), HOST, NOW) == "SIWE_NONCE_UNKNOWN"


def test_a_refused_message_does_not_burn_the_nonce():
    sessions = keys()
    nonce = sessions.nonces.issue(NOW)
    bad = build_siwe(message(nonce, domain="evil.example"))
    assert code_of(sessions.verify_sign_in, bad, sign(bad), HOST, NOW) == "SIWE_WRONG_DOMAIN"
    good = build_siwe(message(nonce))
    assert sessions.verify_sign_in(good, sign(good), HOST, NOW).address == WALLET.address


def test_nonces_expire_and_are_bounded():
    book = NonceBook(ttl_s=60, max_nonces=2)
    first = book.issue(NOW)
    book.issue(NOW)
    assert code_of(book.issue, NOW) == "SESSION_NONCES_FULL"
    assert code_of(book.use, first, NOW + 61) == "SIWE_NONCE_UNKNOWN"
    book.issue(NOW + 61)  # the expired ones made room


def test_tokens_tampered_expired_or_for_another_chain():
    sessions = keys()
    token = sign_in(sessions).token
    prefix, address, chain, expires, mac = token.split(".")
    assert code_of(sessions.verify_token, token, NOW + 1800) == "SESSION_EXPIRED"
    longer = ".".join([prefix, address, chain, str(int(expires) + 3600), mac])
    assert code_of(sessions.verify_token, longer, NOW) == "SESSION_INVALID"
    someone_else = f"{prefix}.{OTHER.address}.{chain}.{expires}.{mac}"
    assert code_of(sessions.verify_token, someone_else, NOW) == "SESSION_INVALID"
    assert code_of(sessions.verify_token, token[:-1] + ("0" if token[-1] != "0" else "1"), NOW) == "SESSION_INVALID"
    assert code_of(keys(b"another key 0123456789").verify_token, token, NOW) == "SESSION_INVALID"
    assert code_of(keys(chain_id=1).verify_token, token, NOW) == "SESSION_WRONG_CHAIN"
    other_registry = SessionKeys(b"k" * 32, 31337, OTHER.address)
    assert code_of(other_registry.verify_token, token, NOW) == "SESSION_INVALID"
    for junk in ("", "cs1", "cs1.a.b.c.d", "x" * 300):
        assert code_of(sessions.verify_token, junk, NOW) == "SESSION_INVALID"


def test_key_file_is_created_0600_once(tmp_path):
    path = tmp_path / "session.key"
    key = load_key(path)
    assert len(key) == 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_key(path) == key


@pytest.mark.parametrize(("text", "mode"), [
    ("zz-not-hex", 0o600),  # not hex
    ("ab" * 4, 0o600),  # under 16 bytes
    ("ab" * 32, 0o644),  # readable by others
])
def test_a_bad_key_file_is_refused(tmp_path, text, mode):
    path = tmp_path / "session.key"
    path.write_text(text)
    path.chmod(mode)
    with pytest.raises(EngineError) as info:
        load_key(path)
    assert info.value.code == "CONFIG_INVALID"


def test_engines_sharing_a_key_file_accept_each_others_sessions(tmp_path):
    from engine.sessions import sessions_from_settings
    from engine.settings import Settings

    shared = tmp_path / "shared.key"
    one = sessions_from_settings(Settings(data_dir=tmp_path / "a", session_key_file=shared), 31337, REGISTRY)
    two = sessions_from_settings(Settings(data_dir=tmp_path / "b", session_key_file=shared), 31337, REGISTRY)
    alone = sessions_from_settings(Settings(data_dir=tmp_path / "c"), 31337, REGISTRY)
    token = sign_in(one).token
    assert two.verify_token(token, NOW) == WALLET.address
    assert code_of(alone.verify_token, token, NOW) == "SESSION_INVALID"
    assert (tmp_path / "c" / "session.key").is_file() and not (tmp_path / "a" / "session.key").exists()
