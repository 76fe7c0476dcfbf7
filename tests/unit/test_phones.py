"""Phone normalization: one E.164 string per SMS-capable number, InvalidPhone otherwise."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from api.auth.phones import MAX_INPUT_LENGTH, InvalidPhone, normalize_phone

INDIAN_MOBILE = "+919876543210"


@pytest.mark.parametrize(
    "raw",
    [
        "9876543210",
        "+91 98765 43210",
        "098765 43210",
        "919876543210",  # legacy: 12 digits starting 91 = country code without "+"
        "9198765 43210",
        "+919876543210",
        "+91-98765-43210",
        "(+91) 98765 43210",
        "+91 (98765) 43210",
        "0091 98765 43210",
        "98765.43210",
        "  9876543210  ",
        "+ 91 98765 43210",
    ],
)
def test_indian_mobile_spellings_normalize_to_one_string(raw: str) -> None:
    assert normalize_phone(raw) == INDIAN_MOBILE


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+1 415 555 2671", "+14155552671"),  # FIXED_LINE_OR_MOBILE in the metadata
        ("+1 (415) 555-2671", "+14155552671"),
        ("+44 7911 123456", "+447911123456"),
        ("+49 1512 3456789", "+4915123456789"),
        ("+971 50 123 4567", "+971501234567"),
        ("+86 138 0013 8000", "+8613800138000"),
        ("7012345678", "+917012345678"),
    ],
)
def test_valid_mobile_numbers_with_country_code(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("415 555 2671", "US", "+14155552671"),
        ("07911 123456", "GB", "+447911123456"),
        ("+919876543210", "GB", INDIAN_MOBILE),  # an explicit country code wins
    ],
)
def test_default_region_reads_national_numbers(raw: str, region: str, expected: str) -> None:
    assert normalize_phone(raw, default_region=region) == expected


def test_legacy_twelve_digit_rule_is_only_for_india() -> None:
    # Read as a US national number, these twelve digits are simply invalid.
    with pytest.raises(InvalidPhone, match="not a valid phone number"):
        normalize_phone("919876543210", default_region="US")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("    ", "empty"),
        ("9876543210 ext. 5", "contains letters"),
        ("1-800-FLOWERS", "contains letters"),
        ("98765432l0", "contains letters"),
        ("+91 98765 43210 x5", "contains letters"),
        ("９８７６５４３２１０", "unexpected character"),  # fullwidth digits
        ("٩٨٧٦٥٤٣٢١٠", "unexpected character"),  # Arabic-Indic digits
        ("9876543210#5", "unexpected character"),
        ("9876543210;5", "unexpected character"),
        ("98765\n43210", "unexpected character"),
        ("98765\t43210", "unexpected character"),
        ("+", "not a phone number"),
        ("0", "not a phone number"),
        ("98765+43210", "not a phone number"),
        ("12345", "not a valid phone number"),
        ("98765432", "not a valid phone number"),
        ("5012345678", "not a valid phone number"),
        ("0000000000", "not a valid phone number"),
        ("+91 98765 4321", "not a valid phone number"),
        ("+91 98765 432100", "not a valid phone number"),
        ("0919876543210", "not a valid phone number"),
        ("+44 1632 960983", "not a valid phone number"),  # reserved for drama
        ("+91 22 2345 6789", "not a mobile number"),  # Mumbai fixed line
        ("915876543210", "not a mobile number"),  # legacy rule, but a fixed line
        ("1800 123 4567", "not a mobile number"),  # Indian toll free
        ("+1 800 555 0199", "not a mobile number"),  # US toll free
        ("+44 20 7946 0958", "not a mobile number"),  # London fixed line
    ],
)
def test_rejected_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(InvalidPhone) as info:
        normalize_phone(raw)
    assert info.value.reason == reason
    assert str(info.value) == reason


def test_length_limit_is_checked_on_the_raw_input() -> None:
    at_limit = "9876543210".rjust(MAX_INPUT_LENGTH)
    assert normalize_phone(at_limit) == INDIAN_MOBILE
    with pytest.raises(InvalidPhone, match="too long"):
        normalize_phone(" " + at_limit)


def test_invalid_phone_is_a_value_error() -> None:
    assert issubclass(InvalidPhone, ValueError)


def test_unknown_default_region_is_a_programming_error_not_invalid_phone() -> None:
    with pytest.raises(ValueError, match="unknown default region") as info:
        normalize_phone("9876543210", default_region="XX")
    assert not isinstance(info.value, InvalidPhone)


# --- Properties ------------------------------------------------------------------------

_phone_like_text = st.text(alphabet="0123456789 +-().", max_size=MAX_INPUT_LENGTH + 2)
_regions = st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS))


def _check_normalized(result: str) -> None:
    assert result.startswith("+")
    assert result[1:].isascii() and result[1:].isdigit()
    assert normalize_phone(result) == result
    # E.164 carries its country code, so the default region no longer matters.
    assert normalize_phone(result, default_region="US") == result


@given(raw=st.one_of(st.text(max_size=40), _phone_like_text))
@example(raw="+91 98765 43210")
@example(raw="919876543210")
def test_arbitrary_text_is_normalized_idempotently_or_rejected(raw: str) -> None:
    try:
        result = normalize_phone(raw)
    except InvalidPhone:
        return
    _check_normalized(result)


@given(raw=_phone_like_text, region=_regions)
def test_any_region_yields_a_fixed_point_or_invalid_phone(raw: str, region: str) -> None:
    try:
        result = normalize_phone(raw, default_region=region)
    except InvalidPhone:
        return
    _check_normalized(result)


@given(
    subscriber=st.from_regex(r"9[0-9]{9}", fullmatch=True),
    spelling=st.sampled_from(
        ["{n}", "+91{n}", "+91 {a} {b}", "0{a} {b}", "91{n}", "0091-{a}-{b}", "(+91) {a}.{b}"]
    ),
)
def test_spellings_of_one_number_agree(subscriber: str, spelling: str) -> None:
    raw = spelling.format(n=subscriber, a=subscriber[:5], b=subscriber[5:])
    try:
        expected = normalize_phone("+91" + subscriber)
    except InvalidPhone:
        with pytest.raises(InvalidPhone):
            normalize_phone(raw)
        return
    assert normalize_phone(raw) == expected
