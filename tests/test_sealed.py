"""The sealing of a call's state for the shared store: round trip, tampering, the wrong key,
the wrong record, nothing readable; version 3 as its docstring specifies it, and version 2's
blobs (sealed by an earlier voice2fa, built here from that specification) still open."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voice2fa_cli.serve.sealed import PAD, Sealer, SealError

KEY = bytes(range(32))
SEALER = Sealer(KEY)
seal = SEALER.seal
unseal = SEALER.unseal


def by_the_spec(version: int, aad: bytes, plaintext: bytes, nonce: bytes) -> bytes:
    """A blob built from sealed.py's docstring alone (the key derivation, the frame, the
    keystream of `version`, the tag)."""
    enc = hmac.digest(KEY, b"voice2fa seal enc v1", "sha256")
    mac = hmac.digest(KEY, b"voice2fa seal mac v1", "sha256")
    framed = len(plaintext).to_bytes(4, "big") + plaintext
    framed += bytes(-len(framed) % 1024)
    if version == 3:
        stream = hashlib.shake_256(b"voice2fa seal stream v3\x00" + enc + nonce).digest(len(framed))
    else:
        stream = b"".join(hmac.digest(enc, nonce + i.to_bytes(8, "big"), "sha256") for i in range(len(framed) // 32))
    ciphertext = bytes(a ^ b for a, b in zip(framed, stream, strict=True))
    v = bytes([version])
    return v + nonce + ciphertext + hmac.digest(mac, v + len(aad).to_bytes(8, "big") + aad + nonce + ciphertext,
                                                "sha256")
STATE = b'{"code":"40719386","key":"7","session_id":"abc"}'


@given(st.binary(max_size=2000), st.binary(max_size=64))
def test_round_trip(plaintext, aad):
    assert unseal(aad, seal(aad, plaintext)) == plaintext


def test_every_altered_byte_is_refused():
    blob = seal(b"rec", STATE)
    for i in range(len(blob)):
        for flip in (0x01, 0x80):
            altered = blob[:i] + bytes([blob[i] ^ flip]) + blob[i + 1:]
            with pytest.raises(SealError):
                unseal(b"rec", altered)
    for cut in (blob[:-1], blob[1:], blob + b"\x00", b"", blob[:48]):
        with pytest.raises(SealError):
            unseal(b"rec", cut)


def test_another_key_or_another_record_is_refused():
    blob = seal(b"rec", STATE)
    with pytest.raises(SealError):
        Sealer(os.urandom(32)).unseal(b"rec", blob)
    with pytest.raises(SealError):
        unseal(b"other", blob)


def test_nothing_of_the_state_is_readable_and_every_seal_differs():
    blobs = {seal(b"rec", STATE) for _ in range(50)}
    assert len(blobs) == 50
    for blob in blobs:
        assert b"40719386" not in blob and b"code" not in blob and STATE[:8] not in blob
        assert len(blob) == 1 + 16 + PAD + 32


def test_the_keystream_is_not_reused_across_blocks():
    blob = seal(b"", bytes(96))  # zeros: the ciphertext is the keystream itself
    stream = blob[17:-32]
    assert len({stream[i:i + 32] for i in range(0, 96, 32)}) == 3


def test_every_state_below_the_pad_seals_to_the_same_size():
    """The blob's length says nothing of the code's or the message's length."""
    sizes = {len(seal(b"rec", b"x" * n)) for n in (0, 1, 6, 10, 200, PAD - 4)}
    assert sizes == {1 + 16 + PAD + 32}
    assert len(seal(b"rec", b"x" * (PAD - 3))) == 1 + 16 + 2 * PAD + 32


def test_a_blob_of_the_first_version_is_refused():
    blob = seal(b"rec", STATE)
    with pytest.raises(SealError):
        unseal(b"rec", b"\x01" + blob[1:])


def test_version_3_is_what_the_docstring_specifies():
    blob = seal(b"rec", STATE)
    assert blob[:1] == b"\x03"
    assert blob == by_the_spec(3, b"rec", STATE, blob[1:17])


def test_a_blob_of_version_2_still_opens_and_its_tag_binds_its_version():
    blob = by_the_spec(2, b"rec", STATE, os.urandom(16))
    assert unseal(b"rec", blob) == STATE
    with pytest.raises(SealError):
        unseal(b"rec", b"\x03" + blob[1:])  # taken for version 3: the tag says otherwise
