"""Human-visible text: one line, or paragraphs; what may not be in either."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import BaseModel, ValidationError

from kernel.rpc.text import Line, Paragraphs, nul_path


class Form(BaseModel):
    name: Annotated[str, Line(2, 40)]
    note: Annotated[str, Paragraphs(1, 50)] = "-"


@pytest.mark.parametrize(
    "name",
    [
        "Ravi\nCall +91 98765 43210",  # a second line under the name
        "Ra\rvi",  # (at the ends whitespace is trimmed away)
        "Ravi\tKumar",
        "Ravi\u2028Call me",  # a line separator draws a new line too
        "Ravi\u202eramuK",  # right-to-left override: shown reversed
        "Ravi\u2066x\u2069",
        "Ra\x07vi",
        "Ra\x85vi",
    ],
)
def test_one_line_refuses_what_draws_or_reorders(name: str) -> None:
    with pytest.raises(ValidationError, match="one line of text"):
        Form(name=name)


def test_one_line_is_trimmed_and_held_to_its_length() -> None:
    assert Form(name="  Asha Rao  ").name == "Asha Rao"
    assert Form(name="आशा राव").name == "आशा राव"  # any script
    assert Form(name="Asha\u200eRao").name == "Asha\u200eRao"  # a bidi mark is harmless
    with pytest.raises(ValidationError):
        Form(name=" A ")
    with pytest.raises(ValidationError):
        Form(name="x" * 41)


def test_paragraphs_keep_line_breaks_and_nothing_worse() -> None:
    assert Form(name="Asha", note="Gate 2\r\nFlat 4B\tleft").note == "Gate 2\nFlat 4B\tleft"
    for bad in ("a\x1b[31mred", "a\u202eb", "a\rb", "a\x00b"):
        with pytest.raises(ValidationError, match="control characters"):
            Form(name="Asha", note=bad)


def test_the_schema_still_says_the_lengths() -> None:
    schema = Form.model_json_schema()["properties"]["name"]
    assert (schema["minLength"], schema["maxLength"]) == (2, 40)


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"phone": "98\x0076"}, "phone"),
        ({"device": {"model": "x\x00"}}, "device.model"),
        ({"subServiceIds": [1, "2\x00"]}, "subServiceIds.1"),
        ({"a\x00b": 1}, "a\x00b"),
        ({"ok": "fine", "list": [{"deep": ["x", "y\x00"]}]}, "list.0.deep.1"),
        ({"ok": "fine"}, None),
        (None, None),
    ],
)
def test_a_nul_anywhere_is_found_with_its_path(value: object, path: str | None) -> None:
    assert nul_path(value) == path
