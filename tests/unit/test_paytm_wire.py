"""Paytm's wire vocabulary: exact amounts, and the text span of a signed JSON body."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.payments.paytm.jsonspan import top_level_spans, value_span
from api.payments.paytm.wire import MalformedAmount, format_amount, parse_amount

EXAMPLES = settings(derandomize=True, database=None, max_examples=150, deadline=None)


@pytest.mark.parametrize(
    ("paise", "text"),
    [(1, "0.01"), (99, "0.99"), (100, "1.00"), (9900, "99.00"), (123456, "1234.56")],
)
def test_amounts_are_rupees_with_two_decimals(paise: int, text: str) -> None:
    assert format_amount(paise) == text
    assert parse_amount(text) == paise


@pytest.mark.parametrize(("text", "paise"), [("99", 9900), ("99.5", 9950), ("0.00", 0)])
def test_shorter_amounts_parse_exactly(text: str, paise: int) -> None:
    assert parse_amount(text) == paise


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1.001",
        "-1.00",
        "+1.00",
        "1e2",
        "1,00",
        " 1.00",
        "1.00 ",
        "01.00",
        ".5",
        "1.",
        "NaN",
        "١٠٠",
        100,
        1.0,
        None,
        "9" * 13,
    ],
)
def test_malformed_amounts_are_refused(text: object) -> None:
    with pytest.raises(MalformedAmount):
        parse_amount(text)


@pytest.mark.parametrize("paise", [0, -1, True, 1.5, "100"])
def test_only_positive_paise_are_sent(paise: object) -> None:
    with pytest.raises(ValueError):
        format_amount(paise)  # type: ignore[arg-type]


@EXAMPLES
@given(paise=st.integers(min_value=1, max_value=10**13))
def test_amounts_round_trip(paise: int) -> None:
    assert parse_amount(format_amount(paise)) == paise


def test_the_span_is_the_text_as_written() -> None:
    text = '{ "head" : {"signature":"x"} ,\n "body":{"a" : "\\u20b9 1",  "b":[1, 2]}\t}'
    start, end = value_span(text, "body")
    assert text[start:end] == '{"a" : "\\u20b9 1",  "b":[1, 2]}'
    assert json.loads(text[start:end]) == {"a": "₹ 1", "b": [1, 2]}
    assert set(top_level_spans(text)) == {"head", "body"}


@EXAMPLES
@given(
    head=st.dictionaries(st.text(max_size=5), st.text(max_size=5)),
    body=st.recursive(
        st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=10,
    ),
    indent=st.sampled_from([None, 0, 2]),
)
def test_the_span_of_any_document_parses_to_its_value(
    head: object, body: object, indent: int | None
) -> None:
    text = json.dumps({"head": head, "body": body}, indent=indent, ensure_ascii=False)
    start, end = value_span(text, "body")
    assert json.loads(text[start:end]) == body


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        '"body"',
        "{",
        '{"body":}',
        '{"body":1,}',
        '{"body":1 "head":2}',
        '{"body":1}x',
        "{1:2}",
        '{"body":{"a":1},"body":{"a":2}}',  # the second would win in json.loads
    ],
)
def test_malformed_or_ambiguous_documents_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        top_level_spans(text)


def test_a_missing_key_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        value_span('{"head":{}}', "body")
    assert top_level_spans(" {} ") == {}
