"""The sealed-data format (registry_client/sealing.py) and the engine's data keys (engine/data_keys.py).

Known-answer structure: a sealed file is decoded here independently with
`cryptography`'s AESGCM (header fields, nonce = prefix | index, AAD = header |
last flag), and one fixed-randomness vector pins the bytes of the format.
Every bad input fails with its own code.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eth_account import Account

from engine.data import DataCatalog
from engine.data_keys import Kek, load_kek, read_kek_file, unwrap_data_key, wrap_data_key
from engine.errors import QueryFailure, RequestError
from engine.query import Permission, run_query
from registry_client import sealing
from registry_client.errors import SealError
from tests.conftest import ANVIL_KEYS, make_kek_file

KEY = bytes(range(32))
ALICE = Account.from_key(ANVIL_KEYS[1])
BOB = Account.from_key(ANVIL_KEYS[2])
SEG = sealing.SEGMENT_BYTES
DATA = bytes(i % 251 for i in range(2 * SEG + 1000))  # three segments, the last one short
FIXED = 47  # header bytes before the wrapped key


def _open(blob: bytes, **kw) -> bytes:
    return sealing.open_bytes(blob, **kw)


def _code(fn, *args, **kw) -> str:
    with pytest.raises(SealError) as info:
        fn(*args, **kw)
    return info.value.code


# ---------------------------------------------------------------- known-answer structure


def test_key_mode_decodes_independently_segment_by_segment():
    blob = sealing.seal_bytes(DATA, key=KEY)
    magic, version, mode, kid, prefix, length, wrapped_len = struct.unpack(">7sBB20s8sQH", blob[:FIXED])
    assert (magic, version, mode, length, wrapped_len) == (b"C2DSEAL", 1, sealing.MODE_KEY, len(DATA), 0)
    assert kid == sealing.key_id(KEY) == hashlib.sha256(b"c2d-seal-key-id\x00" + KEY).digest()[:20]
    header, body = blob[:FIXED], blob[FIXED:]
    plain, at = b"", 0
    for index, size in enumerate([SEG, SEG, 1000]):
        last = b"\x01" if index == 2 else b"\x00"
        plain += AESGCM(KEY).decrypt(prefix + struct.pack(">I", index), body[at:at + size + 16], header + last)
        at += size + 16
    assert plain == DATA and at == len(body)
    assert len(blob) == sealing.sealed_size(len(DATA))


def test_fixed_randomness_gives_the_pinned_bytes(monkeypatch):
    monkeypatch.setattr(sealing.os, "urandom", lambda n: b"\x07" * n)
    blob = sealing.seal_bytes(b"hello sealed world", key=KEY)
    assert blob[:FIXED].hex() == (
        "4332445345414c" "01" "01" + sealing.key_id(KEY).hex() + "07" * 8 + f"{18:016x}" + "0000")
    # Pinned: a change to the format (nonce, AAD, segment layout) changes this digest.
    assert hashlib.sha256(blob).hexdigest() == PINNED_SHA256


PINNED_SHA256 = "48f7ad7170e336a3e3580d55d6709f8bfa4628dd2e45a1fc7d0ea4a1568bfab0"


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG])
def test_round_trips_at_segment_edges(size):
    data = os.urandom(size)
    assert _open(sealing.seal_bytes(data, key=KEY), key=KEY) == data
    wallet = sealing.seal_bytes(data, public_key=sealing.public_key_of(bytes(BOB.key)))
    assert _open(wallet, private_key=bytes(BOB.key)) == data
    assert len(wallet) == sealing.sealed_size(size, 81)


def test_wallet_mode_names_its_recipient_and_wraps_by_ecies():
    blob = sealing.seal_bytes(b"x", public_key=sealing.public_key_of(bytes(BOB.key)))
    import io

    info = sealing.read_header(io.BytesIO(blob))
    assert info.mode == sealing.MODE_WALLET and info.recipient == BOB.address and len(info.wrapped) == 81
    assert sealing.address_of_public_key(sealing.public_key_of(bytes(BOB.key))) == BOB.address
    key = sealing.new_data_key()
    assert sealing.unwrap_key(sealing.wrap_key(key, sealing.public_key_of(bytes(BOB.key))), bytes(BOB.key)) == key


# ---------------------------------------------------------------- bad inputs, each with its code


BLOB = sealing.seal_bytes(DATA, key=KEY)


def _flip(blob: bytes, at: int) -> bytes:
    return blob[:at] + bytes([blob[at] ^ 1]) + blob[at + 1:]


def _swap_segments(blob: bytes) -> bytes:
    s0, s1 = blob[FIXED:FIXED + SEG + 16], blob[FIXED + SEG + 16:FIXED + 2 * (SEG + 16)]
    return blob[:FIXED] + s1 + s0 + blob[FIXED + 2 * (SEG + 16):]


@pytest.mark.parametrize("blob,code", [
    (BLOB[:10], "SEAL_TRUNCATED"),                          # inside the header
    (BLOB[:FIXED], "SEAL_TRUNCATED"),                       # the header only
    (BLOB[:FIXED + 100], "SEAL_TRUNCATED"),                 # inside the first segment
    (BLOB[:FIXED + 2 * (SEG + 16)], "SEAL_TRUNCATED"),      # the last segment cut off at a boundary
    (BLOB[:-1], "SEAL_TRUNCATED"),                          # one byte of the last tag gone
    (_flip(BLOB, FIXED + 5), "SEAL_TAMPERED"),              # a ciphertext byte
    (_flip(BLOB, len(BLOB) - 1), "SEAL_TAMPERED"),          # the last tag
    (_flip(BLOB, 30), "SEAL_TAMPERED"),                     # the nonce prefix (in the AAD)
    (_flip(BLOB, 44), "SEAL_TAMPERED"),                     # the declared length (in the AAD)
    (_swap_segments(BLOB), "SEAL_TAMPERED"),                # reordered segments
    (BLOB + b"\x00", "SEAL_TAMPERED"),                      # bytes after the last segment
    (_flip(BLOB, 10), "SEAL_WRONG_KEY"),                    # the key id names another key
    (b"PLAINSQLITE" + BLOB[11:], "SEAL_INVALID"),           # not a sealed file
    (BLOB[:7] + b"\x02" + BLOB[8:], "SEAL_INVALID"),        # an unknown version
], ids=["cut-header", "header-only", "cut-segment", "cut-boundary", "cut-tag", "ciphertext", "tag", "nonce",
        "length", "reordered", "appended", "key-id", "magic", "version"])
def test_bad_sealed_data_fails_with_its_code(blob, code):
    assert _code(_open, blob, key=KEY) == code


@pytest.mark.parametrize("kwargs", [
    {"key": bytes(32)},                       # another data key
    {"private_key": bytes(BOB.key)},          # a wallet for a KEY-mode file
])
def test_wrong_key_for_key_mode(kwargs):
    assert _code(_open, BLOB, **kwargs) == "SEAL_WRONG_KEY"


def test_wrong_wallet_names_the_recipient():
    blob = sealing.seal_bytes(b"for bob", public_key=sealing.public_key_of(bytes(BOB.key)))
    with pytest.raises(SealError) as info:
        _open(blob, private_key=bytes(ALICE.key))
    assert info.value.code == "SEAL_WRONG_KEY" and BOB.address in info.value.message
    assert _code(_open, blob, key=KEY) == "SEAL_WRONG_KEY"
    wrapped = blob[FIXED:FIXED + 81]
    assert _code(sealing.unwrap_key, wrapped, bytes(ALICE.key)) == "SEAL_TAMPERED"


@pytest.mark.parametrize("call", [
    lambda: sealing.seal_bytes(b"x", key=b"short"),
    lambda: sealing.seal_bytes(b"x"),
    lambda: sealing.seal_bytes(b"x", public_key="0x" + "00" * 64),
    lambda: _open(BLOB, key=KEY, max_length=10),
    lambda: sealing.unwrap_key(b"\x02" * 10, bytes(BOB.key)),
])
def test_misuse_is_seal_invalid(call):
    with pytest.raises(SealError) as info:
        call()
    assert info.value.code == "SEAL_INVALID"


def test_stream_of_another_length_than_declared_is_refused():
    import io

    for data in (b"12345", b"1234567"):
        with pytest.raises(SealError):
            sealing.seal_stream(io.BytesIO(data), io.BytesIO(), 6, key=KEY)


# ---------------------------------------------------------------- the KEK and data keys


def test_kek_file_must_be_private_and_64_hex(tmp_path):
    kek = make_kek_file(tmp_path / "kek")
    assert read_kek_file(tmp_path / "kek") == kek and kek.id in repr(kek) and kek.key.hex() not in repr(kek)
    (tmp_path / "kek").chmod(0o644)
    bad = [tmp_path / "kek", tmp_path / "missing"]
    (tmp_path / "short").write_text("abcd")
    (tmp_path / "short").chmod(0o600)
    bad.append(tmp_path / "short")
    for path in bad:
        with pytest.raises(RequestError) as info:
            read_kek_file(path)
        assert info.value.code == "DATA_KEK_INVALID" and "abcd" not in info.value.message


def test_kek_from_a_named_env_var_never_a_value(tmp_path, monkeypatch):
    from engine.settings import SettingsError, load_settings

    monkeypatch.setenv("TEST_KEK", "ab" * 32)
    assert load_kek(load_settings(data_kek_env="TEST_KEK")).key == bytes([0xAB]) * 32
    with pytest.raises(RequestError) as info:
        load_kek(load_settings(data_kek_env="TEST_KEK_UNSET"))
    assert info.value.code == "DATA_KEK_INVALID"
    assert load_kek(load_settings()) is None
    with pytest.raises(RequestError) as info:
        load_kek(load_settings(), required=True)
    assert info.value.code == "DATA_KEK_MISSING"
    with pytest.raises(SettingsError) as err:
        load_settings(data_kek_env="ab" * 32)  # a key pasted where its NAME belongs
    assert "ab" * 32 not in str(err.value)


def test_data_key_records_are_bound_to_their_kek_and_refiner():
    kek, other = Kek(os.urandom(32)), Kek(os.urandom(32))
    record = wrap_data_key(kek, 3, KEY, "3-x.sealed")
    assert KEY.hex() not in str(record)
    assert unwrap_data_key(kek, 3, record) == KEY
    assert _code(unwrap_data_key, other, 3, record) == "SEAL_WRONG_KEY"
    assert _code(unwrap_data_key, kek, 4, record) == "SEAL_TAMPERED"  # moved to another refiner
    assert _code(unwrap_data_key, kek, 3, {**record, "wrapped": "00" + record["wrapped"][2:]}) == "SEAL_TAMPERED"


# ---------------------------------------------------------------- sealed refiner data in the query step


SECRET = "needle-4f1c@example.com"


@pytest.fixture
def sealed_catalog(tmp_path):
    src = tmp_path / "src.db"
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE users (id INTEGER, email TEXT)")
        conn.executemany("INSERT INTO users VALUES (?, ?)", [(i, f"{i}-{SECRET}") for i in range(3000)])
    src_kek = make_kek_file(tmp_path / "kek")
    catalog = DataCatalog(tmp_path / "data", src_kek)
    catalog.add(1, src)
    return catalog


def _query(source, out):
    return run_query(source, "SELECT id, email FROM users WHERE id < 5", None,
                     [Permission(1, None, 1, "users", "", 0, True)], out, refiner_id=1)


def test_sealed_data_dir_holds_no_plaintext_and_the_query_reads_it(sealed_catalog, tmp_path):
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert SECRET.encode() not in content and b"SQLite format 3" not in content, path
    report = _query(sealed_catalog.source(1), tmp_path / "out.db")
    assert report.row_count == 5


def _damage(path, how):
    blob = path.read_bytes()
    path.chmod(0o644)
    path.write_bytes(blob[: len(blob) // 2] if how == "truncate" else _flip(blob, len(blob) - 3))


def _inflate_length(path):
    blob = bytearray(path.read_bytes())
    blob[37:45] = (2**40).to_bytes(8, "big")  # a declared length no file this size could hold
    path.chmod(0o644)
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize("how,code", [("truncate", "SEAL_TRUNCATED"), ("tamper", "SEAL_TAMPERED"),
                                      ("length", "SEAL_TRUNCATED")])
def test_damaged_sealed_data_fails_the_query_with_its_code(sealed_catalog, tmp_path, how, code):
    source = sealed_catalog.source(1)
    _inflate_length(source.path) if how == "length" else _damage(source.path, how)
    with pytest.raises(QueryFailure) as info:
        _query(source, tmp_path / "out.db")
    assert info.value.code == code and SECRET not in info.value.message
    assert not (tmp_path / "out.db").exists()


def test_a_catalog_under_another_kek_is_wrong_key_and_rotation_keeps_the_data(sealed_catalog, tmp_path):
    new = make_kek_file(tmp_path / "kek2")
    with pytest.raises(QueryFailure) as info:
        DataCatalog(tmp_path / "data", new).source(1)
    assert info.value.code == "SEAL_WRONG_KEY"
    sealed_before = sealed_catalog.path(1).read_bytes()
    assert sealed_catalog.rotate(new) == [1]
    assert sealed_catalog.path(1).read_bytes() == sealed_before  # only the key record changed
    assert DataCatalog(tmp_path / "data", new).rotate(new) == []  # a re-run has nothing left to do
    report = _query(DataCatalog(tmp_path / "data", new).source(1), tmp_path / "out.db")
    assert report.row_count == 5
    with pytest.raises(QueryFailure):
        sealed_catalog.source(1)  # the old KEK no longer opens it


def test_a_dlp_owners_sealed_file_is_attached_without_the_engine_seeing_a_plaintext_file(tmp_path):
    src = tmp_path / "owner.db"
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE users (id INTEGER, email TEXT)")
        conn.execute("INSERT INTO users VALUES (1, ?)", (SECRET,))
    engine_key = bytes(BOB.key)  # the engine's wallet key
    key = sealing.new_data_key()
    sealed = tmp_path / "owner.sealed"
    with open(src, "rb") as reader, open(sealed, "wb") as writer:
        sealing.seal_stream(reader, writer, src.stat().st_size, key=key)
    wrapped = sealing.wrap_key(key, sealing.public_key_of(engine_key))
    catalog = DataCatalog(tmp_path / "data", make_kek_file(tmp_path / "kek"))
    with pytest.raises(SealError) as info:
        catalog.add_sealed(1, sealed, wrapped, bytes(ALICE.key))  # not wrapped to this key
    assert info.value.code == "SEAL_TAMPERED"
    entry = catalog.add_sealed(1, sealed, wrapped, engine_key)
    assert entry.path.read_bytes() == sealed.read_bytes()
    assert _query(catalog.source(1), tmp_path / "out.db").row_count == 1


def test_a_relative_data_dir_is_found_by_the_query_process(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default data_dir is ./engine-data; the zygote runs elsewhere
    src = tmp_path / "src.db"
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE users (id INTEGER, email TEXT)")
        conn.execute("INSERT INTO users VALUES (1, 'x')")
    catalog = DataCatalog("engine-data", make_kek_file(tmp_path / "kek"))
    catalog.add(1, src)
    assert not catalog.source(1).path.is_absolute()
    assert _query(catalog.source(1), tmp_path / "out.db").row_count == 1
