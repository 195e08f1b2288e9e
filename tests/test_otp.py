"""voice2fa_cli.otp: generating, normalising, hashing and checking one-time codes."""

from __future__ import annotations

import hashlib
import hmac
import random
import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voice2fa_cli import otp

KEY = b"k" * 32
OTHER_KEY = b"K" * 32
SESSION = "s_0123456789abcdef"
BINDING = otp.Binding("+15551234567", SESSION)

# Upper tail 9.2e-7 of the chi-square distribution with 9 degrees of freedom: a uniform
# generator fails this about once in a million runs (no flaky CI); the biased samples below
# score around 80 and fail it every time.
CHI2_9DF_999 = 45.0
SAMPLE_DIGITS = 200_000


def chi_square(counts: Counter, total: int) -> float:
    """Pearson's statistic of `counts` (digit → count) against a uniform spread over 0–9."""
    expected = total / 10
    return sum((counts.get(str(d), 0) - expected) ** 2 / expected for d in range(10))


# --- generate ---------------------------------------------------------------------------------


def test_generate_default_is_six_ascii_digits():
    code = otp.generate()
    assert len(code) == 6
    assert re.fullmatch(r"[0-9]{6}", code)


@pytest.mark.parametrize("digits", [6, 7, 8, 9, 10])
def test_generate_has_the_requested_length(digits):
    for _ in range(50):
        code = otp.generate(digits)
        assert len(code) == digits
        assert re.fullmatch(r"[0-9]+", code)


@pytest.mark.parametrize("digits", [-1, 0, 1, 5, 11, 12, 100])
def test_generate_refuses_lengths_outside_6_to_10(digits):
    with pytest.raises(ValueError) as info:
        otp.generate(digits)
    assert str(info.value) == f"a code has 6 to 10 digits, not {digits}"


def test_generate_keeps_leading_zeros():
    # A code built as str(randbelow(10**6)) without padding would be short or never start
    # with 0; 20,000 codes without a leading 0 has probability 0.9**20000, i.e. never.
    codes = [otp.generate(6) for _ in range(20_000)]
    assert all(len(c) == 6 for c in codes)
    assert any(c.startswith("0") for c in codes)


def test_chi_square_flags_a_modulo_biased_generator():
    # The classic mistake: a random byte modulo 10 makes 0–5 appear 26/256 of the time and
    # 6–9 only 25/256. Over the same sample size as the real test the statistic is ~80,
    # far above the threshold, so the uniformity test below can fail.
    rng = random.Random(20240601)
    biased = "".join(str(rng.randrange(256) % 10) for _ in range(SAMPLE_DIGITS))
    assert chi_square(Counter(biased), SAMPLE_DIGITS) > CHI2_9DF_999


def test_chi_square_flags_a_generator_that_never_starts_with_zero():
    rng = random.Random(7)
    codes = [str(rng.randrange(1, 10)) + "".join(str(rng.randrange(10)) for _ in range(9)) for _ in range(20_000)]
    digits = "".join(codes)
    assert chi_square(Counter(digits), len(digits)) > CHI2_9DF_999


def test_chi_square_of_an_exactly_uniform_sample_is_zero():
    assert chi_square(Counter("0123456789" * 100), 1000) == 0.0


def test_generate_digits_are_uniform():
    # 20,000 codes of 10 digits = 200,000 digits. Under uniformity the statistic exceeds the
    # threshold about once in a million runs; a biased generator exceeds it every time (above).
    digits = "".join(otp.generate(10) for _ in range(SAMPLE_DIGITS // 10))
    assert len(digits) == SAMPLE_DIGITS
    counts = Counter(digits)
    assert set(counts) <= set("0123456789")
    statistic = chi_square(counts, SAMPLE_DIGITS)
    assert statistic < CHI2_9DF_999, f"chi-square {statistic:.2f} with counts {sorted(counts.items())}"


# --- normalise --------------------------------------------------------------------------------

ascii_digit = st.sampled_from("0123456789")
separator = st.sampled_from([" ", "-", ".", "  ", " - ", "--", ". "])


@st.composite
def typed_code(draw, min_size=6, max_size=10):
    """A code as an operator might type it: digits with optional separators between them."""
    digits = draw(st.lists(ascii_digit, min_size=min_size, max_size=max_size))
    text = digits[0] if digits else ""
    for d in digits[1:]:
        text += draw(st.one_of(st.just(""), separator)) + d
    return "".join(digits), text


@settings(max_examples=300)
@given(typed_code())
def test_normalise_accepts_6_to_10_digits_with_separators(pair):
    digits, text = pair
    assert otp.normalise(text) == digits


@settings(max_examples=100)
@given(typed_code(), st.sampled_from(["", " ", "\t", "\n", "  \n"]))
def test_normalise_ignores_surrounding_whitespace(pair, pad):
    digits, text = pair
    assert otp.normalise(pad + text + pad) == digits


@settings(max_examples=200)
@given(typed_code(), st.integers(min_value=0, max_value=10), st.characters(categories=["L"]))
def test_normalise_rejects_letters(pair, position, letter):
    _, text = pair
    position = min(position, len(text))
    assert otp.normalise(text[:position] + letter + text[position:]) is None


@settings(max_examples=200)
@given(st.one_of(typed_code(min_size=0, max_size=5), typed_code(min_size=11, max_size=30)))
def test_normalise_rejects_wrong_lengths(pair):
    _, text = pair
    assert otp.normalise(text) is None


# Unicode decimal digits that are not ASCII: Arabic-Indic, Devanagari, fullwidth, Bengali.
NON_ASCII_DIGITS = "٠١٢٣٤٥٦٧٨٩" + "०१२३४५६७८९" + "０１２３４５６７８９" + "০১২৩৪৫৬৭৮৯"


@settings(max_examples=200)
@given(
    st.lists(ascii_digit, min_size=5, max_size=9),
    st.sampled_from(NON_ASCII_DIGITS),
    st.integers(min_value=0, max_value=9),
)
def test_normalise_rejects_any_non_ascii_digit(digits, foreign, position):
    digits.insert(min(position, len(digits)), foreign)
    assert otp.normalise("".join(digits)) is None


@pytest.mark.parametrize(
    "text",
    ["", " ", "-", "...", " - . ", "١٢٣٤٥٦", "１２３４５６", "123456\x00", "12345６", "²³⁴⁵⁶⁷", "+123456", "123_456", "1234,56"],
)
def test_normalise_rejects(text):
    assert otp.normalise(text) is None


@pytest.mark.parametrize(
    ("text", "digits"),
    [("123456", "123456"), ("123 456", "123456"), ("123-456", "123456"), ("12.34.56", "123456"),
     ("0000000000", "0000000000"), (" 481 234 \n", "481234")],
)
def test_normalise_examples(text, digits):
    assert otp.normalise(text) == digits


# --- digest / matches -------------------------------------------------------------------------


def test_digest_is_hmac_sha256_of_the_binding_and_the_code():
    binding = otp.Binding("+15551234567", SESSION, service="VA" + "0" * 32, sandbox=False)
    message = f"voice2fa code v2\x00real\x00VA{'0' * 32}\x00+15551234567\x00{SESSION}\x00481234".encode()
    assert otp.digest(KEY, binding, "481234") == hmac.new(KEY, message, hashlib.sha256).digest()
    assert len(otp.digest(KEY, binding, "481234")) == 32


@pytest.mark.parametrize("other", [
    otp.Binding("+15557654321", SESSION),  # another number
    otp.Binding("+15551234567", SESSION, sandbox=True),  # the sandbox's namespace
    otp.Binding("+15551234567", SESSION, service="VA" + "1" * 32),  # another service
    otp.Binding("+15551234567", "another-session"),  # another session
])
def test_a_digest_moved_to_another_number_namespace_service_or_session_does_not_match(other):
    stored = otp.digest(KEY, BINDING, "481234")
    assert otp.matches(KEY, BINDING, "481234", stored) is True
    assert otp.matches(KEY, other, "481234", stored) is False


def test_digest_does_not_contain_the_code():
    stored = otp.digest(KEY, BINDING, "481234")
    assert b"481234" not in stored
    assert "481234" not in stored.hex()


@settings(max_examples=200)
@given(st.text(alphabet="0123456789", min_size=6, max_size=10))
def test_matches_round_trip(code):
    stored = otp.digest(KEY, BINDING, code)
    assert otp.matches(KEY, BINDING, code, stored) is True


@settings(max_examples=200)
@given(st.text(alphabet="0123456789", min_size=6, max_size=10), st.text(alphabet="0123456789", min_size=6, max_size=10))
def test_a_different_code_does_not_match(code, other):
    stored = otp.digest(KEY, BINDING, code)
    assert otp.matches(KEY, BINDING, other, stored) is (other == code)


def test_wrong_code_does_not_match():
    stored = otp.digest(KEY, BINDING, "481234")
    assert otp.matches(KEY, BINDING, "481235", stored) is False
    assert otp.matches(KEY, BINDING, "48123", stored) is False
    assert otp.matches(KEY, BINDING, "4812340", stored) is False
    assert otp.matches(KEY, BINDING, "", stored) is False


def test_session_and_code_cannot_be_shifted_into_each_other():
    # Without the separator, ("s1", "234567") and ("s12", "34567…") would hash the same text.
    shorter, longer = otp.Binding("+15551234567", "s1"), otp.Binding("+15551234567", "s12")
    assert otp.digest(KEY, shorter, "2345678") != otp.digest(KEY, longer, "345678")


def test_the_key_matters():
    stored = otp.digest(KEY, BINDING, "481234")
    assert otp.digest(OTHER_KEY, BINDING, "481234") != stored
    assert otp.matches(OTHER_KEY, BINDING, "481234", stored) is False


def test_matches_a_truncated_or_empty_stored_digest_is_false():
    stored = otp.digest(KEY, BINDING, "481234")
    assert otp.matches(KEY, BINDING, "481234", stored[:16]) is False
    assert otp.matches(KEY, BINDING, "481234", b"") is False
