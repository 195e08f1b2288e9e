"""web.basic_auth: RFC 7617's header, with RFC 4648 §4 base64 and its padding required."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voice2fa_cli.web.basic_auth import MAX_HEADER, credentials


def header(raw: bytes, scheme: str = "Basic") -> str:
    return f"{scheme} {base64.b64encode(raw).decode()}"


@pytest.mark.parametrize(("raw", "expected"), [
    (b"SKabc:secret", ("SKabc", "secret")),
    (b"user:pa:ss", ("user", "pa:ss")),  # the password may hold colons (the first one splits)
    (b"user:", ("user", "")),
    (b":", ("", "")),
    ("caf\u00e9:\u00fc".encode(), ("caf\u00e9", "\u00fc")),
])
def test_well_formed_credentials_are_read(raw, expected):
    assert credentials(header(raw)) == expected


def test_the_scheme_is_case_insensitive():
    assert credentials(header(b"u:p", "basic")) == ("u", "p")
    assert credentials(header(b"u:p", "BASIC")) == ("u", "p")


@pytest.mark.parametrize("value", [
    None, "", "Basic", "Basic ", "Bearer dTpw", "Basicdu:p",
    "Basic dTpwcQ",  # "u:pq" without its padding (dTpwcQ==): refused
    "Basic dTpwcQ=",  # half its padding
    "Basic dTpwcQ===",  # too much
    "Basic  dTpwcQ==",  # two spaces
    "Basic dTpw cQ==",  # a space inside
    "Basic dTpwcQ==\x00",  # a stray byte after
    "Basic dT=wcQ==",  # padding in the middle
    "Basic dTp-cQ==",  # the URL-safe alphabet
    "Basic dXNlcg==",  # "user": no colon
    "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),  # not UTF-8
    "Basic " + base64.b64encode(b"u\n:p").decode(),  # a control character
    "Basic " + base64.b64encode(b"u:p\x7f").decode(),
    "Basic " + "A" * MAX_HEADER,  # too long
])
def test_anything_else_is_no_credentials(value):
    assert credentials(value) is None


PRINTABLE = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=30)


@given(PRINTABLE.filter(lambda s: ":" not in s), PRINTABLE)
def test_every_encoded_pair_reads_back(user, password):
    assert credentials(header(f"{user}:{password}".encode())) == (user, password)


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", max_size=40))
def test_only_canonically_padded_base64_is_ever_accepted(token):
    if credentials(f"Basic {token}") is not None:
        assert len(token) % 4 == 0
        assert base64.b64encode(base64.b64decode(token)).decode() == token
