"""The 2.x username + passkey functions, driven by a software authenticator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncline.accounts.webauthn import WebAuthnError, _cbor

from .conftest import AuthBackend
from .soft_authenticator import SoftAuthenticator, b64url, cbor, unb64url
from .test_v2 import open_v2_backend

AUTH_V2_PASSKEY = """
from syncline.accounts import Password, convex_auth

auth = convex_auth(providers=[Password()], access_token_ttl_s=600)
refreshSession, signOut, isAuthenticated = auth.v2.session()
(
    startSignInWithUsernamePasskey,
    startAutofillSignInWithUsernamePasskey,
    finishSignUpWithUsernamePasskey,
    finishSignInWithUsernamePasskey,
) = auth.v2.username_passkey()
(
    startAddPasskey,
    verifyAddPasskey,
    finishAddPasskey,
    startRemovePasskey,
    finishRemovePasskey,
    listPasskeys,
    renamePasskey,
) = auth.v2.passkey_management()
"""

ORIGIN = "http://app.test"  # SITE_URL's origin; the RP ID is app.test


@pytest.fixture
def auth2(tmp_path: Path) -> Iterator[AuthBackend]:
    with open_v2_backend(tmp_path, AUTH_V2_PASSKEY) as backend:
        yield backend


def _start(auth: AuthBackend, username: str) -> Any:
    return auth.t.mutation("auth:startSignInWithUsernamePasskey", {"username": username})


def _sign_up(auth: AuthBackend, device: SoftAuthenticator, username: str) -> Any:
    start = _start(auth, username)
    assert start["step"] == "register", start
    response = device.register(start["options"])
    return auth.t.mutation(
        "auth:finishSignUpWithUsernamePasskey", {"username": username, "response": response}
    )


def _finish_sign_in(auth: AuthBackend, response: Any) -> Any:
    return auth.t.mutation("auth:finishSignInWithUsernamePasskey", {"response": response})


def _error(error: str) -> dict[str, Any]:
    return {"status": "error", "userError": {"error": error}}


def test_sign_up_then_sign_in_with_the_passkey(auth2: AuthBackend) -> None:
    device = SoftAuthenticator(ORIGIN)
    start = _start(auth2, "ada")
    options = start["options"]
    assert options["rp"] == {"id": "app.test", "name": "app.test"}
    assert options["attestation"] == "none"
    assert [p["alg"] for p in options["pubKeyCredParams"]] == [-7, -257]
    response = device.register(options)
    up = auth2.t.mutation(
        "auth:finishSignUpWithUsernamePasskey", {"username": "ada", "response": response}
    )
    assert up["status"] == "complete", up
    me = auth2.me(up["tokens"]["accessToken"])
    assert me["name"] == "ada" and me["id"] == up["tokens"]["userId"]
    [passkey] = auth2.table("authPasskeys")
    assert passkey["credentialId"] == b64url(device.passkeys[0].credential_id)
    assert passkey["transports"] == ["internal"]

    start = _start(auth2, "ada")
    assert start["step"] == "authenticate"
    assert [c["id"] for c in start["options"]["allowCredentials"]] == [passkey["credentialId"]]
    answer = _finish_sign_in(auth2, device.authenticate(start["options"]))
    assert answer["status"] == "complete" and answer["username"] == "ada"
    assert answer["tokens"]["userId"] == me["id"]
    [passkey] = auth2.table("authPasskeys")
    assert passkey["signCount"] == 1
    assert auth2.table("authPasskeyChallenges") == []  # spent


def test_autofill_challenge_finds_the_account_by_its_passkey(auth2: AuthBackend) -> None:
    device = SoftAuthenticator(ORIGIN)
    user_id = _sign_up(auth2, device, "ada")["tokens"]["userId"]
    options = auth2.t.mutation("auth:startAutofillSignInWithUsernamePasskey", {})["options"]
    assert options["allowCredentials"] == [] and options["rpId"] == "app.test"
    answer = _finish_sign_in(auth2, device.authenticate(options))
    assert answer["tokens"]["userId"] == user_id


def test_challenges_are_single_use_bound_and_expire(auth2: AuthBackend) -> None:
    device = SoftAuthenticator(ORIGIN)
    _sign_up(auth2, device, "ada")
    start = _start(auth2, "ada")
    response = device.authenticate(start["options"])
    assert _finish_sign_in(auth2, response)["status"] == "complete"
    assert _finish_sign_in(auth2, response) == _error("CHALLENGE_EXPIRED")  # replayed
    # A challenge bound to ada does not sign in bob's passkey.
    bob = SoftAuthenticator(ORIGIN)
    _sign_up(auth2, bob, "bob")
    start = _start(auth2, "ada")
    assert _finish_sign_in(auth2, bob.authenticate(start["options"], passkey=bob.passkeys[0])) == (
        _error("UNKNOWN_CREDENTIAL")
    )
    # Ten minutes.
    start = _start(auth2, "ada")
    auth2.t.clock.advance(10 * 60 * 1000 + 1)
    assert _finish_sign_in(auth2, device.authenticate(start["options"])) == _error(
        "CHALLENGE_EXPIRED"
    )
    # A registration challenge is for its username only.
    start = _start(auth2, "carol")
    response = device.register(start["options"])
    answer = auth2.t.mutation(
        "auth:finishSignUpWithUsernamePasskey", {"username": "mallory", "response": response}
    )
    assert answer == _error("CHALLENGE_EXPIRED")


def test_forged_or_foreign_responses_are_refused(auth2: AuthBackend) -> None:
    device = SoftAuthenticator(ORIGIN)
    _sign_up(auth2, device, "ada")
    # Another origin (a phishing page) gets a protocol error, and spends the challenge.
    start = _start(auth2, "ada")
    phish = SoftAuthenticator("https://app.test.evil.example", device.passkeys)
    assert _finish_sign_in(auth2, phish.authenticate(start["options"])) == _error("PROTOCOL_ERROR")
    # A signature by another key.
    start = _start(auth2, "ada")
    response = device.authenticate(start["options"])
    other = SoftAuthenticator(ORIGIN)
    other.register(_start(auth2, "zed")["options"])  # a key the server never saw
    forged = other.authenticate(start["options"], passkey=other.passkeys[0])
    forged["rawId"] = response["rawId"]
    assert _finish_sign_in(auth2, forged) == _error("PROTOCOL_ERROR")
    # A user who was not verified.
    start = _start(auth2, "ada")
    device.flags = 0x01
    assert _finish_sign_in(auth2, device.authenticate(start["options"])) == _error("PROTOCOL_ERROR")
    device.flags = 0x05
    # A counter that does not grow: a cloned authenticator.
    assert _finish_sign_in(auth2, device.authenticate(_start(auth2, "ada")["options"]))["tokens"]
    start = _start(auth2, "ada")
    device.passkeys[0].sign_count = 0
    assert _finish_sign_in(auth2, device.authenticate(start["options"])) == _error("PROTOCOL_ERROR")
    # Garbage.
    assert _finish_sign_in(auth2, {"response": {"clientDataJSON": "!!"}}) == _error(
        "PROTOCOL_ERROR"
    )
    assert len(auth2.table("authSessions")) == 2  # ada's sign-up and one sign-in


def test_taken_and_invalid_usernames(auth2: AuthBackend) -> None:
    device = SoftAuthenticator(ORIGIN)
    first = _start(auth2, "ada")
    second = _start(auth2, "ada")
    assert _sign_up(auth2, device, "ada")["status"] == "complete"
    # Two browsers raced for the name: the later registration is refused.
    late = auth2.t.mutation(
        "auth:finishSignUpWithUsernamePasskey",
        {"username": "ada", "response": device.register(second["options"])},
    )
    assert late == _error("USERNAME_TAKEN")
    assert first["step"] == "register"
    assert _start(auth2, " ada")["userError"] == {"error": "USERNAME_HAS_SURROUNDING_WHITESPACE"}
    assert len(auth2.table("users")) == 1


def _as(auth: AuthBackend, token: str, function: str, /, **args: Any) -> Any:
    return auth.as_token(token).mutation(f"auth:{function}", args)


def test_add_list_rename_and_remove_passkeys(auth2: AuthBackend) -> None:
    phone = SoftAuthenticator(ORIGIN)
    token = _sign_up(auth2, phone, "ada")["tokens"]["accessToken"]
    assert auth2.t.mutation("auth:startAddPasskey", {})["userError"] == {"error": "NOT_LOGGED_IN"}

    # Adding: confirm with a passkey the user has, then register the new one.
    laptop = SoftAuthenticator(ORIGIN)
    start = _as(auth2, token, "startAddPasskey")
    confirm = phone.authenticate(start["options"])
    verified = _as(auth2, token, "verifyAddPasskey", response=confirm)
    options = verified["options"]
    assert options["user"]["name"] == "ada"
    assert [c["id"] for c in options["excludeCredentials"]] == [
        b64url(phone.passkeys[0].credential_id)
    ]
    added = _as(auth2, token, "finishAddPasskey", response=laptop.register(options))
    assert added["success"] is True
    listed = auth2.as_token(token).query("auth:listPasskeys")["passkeys"]
    assert {p["passkeyId"] for p in listed} == {p["_id"] for p in auth2.table("authPasskeys")}
    assert added["passkeyId"] in {p["passkeyId"] for p in listed}
    # The new passkey signs in.
    start = _start(auth2, "ada")
    signed_in = _finish_sign_in(auth2, laptop.authenticate(start["options"]))
    assert signed_in["status"] == "complete"

    # Renaming.
    assert _as(auth2, token, "renamePasskey", passkeyId=added["passkeyId"], name="Laptop") == {
        "success": True
    }
    bad = _as(auth2, token, "renamePasskey", passkeyId=added["passkeyId"], name=" ")
    assert bad["userError"] == {"error": "INVALID_NAME"}
    [named] = [
        p for p in auth2.as_token(token).query("auth:listPasskeys")["passkeys"] if "name" in p
    ]
    assert named["name"] == "Laptop"

    # Removing the laptop's passkey: confirmed by another one (the phone's).
    start = _as(auth2, token, "startRemovePasskey", passkeyId=added["passkeyId"])
    allowed = [c["id"] for c in start["options"]["allowCredentials"]]
    assert allowed == [b64url(phone.passkeys[0].credential_id)]
    # The passkey that goes cannot confirm its own removal.
    own = laptop.authenticate({**start["options"], "allowCredentials": []})
    assert _as(auth2, token, "finishRemovePasskey", passkeyId=added["passkeyId"], response=own)[
        "userError"
    ] == {"error": "PROTOCOL_ERROR"}
    start = _as(auth2, token, "startRemovePasskey", passkeyId=added["passkeyId"])
    done = _as(
        auth2,
        token,
        "finishRemovePasskey",
        passkeyId=added["passkeyId"],
        response=phone.authenticate(start["options"]),
    )
    assert done == {"success": True}
    [left] = auth2.table("authPasskeys")
    assert left["credentialId"] == b64url(phone.passkeys[0].credential_id)
    # The last passkey stays.
    last = _as(auth2, token, "startRemovePasskey", passkeyId=left["_id"])
    assert last["userError"] == {"error": "LAST_PASSKEY"}


def test_passkeys_of_another_user_cannot_be_managed(auth2: AuthBackend) -> None:
    ada_device, bob_device = SoftAuthenticator(ORIGIN), SoftAuthenticator(ORIGIN)
    ada = _sign_up(auth2, ada_device, "ada")["tokens"]["accessToken"]
    bob = _sign_up(auth2, bob_device, "bob")["tokens"]["accessToken"]
    [bob_key] = [
        p
        for p in auth2.table("authPasskeys")
        if p["credentialId"] == b64url(bob_device.passkeys[0].credential_id)
    ]
    for function, args in (
        ("startRemovePasskey", {"passkeyId": bob_key["_id"]}),
        ("renamePasskey", {"passkeyId": bob_key["_id"], "name": "mine"}),
        ("renamePasskey", {"passkeyId": "not-an-id", "name": "mine"}),
    ):
        assert _as(auth2, ada, function, **args)["userError"] == {"error": "PASSKEY_NOT_FOUND"}
    # Bob's passkey cannot confirm an addition to ada's account.
    start = _as(auth2, ada, "startAddPasskey")
    forged = bob_device.authenticate(start["options"], passkey=bob_device.passkeys[0])
    assert _as(auth2, ada, "verifyAddPasskey", response=forged)["userError"] == {
        "error": "UNKNOWN_CREDENTIAL"
    }
    # A challenge started by bob does not serve ada.
    start = _as(auth2, bob, "startAddPasskey")
    confirm = bob_device.authenticate(start["options"])
    assert _as(auth2, ada, "verifyAddPasskey", response=confirm)["userError"] == {
        "error": "CHALLENGE_EXPIRED"
    }


def test_cbor_decoder_refuses_what_webauthn_does_not_use() -> None:
    assert _cbor(cbor({1: [b"x", "y", -3, True]}))[0] == {1: [b"x", "y", -3, True]}
    for bad in (
        b"\x5f",  # indefinite-length bytes
        b"\x59\xff\xff",  # truncated
        b"\xc1\x00",  # a tag
        b"\xf9\x00\x00",  # a float
        b"\x81" * 20 + b"\x00",  # nested too deep
    ):
        with pytest.raises(WebAuthnError):
            _cbor(bad)
    assert unb64url(b64url(b"\x00\xff")) == b"\x00\xff"
