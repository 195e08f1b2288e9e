"""voice2fa_cli.signature: webhook signatures (HMAC-SHA1 over URL and sorted form fields)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voice2fa_cli.signalwire import signature

# The published vector (Twilio's and SignalWire's documentation).
KEY = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
FIELDS = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Caller", "+14158675309"),
    ("Digits", "1234"),
    ("From", "+14158675309"),
    ("To", "+18005551212"),
]
EXPECTED = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def reference(key: str, url: str, fields) -> str:
    """The scheme as documented, written out independently of the module under test."""
    data = url
    for name, value in sorted(fields):
        data += name + value
    return base64.b64encode(hmac.new(key.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()).decode()


def test_published_vector():
    assert signature.compute(KEY, URL, FIELDS) == EXPECTED
    assert signature.valid(KEY, URL, FIELDS, EXPECTED) is True


def test_reference_implementation_agrees_with_the_vector():
    # So that the property tests below compare against something known to be right.
    assert reference(KEY, URL, FIELDS) == EXPECTED


def test_headers():
    assert signature.HEADERS == ("X-SignalWire-Signature", "X-Twilio-Signature")


# --- default ports -------------------------------------------------------------------------------------


def test_signed_with_default_port_checked_without():
    sig = signature.compute(KEY, "https://mycompany.com:443/myapp.php?foo=1&bar=2", FIELDS)
    assert sig != EXPECTED
    assert signature.valid(KEY, URL, FIELDS, sig) is True


def test_signed_without_default_port_checked_with():
    assert signature.valid(KEY, "https://mycompany.com:443/myapp.php?foo=1&bar=2", FIELDS, EXPECTED) is True


def test_http_default_port_80():
    sig = signature.compute(KEY, "http://127.0.0.1/hook/abc", FIELDS)
    assert signature.valid(KEY, "http://127.0.0.1:80/hook/abc", FIELDS, sig) is True
    sig80 = signature.compute(KEY, "http://127.0.0.1:80/hook/abc", FIELDS)
    assert signature.valid(KEY, "http://127.0.0.1/hook/abc", FIELDS, sig80) is True


def test_ipv6_host_default_port():
    sig = signature.compute(KEY, "http://[::1]:80/hook", FIELDS)
    assert signature.valid(KEY, "http://[::1]/hook", FIELDS, sig) is True


def test_the_other_schemes_default_port_is_not_stripped():
    # :80 is not the default for https.
    sig = signature.compute(KEY, "https://mycompany.com:80/myapp.php", FIELDS)
    assert signature.valid(KEY, "https://mycompany.com/myapp.php", FIELDS, sig) is False


def test_a_non_default_port_is_not_stripped():
    url_8443 = "https://mycompany.com:8443/myapp.php?foo=1&bar=2"
    sig_8443 = signature.compute(KEY, url_8443, FIELDS)
    assert signature.valid(KEY, url_8443, FIELDS, sig_8443) is True
    assert signature.valid(KEY, URL, FIELDS, sig_8443) is False
    assert signature.valid(KEY, url_8443, FIELDS, EXPECTED) is False
    assert signature.url_variants(url_8443) == [url_8443]


def test_url_variants():
    assert signature.url_variants(URL) == [URL, "https://mycompany.com:443/myapp.php?foo=1&bar=2"]
    assert signature.url_variants("https://mycompany.com:443/x") == ["https://mycompany.com:443/x", "https://mycompany.com/x"]
    assert signature.url_variants("http://[::1]/x") == ["http://[::1]/x", "http://[::1]:80/x"]
    assert signature.url_variants("ftp://h/x") == ["ftp://h/x"]
    assert signature.url_variants("http://h:99999/x") == ["http://h:99999/x"]


# --- tampering -----------------------------------------------------------------------------------------


def replaced(fields, name, value):
    return [(n, value if n == name else v) for n, v in fields]


@pytest.mark.parametrize(
    "fields",
    [
        replaced(FIELDS, "Digits", "1235"),
        replaced(FIELDS, "To", "+18005551213"),
        replaced(FIELDS, "CallSid", "ca1234567890abcde"),
        [("Callsid" if n == "CallSid" else n, v) for n, v in FIELDS],
        FIELDS[:-1],
        FIELDS + [("CallStatus", "completed")],
        FIELDS + [("Digits", "1234")],
        [],
    ],
    ids=["value", "to", "value-case", "name-case", "dropped", "added", "repeated", "none"],
)
def test_tampered_fields(fields):
    assert signature.valid(KEY, URL, fields, EXPECTED) is False


def test_the_scheme_cannot_tell_where_a_name_ends():
    # A known limit of the platform's scheme, documented so nobody relies on more than it
    # gives: "Digits" + "1234" and "Digits1" + "234" concatenate to the same text.
    moved = replaced(FIELDS, "Digits", "234")
    moved = [("Digits1" if n == "Digits" else n, v) for n, v in moved]
    assert signature.compute(KEY, URL, moved) == EXPECTED


@pytest.mark.parametrize(
    "url",
    [
        "https://mycompany.com/myapp.php?foo=1&bar=3",
        "https://mycompany.com/myapp.php?bar=2&foo=1",
        "https://mycompany.com/myapp.php",
        "https://mycompany.com/other.php?foo=1&bar=2",
        "http://mycompany.com/myapp.php?foo=1&bar=2",
        "https://evil.com/myapp.php?foo=1&bar=2",
        "https://mycompany.com/myapp.php?foo=1&bar=2/",
        "https://MYCOMPANY.com/myapp.php?foo=1&bar=2",
    ],
)
def test_tampered_url(url):
    assert signature.valid(KEY, url, FIELDS, EXPECTED) is False


@pytest.mark.parametrize("key", ["12346", "", "123456", " 12345"])
def test_wrong_key(key):
    assert signature.valid(key, URL, FIELDS, EXPECTED) is False


@pytest.mark.parametrize(
    "sig",
    [
        "RSOYDt4T1cUTdK1PDd93/VVr8B8",  # truncated
        "RSOYDt4T1cUTdK1PDd93/VVr8B9=",  # last character changed
        "rsoydt4t1cutdk1pdd93/vvr8b8=",  # case changed
        "RSOYDt4T1cUTdK1PDd93/VVr8B8==",
        " RSOYDt4T1cUTdK1PDd93/VVr8B8=",
        base64.b64encode(base64.b64decode(EXPECTED)[:-1] + b"\x00").decode(),
        "RSOYDt4T1cUTdK1PDd93/VVr8B8=ü",  # non-ASCII must not raise
        "\udcff",  # a lone surrogate, as a broken header decoder might give
    ],
)
def test_tampered_signature(sig):
    assert signature.valid(KEY, URL, FIELDS, sig) is False


@pytest.mark.parametrize("sig", [None, ""])
def test_missing_signature(sig):
    assert signature.valid(KEY, URL, FIELDS, sig) is False


def test_the_signature_of_other_fields_is_not_accepted():
    other = signature.compute(KEY, URL, replaced(FIELDS, "Digits", "9999"))
    assert signature.valid(KEY, URL, FIELDS, other) is False


# --- field order, repetition, encoding --------------------------------------------------------------------


def test_field_order_does_not_matter():
    for fields in (list(reversed(FIELDS)), FIELDS[2:] + FIELDS[:2], [FIELDS[3], FIELDS[0], FIELDS[4], FIELDS[2], FIELDS[1]]):
        assert signature.compute(KEY, URL, fields) == EXPECTED
        assert signature.valid(KEY, URL, fields, EXPECTED) is True


def test_fields_may_be_any_iterable_even_a_generator():
    assert signature.valid(KEY, URL, (f for f in FIELDS), EXPECTED) is True


REPEATED = [("StatusCallbackEvent", "initiated"), ("StatusCallbackEvent", "ringing"), ("CallSid", "CA1")]


def test_repeated_fields_are_all_signed():
    sig = signature.compute(KEY, URL, REPEATED)
    assert sig == reference(KEY, URL, REPEATED)
    assert signature.valid(KEY, URL, REPEATED, sig) is True
    assert signature.valid(KEY, URL, REPEATED[1:], sig) is False
    assert signature.valid(KEY, URL, [REPEATED[0], REPEATED[2]], sig) is False


def test_repeated_fields_in_any_order():
    sig = signature.compute(KEY, URL, REPEATED)
    assert signature.valid(KEY, URL, [REPEATED[1], REPEATED[2], REPEATED[0]], sig) is True


def test_non_ascii_values():
    fields = [("CallerName", "Zoë Ångström"), ("City", "東京"), ("Note", "📞 ok"), ("CallSid", "CA1")]
    sig = signature.compute(KEY, URL, fields)
    assert sig == reference(KEY, URL, fields)
    assert signature.valid(KEY, URL, fields, sig) is True
    assert signature.valid(KEY, URL, replaced(fields, "CallerName", "Zoe Angstrom"), sig) is False


def test_non_ascii_url_and_key():
    url = "https://example.com/hoök/ü?x=é"
    sig = signature.compute("clé-秘密", url, FIELDS)
    assert sig == reference("clé-秘密", url, FIELDS)
    assert signature.valid("clé-秘密", url, FIELDS, sig) is True
    assert signature.valid("cle-秘密", url, FIELDS, sig) is False


# --- properties ------------------------------------------------------------------------------------------

names = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12)
values = st.text(max_size=30)
fields_strategy = st.lists(st.tuples(names, values), max_size=8)
paths = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_/", max_size=30)
hosts = st.sampled_from(["https://example.com", "https://example.com:443", "http://127.0.0.1:8080", "http://[::1]", "https://h.ngrok.app:8443"])
keys = st.text(min_size=1, max_size=40)


@settings(max_examples=300)
@given(keys, hosts, paths, fields_strategy)
def test_valid_accepts_what_compute_signs(key, host, path, fields):
    url = f"{host}/{path}"
    assert signature.valid(key, url, fields, signature.compute(key, url, fields)) is True


@settings(max_examples=200)
@given(keys, hosts, paths, fields_strategy)
def test_compute_matches_the_documented_scheme(key, host, path, fields):
    url = f"{host}/{path}"
    assert signature.compute(key, url, fields) == reference(key, url, fields)


@settings(max_examples=200)
@given(keys, keys, hosts, paths, fields_strategy)
def test_another_key_is_refused(key, other, host, path, fields):
    url = f"{host}/{path}"
    sig = signature.compute(key, url, fields)
    assert signature.valid(other, url, fields, sig) is (other.encode() == key.encode())


@settings(max_examples=200)
@given(keys, hosts, paths, fields_strategy, st.permutations(range(8)))
def test_valid_ignores_field_order(key, host, path, fields, order):
    url = f"{host}/{path}"
    sig = signature.compute(key, url, fields)
    shuffled = [fields[i] for i in order if i < len(fields)]
    assert signature.valid(key, url, shuffled, sig) is True
