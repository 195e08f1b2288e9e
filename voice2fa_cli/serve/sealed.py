"""Sealing a call's state for the shared store, stdlib only: encrypt-then-MAC. The keys derive
from the store's HMAC key, which Redis never holds, so what Redis keeps (a nonce, a ciphertext
and a tag) reveals nothing of the code and cannot be altered or moved to another record
unnoticed.

  enc_key = HMAC(master, "voice2fa seal enc v1"), mac_key = HMAC(master, "voice2fa seal mac v1")
  keystream = SHAKE256("voice2fa seal stream v3" || 0x00 || enc_key || nonce), as many bytes
              as the frame (version 3; version 2's keystream, still opened: block i =
              HMAC(enc_key, nonce || i as 8 bytes, big-endian), counter mode)
  framed = len(plaintext) as 4 bytes, big-endian || plaintext || zeros, to a multiple of PAD bytes
  blob = version byte || nonce (16 random bytes) || framed XOR keystream || tag
  tag = HMAC(mac_key, version || len(aad) as 8 bytes || aad || nonce || ciphertext)

`aad` binds the blob to its record (its id and revision): a blob copied under another id, or
given another revision, does not open. The padding hides the plaintext's length (a call's state
is far below PAD: every blob has the same size). Version 3 exists for speed: one SHAKE256 call
instead of an HMAC per 32 bytes (a seal or an open went from about 65 µs to a few)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

VERSION = b"\x03"  # 1: no length frame, no padding (refused); 2: the HMAC keystream (opened)
OPENED = (b"\x02", VERSION)
NONCE = 16
TAG = 32
BLOCK = 32  # version 2's keystream block
PAD = 1024
FRAME = 4
STREAM_LABEL = b"voice2fa seal stream v3\x00"


class SealError(Exception):
    """The blob was altered, belongs to another record, or was sealed under another key."""


def _xor(data: bytes, stream: bytes) -> bytes:
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(len(data), "big")


class Sealer:
    """Seals and opens blobs under one master key (its two keys derived once)."""

    def __init__(self, master: bytes) -> None:
        self._enc_key = hmac.digest(master, b"voice2fa seal enc v1", "sha256")
        self._mac_key = hmac.digest(master, b"voice2fa seal mac v1", "sha256")

    def _keystream(self, version: bytes, nonce: bytes, length: int) -> bytes:
        if version == VERSION:
            return hashlib.shake_256(STREAM_LABEL + self._enc_key + nonce).digest(length)
        blocks = (length + BLOCK - 1) // BLOCK
        return b"".join(hmac.digest(self._enc_key, nonce + i.to_bytes(8, "big"), "sha256")
                        for i in range(blocks))[:length]

    def _tag(self, version: bytes, aad: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
        return hmac.digest(self._mac_key, version + len(aad).to_bytes(8, "big") + aad + nonce + ciphertext, "sha256")

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE)
        framed = len(plaintext).to_bytes(FRAME, "big") + plaintext
        framed += bytes(-len(framed) % PAD)
        ciphertext = _xor(framed, self._keystream(VERSION, nonce, len(framed)))
        return VERSION + nonce + ciphertext + self._tag(VERSION, aad, nonce, ciphertext)

    def unseal(self, aad: bytes, blob: bytes) -> bytes:
        version = blob[:1]
        if len(blob) < 1 + NONCE + TAG or version not in OPENED:
            raise SealError("not a sealed blob")
        nonce, ciphertext, tag = blob[1:1 + NONCE], blob[1 + NONCE:-TAG], blob[-TAG:]
        if not hmac.compare_digest(tag, self._tag(version, aad, nonce, ciphertext)):
            raise SealError("the sealed blob does not authenticate")
        framed = _xor(ciphertext, self._keystream(version, nonce, len(ciphertext)))
        length = int.from_bytes(framed[:FRAME], "big")
        if len(framed) < FRAME or length > len(framed) - FRAME:
            raise SealError("the sealed blob's frame is wrong")
        return framed[FRAME:FRAME + length]
