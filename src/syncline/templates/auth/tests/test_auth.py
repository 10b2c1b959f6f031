"""Sign-up and sign-in through auth:signIn, as the web app calls it. Run with `pytest`."""

from pathlib import Path

import jwt
import pytest

from syncline import ConvexError
from syncline.testing import TestBackend

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"


@pytest.fixture
def backend():
    with TestBackend(FUNCTIONS) as t:
        yield t


def password(backend, flow, email, secret, **extra):
    params = {"flow": flow, "email": email, "password": secret, **extra}
    return backend.action("auth:signIn", {"provider": "password", "params": params})


def signed_in(backend, token):
    """A view of the backend whose calls carry the identity of an access token."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return backend.with_identity({"issuer": claims["iss"], "subject": claims["sub"]})


def test_sign_up_then_write_a_note(backend):
    tokens = password(backend, "signUp", "ada@example.com", "correct horse", name="Ada")["tokens"]
    ada = signed_in(backend, tokens["token"])
    assert ada.query("users:me")["name"] == "Ada"
    ada.mutation("notes:add", {"text": "hello"})
    assert [n["text"] for n in ada.query("notes:mine")] == ["hello"]


def test_wrong_password_is_refused(backend):
    password(backend, "signUp", "ada@example.com", "correct horse")
    with pytest.raises(ConvexError) as error:
        password(backend, "signIn", "ada@example.com", "wrong horse")
    assert error.value.data["code"] == "InvalidCredentials"


def test_anonymous_callers_have_no_notes(backend):
    assert backend.query("notes:mine") == []
    with pytest.raises(ConvexError):
        backend.mutation("notes:add", {"text": "hello"})
