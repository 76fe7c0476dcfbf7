"""Our Paytm checksum against the official ``paytmchecksum`` package, used here only as an
oracle: each side verifies what the other signs, for form fields and for JSON bodies; and
whatever garbage a verifier is handed, it answers False without raising."""

from __future__ import annotations

import base64
import json
import string
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from paytmchecksum import PaytmChecksum as official

from api.payments.paytm.checksum import generate_signature, params_string, verify_signature

KEY = "kbzk1DSbJiV_O3p5"  # the shape of a Paytm staging merchant key: 16 characters
OTHER_KEY = "Xv5T&WcdRNhvz7#u"

# Reproducible on a fresh clone: no example database, the same examples every run.
EXAMPLES = settings(derandomize=True, database=None, max_examples=150, deadline=None)

keys = st.text(string.ascii_letters + string.digits + "#@&$%_", min_size=16, max_size=16)
# Not CHECKSUMHASH: the official generateSignature signs it, its verifySignature drops it.
field_names = st.text(string.ascii_uppercase + "_", min_size=1, max_size=12).filter(
    lambda name: name != "CHECKSUMHASH"
)
# Any text: unicode, empty, "null" in any case, the separator "|" itself.
field_values = st.one_of(
    st.text(max_size=40), st.sampled_from(["", "null", "NULL", "Null", "|", "a|b", "₹99.00"])
)
form_fields = st.dictionaries(field_names, field_values, max_size=14)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def json_body(value: Any, spaced: bool) -> str:
    separators = (", ", ": ") if spaced else (",", ":")
    return json.dumps({"body": value}, ensure_ascii=not spaced, separators=separators)


def test_a_known_vector_matches_the_official_library() -> None:
    fields = {"MID": "INTEGR7769XXXXXX9383", "ORDERID": "ORDERID_98765", "TXNAMOUNT": "1.00"}
    ours = generate_signature(fields, KEY, salt="Ab12")
    theirs = official.calculateChecksum(official.getStringByParams(fields), KEY, "Ab12")
    assert ours == theirs
    assert len(ours) == 108  # Paytm documents signature as string(108)


@EXAMPLES
@given(fields=form_fields, key=keys)
def test_the_official_library_verifies_our_form_checksums(fields: dict[str, str], key: str) -> None:
    checksum = generate_signature(fields, key)
    assert official.verifySignature(dict(fields), key, checksum)


@EXAMPLES
@given(fields=form_fields, key=keys)
def test_we_verify_the_official_librarys_form_checksums(fields: dict[str, str], key: str) -> None:
    checksum = official.generateSignature(dict(fields), key)
    assert verify_signature(fields, key, checksum)


@EXAMPLES
@given(value=json_values, spaced=st.booleans(), key=keys)
def test_json_bodies_verify_both_ways(value: Any, spaced: bool, key: str) -> None:
    body = json_body(value, spaced)
    assert official.verifySignature(body, key, generate_signature(body, key))
    assert official.verifySignature(body, key, generate_signature(body.encode("utf-8"), key))
    theirs = official.generateSignature(body, key)
    assert verify_signature(body, key, theirs)
    assert verify_signature(body.encode("utf-8"), key, theirs)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"MID": ""},
        {"RESPMSG": "भुगतान सफल", "BANKNAME": "État Bank ✓", "CURRENCY": "INR"},
        {"EMOJI": "💸", "SPACE": "  ", "NEWLINE": "a\nb"},
        {"BANKNAME": "null", "GATEWAYNAME": "NULL", "TXNID": ""},
    ],
)
def test_unicode_and_empty_values_verify_both_ways(fields: dict[str, str]) -> None:
    assert official.verifySignature(dict(fields), KEY, generate_signature(fields, KEY))
    assert verify_signature(fields, KEY, official.generateSignature(dict(fields), KEY))


def test_params_string_sorts_by_name_and_maps_null_to_empty() -> None:
    fields = {"b": "2", "a": "1", "c": "NuLl", "CHECKSUMHASH": "x"}
    assert params_string(fields) == "1|2|"  # uppercase sorts first: CHECKSUMHASH left out
    assert params_string({"Z": "z", "a": "a"}) == "z|a"


def test_checksumhash_is_not_signed() -> None:
    fields = {"MID": "M1", "ORDERID": "O1"}
    checksum = generate_signature({**fields, "CHECKSUMHASH": "anything"}, KEY)
    assert verify_signature({**fields, "CHECKSUMHASH": checksum}, KEY, checksum)
    assert official.verifySignature({**fields, "CHECKSUMHASH": checksum}, KEY, checksum)


def test_a_given_salt_is_reproducible_and_a_random_one_is_not() -> None:
    fields = {"MID": "M1"}
    assert generate_signature(fields, KEY, salt="aaaa") == generate_signature(
        fields, KEY, salt="aaaa"
    )
    salts = {official.decrypt(generate_signature(fields, KEY), KEY)[-4:] for _ in range(20)}
    assert len(salts) > 1
    assert all(s.isalnum() and s.isascii() for s in salts)


@pytest.mark.parametrize(
    "change",
    [
        {"TXNAMOUNT": "100.00"},  # a tampered field
        {"STATUS": "TXN_FAILURE"},
        {"EXTRA": "1"},  # an added one
        {"TXNAMOUNT": "1.00 "},
    ],
)
def test_a_tampered_form_does_not_verify(change: dict[str, str]) -> None:
    fields = {"MID": "M1", "ORDERID": "O1", "TXNAMOUNT": "1.00", "STATUS": "TXN_SUCCESS"}
    checksum = generate_signature(fields, KEY)
    assert not verify_signature({**fields, **change}, KEY, checksum)


def test_a_removed_field_does_not_verify() -> None:
    fields = {"MID": "M1", "ORDERID": "O1", "TXNAMOUNT": "1.00"}
    checksum = generate_signature(fields, KEY)
    del fields["TXNAMOUNT"]
    assert not verify_signature(fields, KEY, checksum)


def test_a_tampered_body_does_not_verify() -> None:
    body = '{"mid":"M1","orderId":"O1","txnAmount":{"value":"1.00","currency":"INR"}}'
    checksum = generate_signature(body, KEY)
    assert not verify_signature(body.replace("1.00", "9.00"), KEY, checksum)
    assert not verify_signature(body + " ", KEY, checksum)  # the bytes, not the meaning


def test_another_key_does_not_verify() -> None:
    fields = {"MID": "M1"}
    assert not verify_signature(fields, OTHER_KEY, generate_signature(fields, KEY))
    assert not verify_signature(fields, OTHER_KEY, official.generateSignature(dict(fields), KEY))


def _valid() -> str:
    return generate_signature({"MID": "M1"}, KEY)


@pytest.mark.parametrize(
    "checksum",
    [
        None,
        108,
        b"bytes are not a checksum",
        ["a"],
        "",
        "garbage",
        "!!!!",
        "é" * 108,
        _valid()[:-4],  # truncated
        _valid()[:-1],  # wrong padding
        _valid().rstrip("="),  # padding removed
        _valid() + "A",
        _valid() + "====",
        _valid()[:50] + "\n" + _valid()[50:],  # a line break the official decoder skips
        " " + _valid(),
        _valid().lower(),
        base64.b64encode(bytes(16)).decode(),  # one block
        base64.b64encode(bytes(80)).decode(),  # the right length, all zero
        base64.b64encode(bytes(range(96))).decode(),
    ],
)
def test_garbage_checksums_are_invalid_without_raising(checksum: object) -> None:
    assert verify_signature({"MID": "M1"}, KEY, checksum) is False


@EXAMPLES
@given(checksum=st.one_of(st.text(max_size=150), st.binary(max_size=120).map(base64.b64encode)))
@example(checksum=base64.b64encode(bytes(80)))
def test_arbitrary_checksums_never_raise(checksum: str | bytes) -> None:
    if isinstance(checksum, bytes):
        checksum = checksum.decode("ascii")
    assert verify_signature({"MID": "M1"}, KEY, checksum) is False
    assert verify_signature("{}", KEY, checksum) is False


@pytest.mark.parametrize(
    ("params", "key"),
    [
        (None, KEY),
        (123, KEY),
        (["MID", "M1"], KEY),
        ({"MID": 1}, KEY),
        ({"MID": None}, KEY),
        ({1: "M1"}, KEY),
        ({"MID": "M1"}, None),
        ({"MID": "M1"}, "short"),
        ({"MID": "M1"}, "sixteen-chars-é"),  # 16 characters, 17 bytes
        ("\udc80", KEY),  # not encodable
    ],
)
def test_non_string_input_is_invalid_without_raising(params: Any, key: Any) -> None:
    assert verify_signature(params, key, _valid()) is False


def test_generate_refuses_what_it_cannot_sign() -> None:
    with pytest.raises(ValueError):
        generate_signature({"MID": "M1"}, "short")
    with pytest.raises(ValueError):
        generate_signature({"MID": "M1"}, KEY, salt="abc")
    with pytest.raises(ValueError):
        generate_signature({"MID": "M1"}, KEY, salt="ab|d")
    with pytest.raises(TypeError):
        generate_signature({"MID": 1}, KEY)  # type: ignore[dict-item]


def test_longer_aes_keys_work_as_in_the_official_library() -> None:
    for key in ("k" * 24, "k" * 32):
        checksum = generate_signature({"MID": "M1"}, key)
        assert official.verifySignature({"MID": "M1"}, key, checksum)
        assert verify_signature({"MID": "M1"}, key, official.generateSignature({"MID": "M1"}, key))
