"""UserIdentity claim mapping, wire view, cache keys, and the identity kinds."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from syncline.errors import AuthError
from syncline.identity import (
    ANONYMOUS,
    SYSTEM,
    Admin,
    Anonymous,
    System,
    User,
    UserIdentity,
    is_admin,
    user_identity_of,
)

ISS = "https://issuer.example.com"

FULL_CLAIMS: dict[str, Any] = {
    "iss": ISS,
    "sub": "user_123",
    "aud": "my-app",
    "exp": 1_700_000_600,
    "iat": 1_700_000_000,
    "nbf": 1_700_000_000,
    "jti": "abc",
    "fva": [1, 2],
    "azp": "https://app.example.com",
    "name": "Ada Lovelace",
    "given_name": "Ada",
    "family_name": "Lovelace",
    "nickname": "ada",
    "preferred_username": "ada.l",
    "profile": "https://example.com/ada",
    "picture": "https://example.com/ada.png",
    "website": "https://ada.example.com",
    "email": "ada@example.com",
    "email_verified": True,
    "gender": "female",
    "birthdate": "1815-12-10",
    "zoneinfo": "Europe/London",
    "locale": "en-GB",
    "phone_number": "+44 20 0000 0000",
    "phone_number_verified": False,
    "address": {"formatted": "12 St James's Square, London"},
    "updated_at": 1_700_000_000,
    "org": "analytical-engines",
    "properties": {"email": "ada@work.example.com", "team": {"id": 7}},
    "roles": ["admin", "writer"],
}


def test_from_claims_maps_oidc_names_to_convex_fields() -> None:
    identity = UserIdentity.from_claims(FULL_CLAIMS, ISS)

    assert identity.token_identifier == f"{ISS}|user_123"
    assert identity.subject == "user_123"
    assert identity.issuer == ISS
    assert identity.name == "Ada Lovelace"
    assert identity.given_name == "Ada"
    assert identity.family_name == "Lovelace"
    assert identity.nickname == "ada"
    assert identity.preferred_username == "ada.l"
    assert identity.profile_url == "https://example.com/ada"
    assert identity.picture_url == "https://example.com/ada.png"
    assert identity.website_url == "https://ada.example.com"
    assert identity.email == "ada@example.com"
    assert identity.email_verified is True
    assert identity.gender == "female"
    assert identity.birthday == "1815-12-10"
    assert identity.timezone == "Europe/London"
    assert identity.language == "en-GB"
    assert identity.phone_number == "+44 20 0000 0000"
    assert identity.phone_number_verified is False
    assert identity.address == "12 St James's Square, London"
    assert identity.updated_at == "2023-11-14T22:13:20+00:00"
    assert dict(identity.claims) == {
        "azp": "https://app.example.com",
        "org": "analytical-engines",
        "properties": {"email": "ada@work.example.com", "team": {"id": 7}},
        "roles": ["admin", "writer"],
    }


def test_to_json_is_convex_shape_with_flattened_custom_claims() -> None:
    identity = UserIdentity.from_claims(FULL_CLAIMS, ISS)

    assert identity.to_json() == {
        "tokenIdentifier": f"{ISS}|user_123",
        "subject": "user_123",
        "issuer": ISS,
        "name": "Ada Lovelace",
        "givenName": "Ada",
        "familyName": "Lovelace",
        "nickname": "ada",
        "preferredUsername": "ada.l",
        "profileUrl": "https://example.com/ada",
        "pictureUrl": "https://example.com/ada.png",
        "websiteUrl": "https://ada.example.com",
        "email": "ada@example.com",
        "emailVerified": True,
        "gender": "female",
        "birthday": "1815-12-10",
        "timezone": "Europe/London",
        "language": "en-GB",
        "phoneNumber": "+44 20 0000 0000",
        "phoneNumberVerified": False,
        "address": "12 St James's Square, London",
        "updatedAt": "2023-11-14T22:13:20+00:00",
        "azp": "https://app.example.com",
        "org": "analytical-engines",
        "properties.email": "ada@work.example.com",
        "properties.team.id": 7,
        "roles": ["admin", "writer"],
    }


def test_housekeeping_claims_never_reach_the_identity() -> None:
    wire = UserIdentity.from_claims(FULL_CLAIMS, ISS).to_json()
    for dropped in ("exp", "iat", "nbf", "jti", "fva", "aud", "iss", "sub"):
        assert dropped not in wire


def test_getitem_and_get_use_wire_names() -> None:
    identity = UserIdentity.from_claims(FULL_CLAIMS, ISS)

    assert identity["tokenIdentifier"] == f"{ISS}|user_123"
    assert identity["email"] == "ada@example.com"
    assert identity["pictureUrl"] == "https://example.com/ada.png"
    assert identity["properties.email"] == "ada@work.example.com"
    assert identity["roles"] == ["admin", "writer"]
    assert identity.get("properties.team.id") == 7
    assert identity.get("missing") is None
    assert identity.get("missing", "dflt") == "dflt"
    assert "org" in identity
    assert "exp" not in identity
    with pytest.raises(KeyError):
        identity["exp"]


def test_absent_standard_claims_are_none_and_left_out_of_json() -> None:
    identity = UserIdentity.from_claims({"sub": "u1", "exp": 1}, ISS)

    assert identity.email is None
    assert identity.email_verified is None
    assert identity.to_json() == {
        "tokenIdentifier": f"{ISS}|u1",
        "subject": "u1",
        "issuer": ISS,
    }
    with pytest.raises(KeyError):
        identity["email"]


def test_custom_claims_cannot_shadow_identity_fields() -> None:
    claims = {
        "sub": "u1",
        "tokenIdentifier": "https://evil.example.com|admin",
        "subject": "admin",
        "issuer": "https://evil.example.com",
        "pictureUrl": "https://evil.example.com/x.png",
    }
    identity = UserIdentity.from_claims(claims, ISS)

    assert identity["tokenIdentifier"] == f"{ISS}|u1"
    assert identity["subject"] == "u1"
    assert identity["issuer"] == ISS
    assert "pictureUrl" not in identity
    assert dict(identity.claims) == {}


def test_string_booleans_are_accepted_as_cognito_sends_them() -> None:
    identity = UserIdentity.from_claims(
        {"sub": "u1", "email_verified": "true", "phone_number_verified": "False"}, ISS
    )
    assert identity.email_verified is True
    assert identity.phone_number_verified is False


def test_updated_at_conversions() -> None:
    as_float = UserIdentity.from_claims({"sub": "u", "updated_at": 1_700_000_000.5}, ISS)
    assert as_float.updated_at == "2023-11-14T22:13:20.500000+00:00"
    as_text = UserIdentity.from_claims({"sub": "u", "updated_at": "2024-01-01T00:00:00Z"}, ISS)
    assert as_text.updated_at == "2024-01-01T00:00:00Z"


def test_address_object_without_formatted_keeps_its_content() -> None:
    identity = UserIdentity.from_claims(
        {"sub": "u", "address": {"locality": "London", "country": "UK"}}, ISS
    )
    assert identity.address == '{"country":"UK","locality":"London"}'


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"email": "x"}, "token has no 'sub' claim"),
        ({"sub": ""}, "claim 'sub' must be a non-empty string, got '' (str)"),
        ({"sub": 42}, "claim 'sub' must be a non-empty string, got 42 (int)"),
        ({"sub": "u", "email": 5}, "claim 'email' must be a string, got 5 (int)"),
        (
            {"sub": "u", "email_verified": "yes"},
            "claim 'email_verified' must be a boolean, got 'yes' (str)",
        ),
        ({"sub": "u", "updated_at": [1]}, "claim 'updated_at' must be seconds since the epoch"),
        ({"sub": "u", "updated_at": 1e300}, "claim 'updated_at' is not a representable timestamp"),
    ],
)
def test_from_claims_rejects_malformed_claims(claims: dict[str, Any], message: str) -> None:
    with pytest.raises(AuthError) as info:
        UserIdentity.from_claims(claims, ISS)
    assert message in info.value.message


def test_cache_key_ignores_token_housekeeping() -> None:
    first = UserIdentity.from_claims({**FULL_CLAIMS, "exp": 1, "iat": 0, "jti": "a"}, ISS)
    second = UserIdentity.from_claims({**FULL_CLAIMS, "exp": 2, "iat": 1, "jti": "b"}, ISS)
    other = UserIdentity.from_claims({**FULL_CLAIMS, "email": "bob@example.com"}, ISS)

    assert first.cache_key() == second.cache_key()
    assert first == second
    assert hash(first) == hash(second)
    assert len({first, second}) == 1
    assert first.cache_key() != other.cache_key()
    assert first != other


def test_cache_key_distinguishes_custom_claims() -> None:
    a = UserIdentity.from_claims({"sub": "u", "plan": "free"}, ISS)
    b = UserIdentity.from_claims({"sub": "u", "plan": "pro"}, ISS)
    assert a.cache_key() != b.cache_key()


def test_user_identity_is_immutable() -> None:
    identity = UserIdentity.from_claims({"sub": "u", "roles": ["a"]}, ISS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        identity.email = "x@example.com"  # type: ignore[misc]
    with pytest.raises(TypeError):
        identity.claims["roles"] = []  # type: ignore[index]
    # to_json hands out a copy; mutating it leaves the identity alone.
    wire = identity.to_json()
    wire["roles"].append("b")
    assert identity["roles"] == ["a"]


def test_from_attributes_with_issuer_and_subject() -> None:
    identity = UserIdentity.from_attributes(
        {
            "issuer": ISS,
            "subject": "u9",
            "name": "Grace",
            "emailVerified": True,
            "updatedAt": "2024-01-01T00:00:00Z",
            "team": "compilers",
            "properties.level": 3,
        }
    )
    assert identity.token_identifier == f"{ISS}|u9"
    assert identity.name == "Grace"
    assert identity.email_verified is True
    assert identity.updated_at == "2024-01-01T00:00:00Z"
    assert identity["team"] == "compilers"
    assert identity["properties.level"] == 3


def test_from_attributes_with_token_identifier_only() -> None:
    identity = UserIdentity.from_attributes({"tokenIdentifier": f"{ISS}|user|with|pipes"})
    assert identity.issuer == ISS
    assert identity.subject == "user|with|pipes"
    assert identity.token_identifier == f"{ISS}|user|with|pipes"


def test_from_attributes_equals_token_identity_of_same_user() -> None:
    from_token = UserIdentity.from_claims({"sub": "u1", "email": "a@example.com", "exp": 5}, ISS)
    acting = UserIdentity.from_attributes(
        {"issuer": ISS, "subject": "u1", "email": "a@example.com"}
    )
    assert from_token == acting


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"name": "x"}, "need 'issuer' and 'subject' (or a 'tokenIdentifier'), got keys ['name']"),
        ({"tokenIdentifier": "no-pipe"}, "must look like '<issuer>|<subject>', got 'no-pipe'"),
        (
            {"tokenIdentifier": "a|b", "issuer": "a", "subject": "c"},
            "'tokenIdentifier' is 'a|b' but issuer and subject give 'a|c'",
        ),
        ({"issuer": ISS, "subject": 5}, "'subject' must be a non-empty string, got 5 (int)"),
        ({"issuer": ISS, "subject": "u", "emailVerified": 1}, "claim 'emailVerified'"),
        (["not", "a", "dict"], "must be a JSON object"),
    ],
)
def test_from_attributes_rejects_bad_input(attrs: Any, message: str) -> None:
    with pytest.raises(AuthError) as info:
        UserIdentity.from_attributes(attrs)
    assert message in info.value.message


def test_identity_kinds_and_what_get_user_identity_sees() -> None:
    user = UserIdentity.from_claims({"sub": "u"}, ISS)

    assert user_identity_of(ANONYMOUS) is None
    assert user_identity_of(SYSTEM) is None
    assert user_identity_of(Admin()) is None
    assert user_identity_of(Admin(acting_as=user)) is user
    assert user_identity_of(User(user=user, expires_at_ms=1.0, token="t")) is user

    assert is_admin(Admin())
    assert is_admin(Admin(acting_as=user))
    assert not is_admin(ANONYMOUS)
    assert not is_admin(SYSTEM)
    assert not is_admin(User(user=user, expires_at_ms=None, token="t"))

    assert Anonymous() == ANONYMOUS
    assert System() == SYSTEM
    assert ANONYMOUS != SYSTEM


def test_user_repr_does_not_leak_the_token() -> None:
    user = UserIdentity.from_claims({"sub": "u"}, ISS)
    assert "secret-token" not in repr(User(user=user, expires_at_ms=1.0, token="secret-token"))
