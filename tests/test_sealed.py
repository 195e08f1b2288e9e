"""The sealing of a call's state for the shared store: round trip, tampering, the wrong key,
the wrong record, nothing readable."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voice2fa_cli.serve.sealed import PAD, SealError, seal, unseal

KEY = bytes(range(32))
STATE = b'{"code":"40719386","key":"7","session_id":"abc"}'


@given(st.binary(max_size=2000), st.binary(max_size=64))
def test_round_trip(plaintext, aad):
    assert unseal(KEY, aad, seal(KEY, aad, plaintext)) == plaintext


def test_every_altered_byte_is_refused():
    blob = seal(KEY, b"rec", STATE)
    for i in range(len(blob)):
        for flip in (0x01, 0x80):
            altered = blob[:i] + bytes([blob[i] ^ flip]) + blob[i + 1:]
            with pytest.raises(SealError):
                unseal(KEY, b"rec", altered)
    for cut in (blob[:-1], blob[1:], blob + b"\x00", b"", blob[:48]):
        with pytest.raises(SealError):
            unseal(KEY, b"rec", cut)


def test_another_key_or_another_record_is_refused():
    blob = seal(KEY, b"rec", STATE)
    with pytest.raises(SealError):
        unseal(os.urandom(32), b"rec", blob)
    with pytest.raises(SealError):
        unseal(KEY, b"other", blob)


def test_nothing_of_the_state_is_readable_and_every_seal_differs():
    blobs = {seal(KEY, b"rec", STATE) for _ in range(50)}
    assert len(blobs) == 50
    for blob in blobs:
        assert b"40719386" not in blob and b"code" not in blob and STATE[:8] not in blob
        assert len(blob) == 1 + 16 + PAD + 32


def test_the_keystream_is_not_reused_across_blocks():
    blob = seal(KEY, b"", bytes(96))  # zeros: the ciphertext is the keystream itself
    stream = blob[17:-32]
    assert len({stream[i:i + 32] for i in range(0, 96, 32)}) == 3


def test_every_state_below_the_pad_seals_to_the_same_size():
    """The blob's length says nothing of the code's or the message's length."""
    sizes = {len(seal(KEY, b"rec", b"x" * n)) for n in (0, 1, 6, 10, 200, PAD - 4)}
    assert sizes == {1 + 16 + PAD + 32}
    assert len(seal(KEY, b"rec", b"x" * (PAD - 3))) == 1 + 16 + 2 * PAD + 32


def test_a_blob_of_the_first_version_is_refused():
    blob = seal(KEY, b"rec", STATE)
    with pytest.raises(SealError):
        unseal(KEY, b"rec", b"\x01" + blob[1:])
