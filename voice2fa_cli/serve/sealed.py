"""Sealing a call's state for the shared store, stdlib only: encrypt-then-MAC with HMAC-SHA256
as the PRF throughout. The keys derive from the store's HMAC key, which Redis never holds, so
what Redis keeps (a nonce, a ciphertext and a tag) reveals nothing of the code and cannot be
altered or moved to another record unnoticed.

  enc_key = HMAC(master, "voice2fa seal enc v1"), mac_key = HMAC(master, "voice2fa seal mac v1")
  keystream block i = HMAC(enc_key, nonce || i as 8 bytes, big-endian)   (counter mode)
  framed = len(plaintext) as 4 bytes, big-endian || plaintext || zeros, to a multiple of PAD bytes
  blob = version byte || nonce (16 random bytes) || framed XOR keystream || tag
  tag = HMAC(mac_key, version || len(aad) as 8 bytes || aad || nonce || ciphertext)

`aad` binds the blob to its record (its id and revision): a blob copied under another id, or
given another revision, does not open. The padding hides the plaintext's length (a call's state
is far below PAD: every blob has the same size)."""

from __future__ import annotations

import hmac
import secrets

VERSION = b"\x02"  # 1: no length frame, no padding
NONCE = 16
TAG = 32
BLOCK = 32
PAD = 1024
FRAME = 4


class SealError(Exception):
    """The blob was altered, belongs to another record, or was sealed under another key."""


def keys(master: bytes) -> tuple[bytes, bytes]:
    return (hmac.digest(master, b"voice2fa seal enc v1", "sha256"),
            hmac.digest(master, b"voice2fa seal mac v1", "sha256"))


def _keystream(enc_key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = (length + BLOCK - 1) // BLOCK
    return b"".join(hmac.digest(enc_key, nonce + i.to_bytes(8, "big"), "sha256")  # one-shot: the same bytes
                    for i in range(blocks))[:length]


def _xor(data: bytes, stream: bytes) -> bytes:
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(len(data), "big")


def _tag(mac_key: bytes, aad: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    return hmac.digest(mac_key, VERSION + len(aad).to_bytes(8, "big") + aad + nonce + ciphertext, "sha256")


def seal(master: bytes, aad: bytes, plaintext: bytes) -> bytes:
    enc_key, mac_key = keys(master)
    nonce = secrets.token_bytes(NONCE)
    framed = len(plaintext).to_bytes(FRAME, "big") + plaintext
    framed += bytes(-len(framed) % PAD)
    ciphertext = _xor(framed, _keystream(enc_key, nonce, len(framed)))
    return VERSION + nonce + ciphertext + _tag(mac_key, aad, nonce, ciphertext)


def unseal(master: bytes, aad: bytes, blob: bytes) -> bytes:
    if len(blob) < 1 + NONCE + TAG or blob[:1] != VERSION:
        raise SealError("not a sealed blob")
    enc_key, mac_key = keys(master)
    nonce, ciphertext, tag = blob[1:1 + NONCE], blob[1 + NONCE:-TAG], blob[-TAG:]
    if not hmac.compare_digest(tag, _tag(mac_key, aad, nonce, ciphertext)):
        raise SealError("the sealed blob does not authenticate")
    framed = _xor(ciphertext, _keystream(enc_key, nonce, len(ciphertext)))
    length = int.from_bytes(framed[:FRAME], "big")
    if len(framed) < FRAME or length > len(framed) - FRAME:
        raise SealError("the sealed blob's frame is wrong")
    return framed[FRAME:FRAME + length]
