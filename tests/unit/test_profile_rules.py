"""Profile rules with no I/O: name changes and email validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.profile import MAX_NAME_CHANGES, UpdateProfile, next_name
from kernel.errors import Unprocessable


def test_a_first_name_or_the_same_name_is_no_change() -> None:
    assert next_name(None, "Asha", 0) == ("Asha", 0)
    assert next_name("Asha", "Asha", 2) == ("Asha", 2)


def test_at_most_two_real_changes() -> None:
    assert next_name("Asha", "Asha Rao", 0) == ("Asha Rao", 1)
    assert next_name("Asha Rao", "Asha K Rao", 1) == ("Asha K Rao", 2)
    with pytest.raises(Unprocessable) as refused:
        next_name("Asha K Rao", "Someone", MAX_NAME_CHANGES)
    assert refused.value.data["reason"] == "name_change_limit"


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("asha@example.com", "asha@example.com"),
        (" Asha.Rao+x@Mail.Example.IN ", "Asha.Rao+x@mail.example.in"),
    ],
)
def test_valid_emails(given: str, stored: str) -> None:
    assert UpdateProfile.model_validate({"email": given}).email == stored


@pytest.mark.parametrize(
    "email",
    [
        "plain",
        "a@b",
        "a@b.c",
        "@example.com",
        "a..b@example.com",
        ".a@example.com",
        "a@-example.com",
        "a b@example.com",
        "a@example..com",
        "x" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
    ],
)
def test_invalid_emails(email: str) -> None:
    with pytest.raises(ValidationError):
        UpdateProfile.model_validate({"email": email})
