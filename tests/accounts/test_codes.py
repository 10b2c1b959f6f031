"""Codes by email: magic links, one-time codes, email verification and password reset."""

from __future__ import annotations

import logging
import re
import urllib.parse

import pytest

from syncline.accounts import codes
from syncline.accounts.mail import Message
from syncline.errors import ConvexError

from .conftest import AuthBackend, error_code


@pytest.fixture(autouse=True)
def _log_codes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="syncline.accounts")


def _last_code(caplog: pytest.LogCaptureFixture) -> str:
    """The code of the last sign-in email (logged, since the test app has no SMTP_HOST)."""
    lines = [r.getMessage() for r in caplog.records if r.name == "syncline.accounts"]
    found = re.match(r"Sign-in code for \S+: (\S+) ", lines[-1])
    assert found, lines
    return found.group(1)


def test_magic_link_code_signs_in_once(auth: AuthBackend, caplog: pytest.LogCaptureFixture) -> None:
    assert auth.sign_in("email", params={"email": "ada@example.com"}) == {"started": True}
    code = _last_code(caplog)
    assert len(code) == 32
    # The client finds ?code= after the redirect and calls signIn without a provider.
    tokens = auth.sign_in(params={"code": code})["tokens"]
    assert auth.me(tokens["token"])["email"] == "ada@example.com"
    [user] = auth.table("users")
    assert user["emailVerificationTime"] == auth.t.clock.now_ms()
    assert auth.sign_in(params={"code": code}) == {"tokens": None}
    assert len(auth.table("authSessions")) == 1


def test_magic_link_code_expires(auth: AuthBackend, caplog: pytest.LogCaptureFixture) -> None:
    auth.sign_in("email", params={"email": "ada@example.com"})
    code = _last_code(caplog)
    auth.t.clock.advance(15 * 60 * 1000 + 1)
    assert auth.sign_in(params={"code": code}) == {"tokens": None}
    assert auth.table("authVerificationCodes") == []


def test_a_new_code_replaces_the_previous_one(
    auth: AuthBackend, caplog: pytest.LogCaptureFixture
) -> None:
    auth.sign_in("email", params={"email": "ada@example.com"})
    first = _last_code(caplog)
    auth.sign_in("email", params={"email": "ada@example.com"})
    second = _last_code(caplog)
    assert auth.sign_in(params={"code": first}) == {"tokens": None}
    assert auth.sign_in(params={"code": second})["tokens"] is not None


def test_redirect_to_outside_site_url_is_refused(auth: AuthBackend) -> None:
    with pytest.raises(ConvexError) as excinfo:
        auth.sign_in("email", params={"email": "a@b.co", "redirectTo": "https://evil.test/x"})
    assert error_code(excinfo) == "InvalidRedirect"
    assert auth.table("authVerificationCodes") == []


def test_one_time_code_needs_its_email_and_is_rate_limited(
    auth: AuthBackend, caplog: pytest.LogCaptureFixture
) -> None:
    auth.sign_in("otp", params={"email": "ada@example.com"})
    code = _last_code(caplog)
    assert re.fullmatch(r"\d{8}", code)
    # Without a provider, short codes are never accepted (they could be guessed).
    assert auth.sign_in(params={"code": code}) == {"tokens": None}
    wrong = "0" * 8 if code != "0" * 8 else "1" * 8
    for _ in range(3):
        with pytest.raises(ConvexError) as excinfo:
            auth.sign_in("otp", params={"email": "ada@example.com", "code": wrong})
        assert error_code(excinfo) == "InvalidCode"
    auth.sign_in("otp", params={"email": "ada@example.com"})
    with pytest.raises(ConvexError) as blocked:
        auth.sign_in("otp", params={"email": "ada@example.com", "code": _last_code(caplog)})
    assert error_code(blocked) == "InvalidCode"
    assert auth.table("authSessions") == []


def test_one_time_code_signs_in(auth: AuthBackend, caplog: pytest.LogCaptureFixture) -> None:
    auth.sign_in("otp", params={"email": "ada@example.com"})
    tokens = auth.sign_in("otp", params={"email": "ada@example.com", "code": _last_code(caplog)})
    assert auth.me(tokens["tokens"]["token"])["email"] == "ada@example.com"


def test_password_with_verification_needs_the_mailed_code(
    auth: AuthBackend, caplog: pytest.LogCaptureFixture
) -> None:
    params = {"email": "ada@example.com", "password": "correct horse"}
    assert auth.sign_in("verified", params={"flow": "signUp", **params}) == {"started": True}
    assert auth.table("authSessions") == []
    # Signing in before verifying mails a new code instead of a session.
    assert auth.sign_in("verified", params={"flow": "signIn", **params}) == {"started": True}
    code = _last_code(caplog)
    verify = {"flow": "email-verification", "email": "ada@example.com", "code": code}
    tokens = auth.sign_in("verified", params=verify)["tokens"]
    assert tokens is not None
    with pytest.raises(ConvexError):
        auth.sign_in("verified", params=verify)  # single use
    assert auth.sign_in("verified", params={"flow": "signIn", **params})["tokens"] is not None


def test_password_reset_by_code(auth: AuthBackend, caplog: pytest.LogCaptureFixture) -> None:
    auth.password("signUp", "ada@example.com", "correct horse")
    assert auth.sign_in("password", params={"flow": "reset", "email": "ada@example.com"}) == {
        "started": True
    }
    code = _last_code(caplog)
    # An unknown email gets the same answer, and no mail.
    caplog.clear()
    assert auth.sign_in("password", params={"flow": "reset", "email": "bob@example.com"}) == {
        "started": True
    }
    assert not caplog.records
    reset = {
        "flow": "reset-verification",
        "email": "ada@example.com",
        "code": code,
        "newPassword": "battery staple",
    }
    assert auth.sign_in("password", params=reset)["tokens"] is not None
    with pytest.raises(ConvexError):
        auth.password("signIn", "ada@example.com", "correct horse")
    assert auth.password("signIn", "ada@example.com", "battery staple")["tokens"] is not None


def test_magic_link_points_at_site_url(auth: AuthBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[Message] = []

    async def capture(env: object, message: Message) -> None:
        sent.append(message)

    monkeypatch.setattr(codes, "send_message", capture)
    auth.sign_in("email", params={"email": "ada@example.com", "redirectTo": "/inbox?x=1"})
    [message] = sent
    assert message.to == "ada@example.com"
    link = re.search(r"http://\S+", message.text)
    assert link
    url = urllib.parse.urlsplit(link.group(0))
    assert (url.scheme, url.netloc, url.path) == ("http", "app.test", "/inbox")
    query = urllib.parse.parse_qs(url.query)
    assert query["x"] == ["1"] and query["code"] == [message.code]
