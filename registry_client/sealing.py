"""Sealed data: one streaming AES-256-GCM file format, keyed directly or to a wallet.

Both sides use this module (the engine seals refiner data and artifacts, the
CLI opens them, a DLP owner seals data for an engine), so they never disagree.

Format v1 (all integers big-endian)::

    header   = b"C2DSEAL" | version u8 (=1) | mode u8 | key_id 20 | nonce_prefix 8
               | plaintext_length u64 | wrapped_len u16 | wrapped (wrapped_len bytes)
    segments = n = max(1, ceil(length / 65536)) AES-256-GCM segments:
               nonce = nonce_prefix | index u32,  aad = header | last u8,
               each 64 KiB of plaintext + a 16-byte tag (the last one shorter)

``mode`` 1 (KEY): the data key is given directly (``key_id`` =
``key_id(key)``, nothing wrapped). Mode 2 (WALLET): a fresh data key wrapped
by ECIES to a secp256k1 public key (the wallet's own curve; ``key_id`` = that
wallet's address): ephemeral ECDH, HKDF-SHA256, AES-256-GCM (``wrap_key``).
The header is in every segment's AAD and the index in its nonce, so a changed
header, a swapped or reordered segment fail SEAL_TAMPERED; a file shorter than
its declared length fails SEAL_TRUNCATED; a key whose id differs fails
SEAL_WRONG_KEY before any decryption. Nothing is held whole: 64 KiB at a time.
A reader writes plaintext before the last tag is checked: callers write to a
temporary file and keep it only when ``open_stream`` returns.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_utils import keccak, to_checksum_address

from registry_client.errors import SealError, SealTampered, SealTruncated, SealWrongKey

__all__ = [
    "MAGIC",
    "MODE_KEY",
    "MODE_WALLET",
    "SEGMENT_BYTES",
    "SealInfo",
    "Sealed",
    "address_of_public_key",
    "key_id",
    "new_data_key",
    "open_bytes",
    "open_stream",
    "public_key_of",
    "read_header",
    "seal_bytes",
    "seal_stream",
    "sealed_size",
    "unwrap_key",
    "wrap_key",
]

MAGIC = b"C2DSEAL"
VERSION = 1
MODE_KEY = 1
MODE_WALLET = 2
SEGMENT_BYTES = 64 * 1024
_TAG = 16
_FIXED = struct.Struct(">7sBB20s8sQH")  # magic, version, mode, key id, nonce prefix, length, wrapped len
_MAX_WRAPPED = 1024
_WRAP_INFO = b"c2d-ecies-secp256k1-v1"


def new_data_key() -> bytes:
    """A fresh random AES-256 key."""
    return os.urandom(32)


def key_id(key: bytes) -> bytes:
    """The 20-byte id a KEY-mode header names its key by (a hash: it reveals nothing of the key)."""
    _check_key(key)
    return hashlib.sha256(b"c2d-seal-key-id\x00" + key).digest()[:20]


def _check_key(key: bytes) -> None:
    if not isinstance(key, (bytes, bytearray)) or len(key) != 32:
        raise SealError("a data key must be 32 bytes")


# --------------------------------------------------------------- wallet keys (ECIES)


def _public(public_key: bytes | str) -> ec.EllipticCurvePublicKey:
    raw = bytes.fromhex(public_key.removeprefix("0x")) if isinstance(public_key, str) else bytes(public_key)
    if len(raw) == 64:
        raw = b"\x04" + raw
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), raw)
    except ValueError as exc:
        raise SealError("not a secp256k1 public key") from exc


def _uncompressed64(public: ec.EllipticCurvePublicKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return public.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)[1:]


def _compressed(public: ec.EllipticCurvePublicKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return public.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)


def address_of_public_key(public_key: bytes | str) -> str:
    """The Ethereum address (checksum) of a secp256k1 public key (64/65/33 bytes or hex)."""
    return to_checksum_address(keccak(_uncompressed64(_public(public_key)))[-20:])


def _private(private_key: bytes) -> ec.EllipticCurvePrivateKey:
    raw = bytes(private_key)
    if len(raw) != 32:
        raise SealError("a wallet private key must be 32 bytes")
    return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256K1())


def public_key_of(private_key: bytes) -> str:
    """The 0x hex of the 64-byte public key (x | y) of a wallet's private key."""
    return "0x" + _uncompressed64(_private(private_key).public_key()).hex()


def _wrap_kek(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=_WRAP_INFO + ephemeral + recipient).derive(shared)


def wrap_key(data_key: bytes, public_key: bytes | str) -> bytes:
    """ECIES: the data key encrypted to a secp256k1 public key (33 + 48 bytes)."""
    _check_key(data_key)
    recipient = _public(public_key)
    ephemeral = ec.generate_private_key(ec.SECP256K1())
    eph = _compressed(ephemeral.public_key())
    kek = _wrap_kek(ephemeral.exchange(ec.ECDH(), recipient), eph, _compressed(recipient))
    # A fresh KEK per wrap: a fixed nonce is used exactly once with it.
    return eph + AESGCM(kek).encrypt(b"\x00" * 12, bytes(data_key), b"c2d-wrap")


def unwrap_key(wrapped: bytes, private_key: bytes) -> bytes:
    """The data key from `wrap_key`; SealTampered when it was not wrapped to this key."""
    if len(wrapped) != 33 + 32 + _TAG:
        raise SealError("a wrapped key is 81 bytes")
    me = _private(private_key)
    eph = _public(wrapped[:33])
    kek = _wrap_kek(me.exchange(ec.ECDH(), eph), wrapped[:33], _compressed(me.public_key()))
    try:
        return AESGCM(kek).decrypt(b"\x00" * 12, wrapped[33:], b"c2d-wrap")
    except InvalidTag as exc:
        raise SealTampered("the wrapped data key does not open with this key") from exc


# --------------------------------------------------------------- the stream format


@dataclass(frozen=True)
class SealInfo:
    """A parsed header: who can open it and how long the plaintext is."""

    mode: int
    key_id: bytes
    length: int
    header: bytes
    wrapped: bytes

    @property
    def recipient(self) -> str | None:
        """The wallet address a WALLET-mode file is sealed to."""
        return to_checksum_address(self.key_id) if self.mode == MODE_WALLET else None


@dataclass(frozen=True)
class Sealed:
    """What sealing wrote: ciphertext size and sha256, plaintext sha256."""

    size: int
    sha256: str
    plain_sha256: str


def _segments(length: int) -> int:
    return max(1, -(-length // SEGMENT_BYTES))


def sealed_size(length: int, wrapped_len: int = 0) -> int:
    """The byte size of a sealed file holding `length` bytes of plaintext."""
    return _FIXED.size + wrapped_len + length + _TAG * _segments(length)


def _header(mode: int, kid: bytes, length: int, wrapped: bytes) -> tuple[bytes, bytes]:
    prefix = os.urandom(8)
    return _FIXED.pack(MAGIC, VERSION, mode, kid, prefix, length, len(wrapped)) + wrapped, prefix


def _read_exact(reader: BinaryIO, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        chunk = reader.read(n - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def read_header(reader: BinaryIO) -> SealInfo:
    """Parse the header at the reader's position (SealError / SealTruncated when it is not one)."""
    fixed = _read_exact(reader, _FIXED.size)
    if len(fixed) < len(MAGIC) or not fixed.startswith(MAGIC):
        raise SealError("not a sealed file (no C2DSEAL header)")
    if len(fixed) < _FIXED.size:
        raise SealTruncated("the sealed file ends inside its header")
    _magic, version, mode, kid, _prefix, length, wrapped_len = _FIXED.unpack(fixed)
    if version != VERSION or mode not in (MODE_KEY, MODE_WALLET) or wrapped_len > _MAX_WRAPPED:
        raise SealError(f"unsupported sealed format (version {version}, mode {mode})")
    wrapped = _read_exact(reader, wrapped_len)
    if len(wrapped) < wrapped_len:
        raise SealTruncated("the sealed file ends inside its header")
    return SealInfo(mode, kid, length, fixed + wrapped, wrapped)


def seal_stream(reader: BinaryIO, writer: BinaryIO, length: int, *, key: bytes | None = None,
                public_key: bytes | str | None = None,
                progress: Callable[[int], None] | None = None) -> Sealed:
    """Seal exactly `length` bytes from `reader` into `writer`, 64 KiB at a time.

    With `key`: KEY mode. With `public_key`: a fresh data key wrapped to that
    wallet (WALLET mode). `progress(n)` sees each plaintext chunk's size (a
    caller's cap can raise there). SealError if the reader holds another length.
    """
    if (key is None) == (public_key is None):
        raise SealError("seal with exactly one of a data key or a public key")
    if public_key is not None:
        key = new_data_key()
        mode, kid, wrapped = MODE_WALLET, keccak(_uncompressed64(_public(public_key)))[-20:], wrap_key(key, public_key)
    else:
        assert key is not None
        mode, kid, wrapped = MODE_KEY, key_id(key), b""
    header, prefix = _header(mode, kid, length, wrapped)
    aead, out_hash, plain_hash = AESGCM(bytes(key)), hashlib.sha256(header), hashlib.sha256()
    writer.write(header)
    size, left, count = len(header), length, _segments(length)
    for index in range(count):
        chunk = _read_exact(reader, min(SEGMENT_BYTES, left))
        if len(chunk) != min(SEGMENT_BYTES, left):
            raise SealError("the input is shorter than the declared length")
        left -= len(chunk)
        if progress is not None:
            progress(len(chunk))
        plain_hash.update(chunk)
        last = index == count - 1
        sealed = aead.encrypt(prefix + struct.pack(">I", index), chunk, header + (b"\x01" if last else b"\x00"))
        out_hash.update(sealed)
        writer.write(sealed)
        size += len(sealed)
    if reader.read(1):
        raise SealError("the input is longer than the declared length")
    return Sealed(size, out_hash.hexdigest(), plain_hash.hexdigest())


def _open_key(info: SealInfo, key: bytes | None, private_key: bytes | None) -> bytes:
    if info.mode == MODE_KEY:
        if key is None:
            raise SealWrongKey("this data is sealed to a data key, not to a wallet")
        if key_id(key) != info.key_id:
            raise SealWrongKey("this data is sealed to another data key")
        return bytes(key)
    if private_key is None:
        raise SealWrongKey(f"this data is sealed to wallet {info.recipient}")
    mine = keccak(bytes.fromhex(public_key_of(private_key)[2:]))[-20:]
    if mine != info.key_id:
        raise SealWrongKey(f"this data is sealed to wallet {info.recipient}, not to {to_checksum_address(mine)}")
    return unwrap_key(info.wrapped, private_key)


def open_stream(reader: BinaryIO, writer: BinaryIO, *, key: bytes | None = None,
                private_key: bytes | None = None, max_length: int | None = None) -> SealInfo:
    """Check and decrypt a sealed stream into `writer`; raise SealError and its kinds.

    `max_length` refuses (SealError) a header declaring more plaintext than the caller
    will hold, before anything is decrypted.
    """
    info = read_header(reader)
    if max_length is not None and info.length > max_length:
        raise SealError(f"the sealed data is {info.length} bytes, over the limit of {max_length}")
    aead = AESGCM(_open_key(info, key, private_key))
    prefix = info.header[len(MAGIC) + 2 + 20:len(MAGIC) + 2 + 28]
    left, count = info.length, _segments(info.length)
    for index in range(count):
        want = min(SEGMENT_BYTES, left) + _TAG
        sealed = _read_exact(reader, want)
        if len(sealed) < want:
            raise SealTruncated(f"the sealed data ends early (segment {index + 1} of {count})")
        last = index == count - 1
        try:
            chunk = aead.decrypt(prefix + struct.pack(">I", index), sealed,
                                 info.header + (b"\x01" if last else b"\x00"))
        except InvalidTag as exc:
            raise SealTampered(f"segment {index + 1} of {count} fails its authentication tag") from exc
        left -= len(chunk)
        writer.write(chunk)
    if reader.read(1):
        raise SealTampered("bytes follow the last sealed segment")
    return info


def seal_bytes(data: bytes, *, key: bytes | None = None, public_key: bytes | str | None = None) -> bytes:
    """`seal_stream` over bytes in memory (small values: logs, tests)."""
    import io

    out = io.BytesIO()
    seal_stream(io.BytesIO(data), out, len(data), key=key, public_key=public_key)
    return out.getvalue()


def open_bytes(blob: bytes, *, key: bytes | None = None, private_key: bytes | None = None,
               max_length: int | None = None) -> bytes:
    """`open_stream` over bytes in memory."""
    import io

    out = io.BytesIO()
    open_stream(io.BytesIO(blob), out, key=key, private_key=private_key, max_length=max_length)
    return out.getvalue()
