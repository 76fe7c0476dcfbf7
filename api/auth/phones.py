"""Phone numbers as login identities: one canonical E.164 string per subscriber.

Users log in with an SMS code, so the phone number *is* the account key. Two spellings
of one number must therefore map to one string, or a user would get two accounts and
the per-phone OTP limits could be dodged by reformatting the number. We parse with
Google's libphonenumber metadata (the ``phonenumbers`` package) and keep only numbers
that can receive an SMS.

Rules, in the order they are applied (each failure raises :class:`InvalidPhone`):

1. At most :data:`MAX_INPUT_LENGTH` characters, checked before any parsing.
2. Only ASCII digits, spaces and ``+ - ( ) .`` — no letters (libphonenumber would
   accept vanity numbers like ``1-800-FLOWERS`` and extensions like ``ext. 5``, which
   cannot receive an SMS) and no other symbols or non-ASCII digits.
3. Legacy rule kept from the original back end: when the default region is ``IN``, a
   string of exactly 12 digits starting with ``91`` is an Indian number written with
   its country code but without the ``+``.
4. The number must be valid for the region it belongs to (``is_valid_number``).
5. Its type must be MOBILE or FIXED_LINE_OR_MOBILE. The latter is what libphonenumber
   answers where fixed and mobile ranges cannot be told apart (the US and Canada, for
   instance); everything else — FIXED_LINE, TOLL_FREE, VOIP, UNKNOWN, … — is refused.
   We deliberately do not second-guess the metadata per region.
"""

from __future__ import annotations

from typing import Final

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

__all__ = ["MAX_INPUT_LENGTH", "InvalidPhone", "normalize_phone"]

MAX_INPUT_LENGTH: Final = 32
"""Longest raw input accepted; a formatted E.164 number with spaces fits easily."""

_ALLOWED_CHARACTERS: Final = frozenset("0123456789 +-().")
_SMS_CAPABLE_TYPES: Final = frozenset(
    {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}
)


class InvalidPhone(ValueError):
    """The input is not a phone number we can send a login code to.

    ``reason`` is a short English phrase, safe to show to the user.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalize_phone(raw: str, default_region: str = "IN") -> str:
    """Return ``raw`` in E.164 form (``"+919876543210"``) or raise :class:`InvalidPhone`.

    ``default_region`` (ISO 3166-1 alpha-2) is how numbers without ``+country code``
    are read. An unknown region is a programming error and raises a plain
    :class:`ValueError`, not :class:`InvalidPhone`.

    The result is a fixed point: ``normalize_phone(normalize_phone(x)) ==
    normalize_phone(x)`` for every region.
    """
    if default_region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown default region {default_region!r}")
    _check_characters(raw)
    text = raw.strip()
    if default_region == "IN" and len(text) == 12 and text.isdigit() and text.startswith("91"):
        text = "+" + text
    try:
        number = phonenumbers.parse(text, default_region)
    except NumberParseException as exc:
        raise InvalidPhone("not a phone number") from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone("not a valid phone number")
    if phonenumbers.number_type(number) not in _SMS_CAPABLE_TYPES:
        raise InvalidPhone("not a mobile number")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def _check_characters(raw: str) -> None:
    if len(raw) > MAX_INPUT_LENGTH:
        raise InvalidPhone("too long")
    if not raw.strip():
        raise InvalidPhone("empty")
    if any(ch.isalpha() for ch in raw):
        raise InvalidPhone("contains letters")
    if not _ALLOWED_CHARACTERS.issuperset(raw):
        raise InvalidPhone("unexpected character")
