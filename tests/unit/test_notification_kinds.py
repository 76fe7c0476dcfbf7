"""The catalogue of notification kinds: every type has its texts, every template renders
with its fields, and the protocol's table says what the catalogue says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from api.notifications import CATALOGUE, CATEGORY, WELCOME, NotificationType, Template
from kernel.push import CATEGORIES

PROTOCOL = Path(__file__).parents[2] / "docs" / "protocol.md"


def test_every_type_has_a_catalogue_entry_under_its_own_name() -> None:
    assert set(CATALOGUE) == set(NotificationType)
    for type, kind in CATALOGUE.items():
        assert kind.type is type
        assert kind.category in CATEGORIES
        assert CATEGORY[type.value] == kind.category
        assert kind.to and kind.title.text and kind.body.text


@pytest.mark.parametrize("type", list(NotificationType))
def test_every_template_renders_with_its_fields(type: NotificationType) -> None:
    kind = CATALOGUE[type]
    values = {name: f"<{name}>" for name in kind.fields}
    title, body = kind.render(values)
    for name in kind.fields:
        assert f"<{name}>" in title + body
    for text in (title, body):
        assert not re.search(r"[{}\[\]]", text), text  # no field or bracket left over
        assert text == text.strip() and "  " not in text
    # A missing field is a mistake of the caller's, never a half-written text.
    for name in kind.fields:
        with pytest.raises(KeyError):
            kind.render({k: v for k, v in values.items() if k != name})


def test_an_optional_part_is_left_out_when_its_field_is_none() -> None:
    cancelled = CATALOGUE[NotificationType.BOOKING_CANCELLED]
    fields = {"customer": "Asha Rao", "service": "Plumber", "when": "27 Nov 2026, 10:30 AM"}
    assert cancelled.render({**fields, "reason": "Plans changed"})[1] == (
        "Asha Rao cancelled the Plumber booking for 27 Nov 2026, 10:30 AM. Reason: Plans changed"
    )
    assert cancelled.render({**fields, "reason": None})[1] == (
        "Asha Rao cancelled the Plumber booking for 27 Nov 2026, 10:30 AM."
    )
    with pytest.raises(ValueError, match="customer is required"):
        cancelled.render({**fields, "customer": None, "reason": None})


def test_values_are_text_never_templates() -> None:
    template = Template("{a} and[ {b}]")
    assert template.render({"a": "{b}", "b": "[{a}]"}) == "{b} and [{a}]"
    assert template.fields == {"a", "b"}


@pytest.mark.parametrize("text", ["[a [{b}]]", "a ]{b}[", "[{b}", "{b.c}", "{0}"])
def test_a_malformed_template_is_refused_at_declaration(text: str) -> None:
    with pytest.raises(ValueError):
        Template(text)


@pytest.mark.parametrize("role", ["customer", "provider"])
def test_the_welcome_of_each_role_renders(role: str) -> None:
    title, body = CATALOGUE[NotificationType.WELCOME].render({**WELCOME[role], "name": None})
    assert title.startswith("Welcome to BuildXpert") and body.startswith("Hi, your account")


def test_the_protocol_lists_every_kind_as_the_catalogue_has_it() -> None:
    rows = {}
    for line in PROTOCOL.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"`[a-z_]+`", cells[0]):  # | `type` | to | ...
            type = cells[0].strip("`")
            assert type not in rows, f"{type} twice"
            rows[type] = cells[1:]
    assert set(rows) == {t.value for t in NotificationType}
    for type, kind in CATALOGUE.items():
        assert rows[type.value] == [kind.to, kind.title.text, kind.body.text, f"`{kind.category}`"]
