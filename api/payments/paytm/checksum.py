"""Paytm's checksum: the ``head.signature`` of its JSON APIs and the ``CHECKSUMHASH``
of its form posts, implemented on ``cryptography``.

The scheme is that of Paytm's checksum library (PyPI ``paytmchecksum``,
``PaytmChecksum.py``; https://developer.paytm.com/docs/checksum/)::

    hash     = hex(sha256(message + "|" + salt)) + salt       # salt: 4 random characters
    checksum = base64(AES-CBC(key=merchant key, iv="@@@@&&&&####$$$$", PKCS#7(hash)))

``message`` is either

- a JSON request or response ``body``, as the exact bytes sent (Paytm verifies the bytes
  it receives, so the signer must sign what it sends, not a re-serialization), or
- the fields of a form post (the browser callback and the payment webhook): their values
  in the order of their sorted names, joined by ``"|"``, a value spelled "null" in any
  case counting as empty, and ``CHECKSUMHASH`` itself left out (:func:`params_string`).

A verifier decrypts the checksum, reads the salt from the last four characters, and
recomputes the hash. The merchant key is the AES key: 16 bytes (AES-128) as Paytm issues
them; the official library also takes 24 or 32, and so does this module.

Why not the official package: it is unmaintained, imports ``Crypto`` (pycryptodome)
without declaring it, compares in non-constant time, and raises on malformed input.
Here :func:`verify_signature` never raises, and compares the whole decrypted block
(hash, salt and padding) with one :func:`hmac.compare_digest`: a separate padding check
would answer faster for a bad padding, a padding oracle from which CBC ciphertexts, and
so checksums, can be forged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import string
from collections.abc import Mapping

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "CHECKSUM_FIELD",
    "generate_signature",
    "params_string",
    "verify_signature",
]

CHECKSUM_FIELD = "CHECKSUMHASH"

_IV = b"@@@@&&&&####$$$$"
_SALT_LENGTH = 4
# The official library draws its salt from these; any 4 characters would verify.
_SALT_ALPHABET = string.ascii_letters + string.digits
_KEY_LENGTHS = (16, 24, 32)
# 64 hex digits of SHA-256 and the salt, PKCS#7-padded to whole AES blocks.
_PLAINTEXT_LENGTH = 64 + _SALT_LENGTH
_CIPHERTEXT_LENGTH = (_PLAINTEXT_LENGTH // 16 + 1) * 16

Signable = Mapping[str, str] | str | bytes


def params_string(params: Mapping[str, str]) -> str:
    """The string Paytm signs for form fields: values by sorted name, joined by ``|``,
    "null" (any case) as empty, ``CHECKSUMHASH`` left out."""
    return "|".join(_field_value(params[name]) for name in sorted(params) if name != CHECKSUM_FIELD)


def generate_signature(params: Signable, key: str, *, salt: str | None = None) -> str:
    """The checksum of ``params`` (form fields, or a body as the exact text or bytes
    sent) under the merchant ``key``. ``salt`` (4 letters or digits) is random unless
    given, for reproducible tests.

    Raises ``ValueError`` for a key that is not 16, 24 or 32 bytes, a malformed salt, or
    text that cannot be encoded as UTF-8; ``TypeError`` for a field that is not a string.
    """
    if salt is None:
        salt = "".join(secrets.choice(_SALT_ALPHABET) for _ in range(_SALT_LENGTH))
    elif len(salt) != _SALT_LENGTH or any(c not in _SALT_ALPHABET for c in salt):
        raise ValueError(f"a salt is {_SALT_LENGTH} ASCII letters or digits")
    if isinstance(params, Mapping):
        _check_fields(params)
    plaintext = _padded(_hash(_message(params), salt.encode("ascii")))
    encryptor = _cipher(_key_bytes(key)).encryptor()
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    return base64.b64encode(ciphertext).decode("ascii")


def verify_signature(params: Signable, key: str, checksum: object) -> bool:
    """Whether ``checksum`` is the checksum of ``params`` under the merchant ``key``.

    Never raises: a checksum that is not a string, not base64, of the wrong length or
    padding, made with another key or over other fields is simply not valid, and so are
    fields that are not strings and a key of the wrong length.
    """
    if not isinstance(checksum, str) or not isinstance(key, str):
        return False
    if isinstance(params, Mapping):
        if not all(isinstance(n, str) and isinstance(v, str) for n, v in params.items()):
            return False
    elif not isinstance(params, str | bytes):
        return False
    try:
        key_bytes = _key_bytes(key)
        message = _message(params)
        # validate=True: no silently skipped characters, so one checksum, one text.
        ciphertext = base64.b64decode(checksum.encode("ascii"), validate=True)
    except ValueError:  # includes binascii.Error and UnicodeError
        return False
    if len(ciphertext) != _CIPHERTEXT_LENGTH:
        return False
    decryptor = _cipher(key_bytes).decryptor()
    block = decryptor.update(ciphertext) + decryptor.finalize()
    salt = block[_PLAINTEXT_LENGTH - _SALT_LENGTH : _PLAINTEXT_LENGTH]
    # What a checksum with this salt must decrypt to, padding included, compared at once.
    return hmac.compare_digest(block, _padded(_hash(message, salt)))


def _field_value(value: str) -> str:
    # The official library sends a field Paytm returned as "null" (e.g. BANKNAME of a
    # wallet payment) as empty, whatever its case.
    return "" if value.lower() == "null" else value


def _check_fields(params: Mapping[str, str]) -> None:
    for name, value in params.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"form fields are strings, got {name!r}: {value!r}")


def _message(params: Signable) -> bytes:
    if isinstance(params, bytes):
        return params
    if isinstance(params, str):
        return params.encode("utf-8")
    return params_string(params).encode("utf-8")


def _hash(message: bytes, salt: bytes) -> bytes:
    digest = hashlib.sha256(message + b"|" + salt).hexdigest()
    return digest.encode("ascii") + salt


def _padded(plaintext: bytes) -> bytes:
    padder = padding.PKCS7(algorithms.AES.block_size).padder()
    return padder.update(plaintext) + padder.finalize()


def _key_bytes(key: str) -> bytes:
    encoded = key.encode("utf-8")
    if len(encoded) not in _KEY_LENGTHS:
        raise ValueError("a merchant key is 16, 24 or 32 bytes")
    return encoded


def _cipher(key: bytes) -> Cipher[modes.CBC]:
    return Cipher(algorithms.AES(key), modes.CBC(_IV))
