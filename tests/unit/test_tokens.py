"""Access tokens (HS256 JWT checked against an injected clock) and opaque refresh tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from api.auth.tokens import (
    MAX_ACCESS_TOKEN_LENGTH,
    REFRESH_TOKEN_LENGTH,
    AccessClaims,
    AccessTokens,
    TokenError,
    TokenExpired,
    TokenInvalid,
    hash_refresh_token,
    looks_like_refresh_token,
    new_refresh_token,
)

SECRET = b"s" * 32
NOW = datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)
IAT = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)  # NOW rounded down
EXP = IAT + timedelta(minutes=15)
SESSION = uuid.UUID("0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9")
TICK = timedelta(microseconds=1)

TOKENS = AccessTokens(SECRET)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value: object) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def good_payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "iss": "buildxpert-rtc",
        "sub": "42",
        "role": "customer",
        "sid": str(SESSION),
        "jti": "0" * 32,
        "iat": int(IAT.timestamp()),
        "exp": int(EXP.timestamp()),
        "typ": "access",
    }
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


def hand_signed(
    header: dict[str, Any],
    payload: dict[str, Any],
    secret: bytes = SECRET,
    hash_name: str = "sha256",
) -> str:
    """A JWS built by hand, HMAC signed (SHA-256 unless told) whatever the header says."""
    signing_input = f"{b64url_json(header)}.{b64url_json(payload)}"
    signature = hmac.new(secret, signing_input.encode(), hash_name).digest()
    return f"{signing_input}.{b64url(signature)}"


def issue(**kwargs: Any) -> str:
    token, _ = TOKENS.issue(42, "customer", SESSION, NOW, **kwargs)
    return token


# --- Issuing and the round trip ------------------------------------------------------


def test_round_trip() -> None:
    token, claims = TOKENS.issue(42, "customer", SESSION, NOW)
    assert TOKENS.verify(token, NOW) == claims
    assert claims.user_id == 42
    assert claims.role == "customer"
    assert claims.session_id == SESSION
    assert claims.issued_at == IAT
    assert claims.expires_at == EXP
    assert len(claims.jti) == 32 and int(claims.jti, 16) >= 0


@pytest.mark.parametrize(
    "fraction", [timedelta(0), timedelta(milliseconds=500), timedelta(seconds=1) - TICK]
)
def test_issued_at_is_rounded_down_to_the_second(fraction: timedelta) -> None:
    token, claims = TOKENS.issue(42, "customer", SESSION, IAT + fraction)
    assert claims.issued_at == IAT and claims.expires_at == EXP
    assert TOKENS.verify(token, IAT + fraction) == claims


def test_wire_format_of_an_access_token() -> None:
    token, claims = TOKENS.issue(42, "customer", SESSION, NOW)
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    assert jwt.decode(token, options={"verify_signature": False}) == {
        "iss": "buildxpert-rtc",
        "sub": "42",
        "role": "customer",
        "sid": "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9",
        "jti": claims.jti,
        "iat": 1772366400,
        "exp": 1772366400 + 900,
        "typ": "access",
    }


def test_each_token_gets_its_own_jti() -> None:
    _, first = TOKENS.issue(42, "customer", SESSION, NOW)
    _, second = TOKENS.issue(42, "customer", SESSION, NOW)
    assert first.jti != second.jti


def test_jti_factory_is_injectable() -> None:
    tokens = AccessTokens(SECRET, new_jti=lambda: "fixed-id")
    token, claims = tokens.issue(7, "provider", SESSION, NOW)
    assert claims.jti == "fixed-id"
    assert tokens.verify(token, NOW).jti == "fixed-id"


def test_largest_user_id_round_trips() -> None:
    token, claims = TOKENS.issue(2**63 - 1, "customer", SESSION, NOW)
    assert TOKENS.verify(token, NOW).user_id == 2**63 - 1 == claims.user_id


@pytest.mark.parametrize(
    ("user_id", "role"),
    [(0, "customer"), (-1, "customer"), (2**63, "customer"), (True, "customer"), (1, "")],
)
def test_issue_refuses_bad_identities(user_id: int, role: str) -> None:
    with pytest.raises(ValueError):
        TOKENS.issue(user_id, role, SESSION, NOW)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"secret": b"s" * 31},
        {"ttl": timedelta(0)},
        {"ttl": timedelta(seconds=1.5)},
        {"leeway": timedelta(seconds=-1)},
        {"issuer": ""},
    ],
)
def test_constructor_refuses_weak_or_odd_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        AccessTokens(**{"secret": SECRET, **kwargs})


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        TOKENS.issue(42, "customer", SESSION, NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="timezone-aware"):
        TOKENS.verify(issue(), NOW.replace(tzinfo=None))


# --- Time ------------------------------------------------------------------------------


def test_valid_until_expiry_plus_leeway() -> None:
    token = issue()
    assert TOKENS.verify(token, EXP - TICK).user_id == 42
    assert TOKENS.verify(token, EXP + timedelta(seconds=5) - TICK).user_id == 42
    with pytest.raises(TokenExpired):
        TOKENS.verify(token, EXP + timedelta(seconds=5))
    with pytest.raises(TokenExpired):
        TOKENS.verify(token, EXP + timedelta(days=365))


def test_without_leeway_expiry_is_exact() -> None:
    strict = AccessTokens(SECRET, leeway=timedelta(0))
    token, _ = strict.issue(42, "customer", SESSION, IAT)
    assert strict.verify(token, EXP - TICK).user_id == 42
    with pytest.raises(TokenExpired):
        strict.verify(token, EXP)


def test_custom_ttl() -> None:
    short = AccessTokens(SECRET, ttl=timedelta(seconds=60), leeway=timedelta(0))
    token, claims = short.issue(42, "customer", SESSION, IAT)
    assert claims.expires_at == IAT + timedelta(seconds=60)
    with pytest.raises(TokenExpired):
        short.verify(token, IAT + timedelta(seconds=60))


def test_the_wall_clock_is_not_used() -> None:
    # Issued and checked in 2001: long expired by the wall clock, valid by the given now.
    then = datetime(2001, 1, 1, tzinfo=UTC)
    token, claims = TOKENS.issue(42, "customer", SESSION, then)
    assert TOKENS.verify(token, then + timedelta(minutes=1)) == claims
    # Issued in 2100: in the future for the wall clock, yet fine at the given now.
    future = datetime(2100, 1, 1, tzinfo=UTC)
    token, claims = TOKENS.issue(42, "customer", SESSION, future)
    assert TOKENS.verify(token, future) == claims


def test_token_from_the_future_is_invalid_beyond_leeway() -> None:
    token = issue()
    assert TOKENS.verify(token, IAT - timedelta(seconds=5)).user_id == 42
    with pytest.raises(TokenInvalid, match="future"):
        TOKENS.verify(token, IAT - timedelta(seconds=5) - TICK)


def test_expired_and_forged_is_invalid_not_expired() -> None:
    forged = hand_signed({"alg": "HS256", "typ": "JWT"}, good_payload(), secret=b"x" * 32)
    with pytest.raises(TokenInvalid, match="bad signature"):
        TOKENS.verify(forged, EXP + timedelta(hours=1))


# --- Tampering and algorithms ----------------------------------------------------------


def test_hand_signed_token_is_accepted() -> None:
    # Guards the helper the next tests rely on: only what they change is wrong.
    token = hand_signed({"alg": "HS256", "typ": "JWT"}, good_payload())
    assert TOKENS.verify(token, NOW).user_id == 42


def test_tampered_payload_is_rejected() -> None:
    header, _, signature = issue().split(".")
    promoted = b64url_json(good_payload(role="admin", sub="1"))
    with pytest.raises(TokenInvalid, match="bad signature"):
        TOKENS.verify(f"{header}.{promoted}.{signature}", NOW)


def test_tampered_signature_is_rejected() -> None:
    header, payload, signature = issue().split(".")
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    with pytest.raises(TokenInvalid, match="bad signature"):
        TOKENS.verify(f"{header}.{payload}.{flipped}", NOW)


def test_other_secret_is_rejected() -> None:
    token, _ = AccessTokens(b"o" * 32).issue(42, "customer", SESSION, NOW)
    with pytest.raises(TokenInvalid, match="bad signature"):
        TOKENS.verify(token, NOW)


@pytest.mark.parametrize("signature", ["", "c2ln"])
def test_alg_none_is_rejected(signature: str) -> None:
    unsigned = f"{b64url_json({'alg': 'none', 'typ': 'JWT'})}.{b64url_json(good_payload())}"
    with pytest.raises(TokenInvalid):
        TOKENS.verify(f"{unsigned}.{signature}", NOW)


def test_alg_none_made_by_pyjwt_is_rejected() -> None:
    token = jwt.encode(good_payload(), key=None, algorithm="none")
    with pytest.raises(TokenInvalid):
        TOKENS.verify(token, NOW)


@pytest.mark.parametrize(("alg", "hash_name"), [("HS384", "sha384"), ("HS512", "sha512")])
def test_other_hmac_algorithms_with_our_secret_are_rejected(alg: str, hash_name: str) -> None:
    # Correctly signed with our secret, so only the algorithm pin can refuse it.
    token = hand_signed({"alg": alg, "typ": "JWT"}, good_payload(), hash_name=hash_name)
    with pytest.raises(TokenInvalid, match="algorithm not allowed"):
        TOKENS.verify(token, NOW)


@pytest.mark.parametrize("alg", ["RS256", "ES256", "PS256", "EdDSA", "hs256", "none", "NONE"])
def test_header_naming_another_algorithm_is_rejected(alg: str) -> None:
    # The key-confusion attack: HMAC-signed with our secret, labelled as something else.
    token = hand_signed({"alg": alg, "typ": "JWT"}, good_payload())
    with pytest.raises(TokenInvalid, match="algorithm not allowed"):
        TOKENS.verify(token, NOW)


# --- Claims ----------------------------------------------------------------------------


def test_wrong_issuer_is_rejected() -> None:
    token, _ = AccessTokens(SECRET, issuer="someone-else").issue(42, "customer", SESSION, NOW)
    with pytest.raises(TokenInvalid, match="wrong issuer"):
        TOKENS.verify(token, NOW)


@pytest.mark.parametrize("typ", ["refresh", "ACCESS", "", 1])
def test_wrong_type_is_rejected(typ: object) -> None:
    token = hand_signed({"alg": "HS256"}, good_payload(typ=typ))
    with pytest.raises(TokenInvalid, match="not an access token"):
        TOKENS.verify(token, NOW)


@pytest.mark.parametrize("claim", ["iss", "sub", "role", "sid", "jti", "iat", "exp", "typ"])
def test_missing_claim_is_rejected(claim: str) -> None:
    payload = good_payload()
    del payload[claim]
    with pytest.raises(TokenInvalid, match=f"missing claim '{claim}'"):
        TOKENS.verify(hand_signed({"alg": "HS256"}, payload), NOW)


@pytest.mark.parametrize(
    "changes",
    [
        {"sub": 42},
        {"sub": "042"},
        {"sub": "0"},
        {"sub": "-1"},
        {"sub": "4 2"},
        {"sub": "abc"},
        {"sub": str(2**63)},
        {"sub": "9" * 40},
        {"role": ""},
        {"role": 5},
        {"role": ["admin"]},
        {"sid": "not-a-uuid"},
        {"sid": str(SESSION).upper()},
        {"sid": "{" + str(SESSION) + "}"},
        {"sid": SESSION.hex},
        {"sid": 5},
        {"jti": ""},
        {"jti": 5},
        {"iat": "1772366400"},
        {"iat": 1772366400.5},
        {"iat": -1},
        {"exp": True},
        {"exp": 1772366400.5 + 900},
        {"exp": 10**20},
        {"exp": int(IAT.timestamp())},  # not after iat
        {"aud": "someone"},
    ],
    ids=repr,
)
def test_mistyped_claims_are_rejected(changes: dict[str, Any]) -> None:
    token = hand_signed({"alg": "HS256"}, good_payload(**changes))
    with pytest.raises(TokenInvalid):
        TOKENS.verify(token, NOW)


def _signed_token_of_length(length: int) -> str:
    for role_length in range(length):
        token = hand_signed({"alg": "HS256"}, good_payload(role="r" * role_length))
        if len(token) >= length:
            assert len(token) == length, "no padding gives exactly this length"
            return token
    raise AssertionError("unreachable")


def test_length_limit_on_well_signed_tokens() -> None:
    at_limit = _signed_token_of_length(MAX_ACCESS_TOKEN_LENGTH)
    assert TOKENS.verify(at_limit, NOW).role.startswith("r")
    over_limit = _signed_token_of_length(MAX_ACCESS_TOKEN_LENGTH + 1)
    with pytest.raises(TokenInvalid, match="too long"):
        TOKENS.verify(over_limit, NOW)


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        ".",
        "..",
        "a.b",
        "a.b.c.d",
        "a.b.c",
        "@@.@@.@@",
        "eyJ.eyJ.c2ln",
        " " + "a.b.c",
        None,
        b"a.b.c",
    ],
)
def test_garbage_is_invalid(garbage: Any) -> None:
    with pytest.raises(TokenInvalid):
        TOKENS.verify(garbage, NOW)


def test_token_errors_form_one_tree() -> None:
    assert issubclass(TokenExpired, TokenError)
    assert issubclass(TokenInvalid, TokenError)
    assert not issubclass(TokenError, jwt.PyJWTError)


@given(
    text=st.text(max_size=300)
    | st.from_regex(r"[A-Za-z0-9_-]{0,60}(\.[A-Za-z0-9_-]{0,60}){2}", fullmatch=True)
)
@example(text="\ud800.a.b")
@example(text="e30.e30.e30")
@example(text="eyJhbGciOiJIUzI1NiJ9.W10.c2ln")
def test_arbitrary_text_raises_token_invalid_only(text: str) -> None:
    with pytest.raises(TokenInvalid):
        TOKENS.verify(text, NOW)


_VALID = issue()


@given(position=st.integers(0, len(_VALID) - 1), replacement=st.sampled_from("AQgw_-.0a="))
def test_a_changed_character_never_yields_other_claims(position: int, replacement: str) -> None:
    mutated = _VALID[:position] + replacement + _VALID[position + 1 :]
    try:
        claims = TOKENS.verify(mutated, NOW)
    except TokenInvalid:
        return
    # base64url leaves a few low bits of a final character unused: such a change
    # decodes to the very same bytes, hence the same claims.
    original_parts = [jwt.utils.base64url_decode(p) for p in _VALID.split(".")]
    assert [jwt.utils.base64url_decode(p) for p in mutated.split(".")] == original_parts
    assert claims == TOKENS.verify(_VALID, NOW)


_HEADER = _VALID.partition(".")[0]  # the header every token we issue carries
_CLAIM_VALUES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=4)
    | st.sampled_from(["buildxpert-rtc", "42", "access", str(SESSION), ""])
    | st.lists(st.text(max_size=2), max_size=2)
)


def _signed(raw_payload: bytes, secret: bytes = SECRET) -> str:
    signing_input = f"{_HEADER}.{b64url(raw_payload)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def _pyjwt_answer(token: str) -> object:
    try:
        return TOKENS._decode_any(token)
    except TokenInvalid as error:
        return ("refused", str(error))


@given(
    changes=st.dictionaries(
        st.sampled_from([*good_payload(), "aud", "nbf", "extra"]), _CLAIM_VALUES, max_size=4
    ),
    removed=st.sets(st.sampled_from(list(good_payload())), max_size=2),
    other_key=st.booleans(),
)
@example(changes={"exp": 2**65 + 1}, removed=set(), other_key=False)  # orjson: a float
@example(changes={"extra": 2**64}, removed=set(), other_key=False)
@example(changes={"aud": "someone"}, removed=set(), other_key=False)
@example(changes={"iat": True}, removed=set(), other_key=False)
def test_our_tokens_are_decoded_as_pyjwt_decodes_them(
    changes: dict[str, Any], removed: set[str], other_key: bool
) -> None:
    """Tokens with our header skip PyJWT's generic decoding: they must get exactly the
    answer PyJWT gives (the same payload, or a refusal PyJWT words)."""
    payload = {k: v for k, v in {**good_payload(), **changes}.items() if k not in removed}
    token = _signed(json.dumps(payload).encode(), b"k" * 32 if other_key else SECRET)
    ours = TOKENS._decode_issued(token)
    if ours is not None:
        assert ours == _pyjwt_answer(token)
    try:
        answer: object = TOKENS._decode(token)
    except TokenInvalid as error:
        answer = ("refused", str(error))
    assert answer == _pyjwt_answer(token)


@pytest.mark.parametrize(
    "raw",
    [b"[]", b'"x"', b"{", b'{"exp": NaN}', b"\xff", b'{"iss": "\\ud800"}', b"{}" * 2],
)
def test_payloads_our_decoding_leaves_to_pyjwt(raw: bytes) -> None:
    token = _signed(raw)
    assert TOKENS._decode_issued(token) is None
    with pytest.raises(TokenInvalid):
        TOKENS.verify(token, NOW)


@pytest.mark.parametrize("segment", [1, 2])
@pytest.mark.parametrize(
    "replacement", list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
)
def test_other_spellings_of_the_same_bytes_get_pyjwts_answer(
    segment: int, replacement: str
) -> None:
    """base64url leaves low bits of a last character unused: a token respelled there
    decodes to the same bytes, which PyJWT refuses (it accepts canonical spellings
    only); so must the fast path."""
    parts = _VALID.split(".")
    parts[segment] = parts[segment][:-1] + replacement
    token = ".".join(parts)
    try:
        answer: object = TOKENS._decode(token)
    except TokenInvalid as error:
        answer = ("refused", str(error))
    assert answer == _pyjwt_answer(token)


def test_an_issued_token_is_decoded_without_pyjwt(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("PyJWT's decode was called")

    monkeypatch.setattr(jwt, "decode", refuse)
    assert TOKENS.verify(_VALID, NOW).session_id == SESSION
    # ... and one signed with another key is refused by PyJWT, not by us.
    forged = _signed(jwt.utils.base64url_decode(_VALID.split(".")[1]), b"k" * 32)
    with pytest.raises(AssertionError, match="PyJWT"):
        TOKENS.verify(forged, NOW)


# --- Refresh tokens --------------------------------------------------------------------


def test_new_refresh_token_format() -> None:
    tokens = {new_refresh_token() for _ in range(100)}
    assert len(tokens) == 100
    for token in tokens:
        assert len(token) == REFRESH_TOKEN_LENGTH == 64
        assert looks_like_refresh_token(token)


@pytest.mark.parametrize(
    ("raw", "token"),
    [(b"\x00" * 48, "A" * 64), (b"\xff" * 48, "_" * 64), (b"\xfb\xef\xbe" * 16, "-" * 64)],
)
def test_refresh_token_is_unpadded_base64url_of_48_bytes(raw: bytes, token: str) -> None:
    assert new_refresh_token(token_bytes=lambda n: raw[:n]) == token


def test_refresh_token_needs_48_random_bytes() -> None:
    with pytest.raises(ValueError):
        new_refresh_token(token_bytes=lambda n: b"\x00" * (n - 1))


@pytest.mark.parametrize(
    "candidate",
    [
        "",
        "A" * 63,
        "A" * 65,
        "A" * 10**6,
        "A" * 63 + "=",
        "A" * 63 + "+",
        "A" * 63 + "/",
        "A" * 63 + ".",
        "A" * 63 + "é",
        "A" * 64 + "\n",
        " " + "A" * 63,
        None,
        b"A" * 64,
        64,
    ],
)
def test_malformed_refresh_tokens(candidate: object) -> None:
    assert not looks_like_refresh_token(candidate)
    with pytest.raises(TokenInvalid):
        hash_refresh_token(candidate)  # type: ignore[arg-type]


def test_refresh_token_hash_is_sha256_of_the_token() -> None:
    token = new_refresh_token()
    assert hash_refresh_token(token) == hashlib.sha256(token.encode()).digest()
    assert hash_refresh_token(token) == hash_refresh_token(token)
    assert hash_refresh_token(token) != hash_refresh_token(new_refresh_token())
    assert len(hash_refresh_token(token)) == 32


@given(st.text(max_size=100))
def test_refresh_token_check_never_raises(text: str) -> None:
    expected = len(text) == 64 and all(c.isascii() and (c.isalnum() or c in "-_") for c in text)
    assert looks_like_refresh_token(text) is expected


def test_access_claims_are_frozen() -> None:
    claims = AccessClaims(1, "customer", SESSION, "j", IAT, EXP)
    with pytest.raises(AttributeError):
        claims.role = "admin"  # type: ignore[misc]
