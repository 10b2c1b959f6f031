"""The 2.x email + password functions: links with a browser secret, recovery, email change."""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from syncline.errors import ConvexError

from .conftest import AuthBackend
from .test_v2 import open_v2_backend

AUTH_V2_EMAIL = """
from syncline.accounts import Password, convex_auth

auth = convex_auth(providers=[Password()], access_token_ttl_s=600, max_failed_attempts=4)
refreshSession, signOut, isAuthenticated = auth.v2.session()
(
    signUpWithEmailPassword,
    completeSignUpWithEmailPassword,
    signInWithEmailPassword,
    changePassword,
    startPasswordRecovery,
    checkPasswordRecovery,
    completePasswordRecovery,
    startChangeEmail,
    completeChangeEmail,
) = auth.v2.email_password()
authMail = auth.v2.mail
"""


@dataclass
class Mail:
    to: str
    text: str  # the logged line: the link, or the subject of a mail without one
    link: str | None


class Mailbox:
    """The mails the app sent (logged, since it has no SMTP_HOST), after its scheduled sends ran."""

    def __init__(self, auth: AuthBackend, caplog: pytest.LogCaptureFixture) -> None:
        self.auth = auth
        self.caplog = caplog

    def all(self) -> list[Mail]:
        self.auth.t.finish_scheduled_functions()
        mails = []
        for record in self.caplog.records:
            if record.name != "syncline.accounts":
                continue
            line = record.getMessage()
            link = re.match(r"Link for (\S+): (\S+) ", line)
            notice = re.match(r"Mail to (\S+): (.*) \(SMTP_HOST", line)
            if link:
                mails.append(Mail(link.group(1), line, link.group(2)))
            elif notice:
                mails.append(Mail(notice.group(1), notice.group(2), None))
        return mails

    def last(self, to: str) -> Mail:
        return [m for m in self.all() if m.to == to][-1]

    def code(self, to: str, path: str) -> str:
        link = self.last(to).link
        assert link is not None, self.last(to)
        parts = urllib.parse.urlsplit(link)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"http://app.test{path}"
        return urllib.parse.parse_qs(parts.query)["code"][0]


@pytest.fixture
def auth2(tmp_path: Path) -> Iterator[AuthBackend]:
    with open_v2_backend(tmp_path, AUTH_V2_EMAIL) as backend:
        yield backend


@pytest.fixture
def mail(auth2: AuthBackend, caplog: pytest.LogCaptureFixture) -> Mailbox:
    caplog.set_level(logging.WARNING, logger="syncline.accounts")
    return Mailbox(auth2, caplog)


def _m(auth: AuthBackend, name: str, token: str | None = None, **args: Any) -> Any:
    backend = auth.t if token is None else auth.as_token(token)
    return backend.mutation(f"auth:{name}", args)


def _signed_up(auth: AuthBackend, mail: Mailbox, email: str, password: str) -> dict[str, Any]:
    secret = _m(auth, "signUpWithEmailPassword", email=email, password=password)["browserSecret"]
    code = mail.code(email, "/validate-email")
    answer = _m(auth, "completeSignUpWithEmailPassword", emailCode=code, browserSecret=secret)
    assert answer["status"] == "complete", answer
    return dict(answer["tokens"])


def _sign_in(auth: AuthBackend, email: str, password: str) -> Any:
    return _m(auth, "signInWithEmailPassword", email=email, password=password)


INVALID_CREDENTIALS = {"status": "error", "userError": {"error": "INVALID_CREDENTIALS"}}


def test_sign_up_is_complete_when_the_link_is_opened_with_the_browser_secret(
    auth2: AuthBackend, mail: Mailbox
) -> None:
    answer = _m(
        auth2, "signUpWithEmailPassword", email=" Ada@Example.com", password="correct horse"
    )
    assert set(answer) == {"success", "browserSecret"} and answer["success"] is True
    secret = answer["browserSecret"]
    assert auth2.table("users") == []  # nothing exists before the link is opened
    assert _sign_in(auth2, "ada@example.com", "correct horse") == INVALID_CREDENTIALS
    code = mail.code("ada@example.com", "/validate-email")
    assert secret not in mail.last("ada@example.com").text

    def complete(code: str, secret: str) -> Any:
        return _m(auth2, "completeSignUpWithEmailPassword", emailCode=code, browserSecret=secret)

    assert complete(code, "another browser")["userError"] == {"error": "INVALID_CHALLENGE"}
    assert complete("an older link", secret)["userError"] == {"error": "INCORRECT_CODE"}
    done = complete(code, secret)
    assert done["status"] == "complete"
    me = auth2.me(done["tokens"]["accessToken"])
    assert me["email"] == "ada@example.com" and me["id"] == done["tokens"]["userId"]
    [user] = auth2.table("users")
    assert user["emailVerificationTime"] == auth2.t.clock.now_ms()
    assert complete(code, secret)["userError"] == {"error": "INVALID_CHALLENGE"}  # spent
    assert auth2.table("authChallenges") == []
    signed_in = _sign_in(auth2, "ADA@example.com", "correct horse")
    assert signed_in["tokens"]["userId"] == me["id"]
    assert _sign_in(auth2, "ada@example.com", "wrong horse") == INVALID_CREDENTIALS


def test_sign_up_input_errors_and_expiry(auth2: AuthBackend, mail: Mailbox) -> None:
    def up(email: str, password: str) -> Any:
        return _m(auth2, "signUpWithEmailPassword", email=email, password=password)

    assert up("not-an-email", "correct horse")["userError"] == {"error": "INVALID_EMAIL"}
    assert up("a@b.c", "short")["userError"] == {"error": "PASSWORD_TOO_SHORT", "minimumLength": 8}
    assert up("a@b.c", " correct horse")["userError"] == {
        "error": "PASSWORD_HAS_SURROUNDING_WHITESPACE"
    }
    secret = up("a@b.c", "correct horse")["browserSecret"]
    code = mail.code("a@b.c", "/validate-email")
    auth2.t.clock.advance(60 * 60 * 1000 + 1)
    late = _m(auth2, "completeSignUpWithEmailPassword", emailCode=code, browserSecret=secret)
    assert late["userError"] == {"error": "INVALID_CHALLENGE"}


def test_no_answer_tells_whether_an_email_has_an_account(auth2: AuthBackend, mail: Mailbox) -> None:
    _signed_up(auth2, mail, "ada@example.com", "correct horse")
    taken = _m(auth2, "signUpWithEmailPassword", email="ada@example.com", password="other horse")
    free = _m(auth2, "signUpWithEmailPassword", email="bob@example.com", password="other horse")
    assert set(taken) == set(free) == {"success", "browserSecret"}
    # The owner is told, with no link; the pending sign-up can never complete.
    assert mail.last("ada@example.com") == Mail("ada@example.com", "Sign-up attempt", None)
    assert _sign_in(auth2, "ada@example.com", "other horse") == INVALID_CREDENTIALS

    known = _m(auth2, "startPasswordRecovery", email="Ada@example.com")
    unknown = _m(auth2, "startPasswordRecovery", email="carol@example.com")
    assert set(known) == set(unknown) == {"success", "browserSecret", "sentTo"}
    assert (known["sentTo"], unknown["sentTo"]) == ("ada@example.com", "carol@example.com")
    assert mail.last("carol@example.com").text == "Password reset requested"
    check = auth2.t.query(
        "auth:checkPasswordRecovery",
        {"emailCode": "x" * 32, "browserSecret": unknown["browserSecret"]},
    )
    assert check == {"success": False, "userError": {"error": "INCORRECT_CODE"}}
    # Unknown emails and wrong passwords fail alike.
    assert _sign_in(auth2, "carol@example.com", "other horse") == INVALID_CREDENTIALS


def test_password_recovery(auth2: AuthBackend, mail: Mailbox) -> None:
    first = _signed_up(auth2, mail, "ada@example.com", "correct horse")
    secret = _m(auth2, "startPasswordRecovery", email="ada@example.com")["browserSecret"]
    code = mail.code("ada@example.com", "/reset-password")
    link = {"emailCode": code, "browserSecret": secret}
    assert auth2.t.query("auth:checkPasswordRecovery", link) == {"success": True}
    wrong = {"emailCode": code, "browserSecret": "x"}
    assert auth2.t.query("auth:checkPasswordRecovery", wrong)["userError"] == {
        "error": "INVALID_CHALLENGE"
    }
    short = _m(auth2, "completePasswordRecovery", **link, newPassword="short")
    assert short["userError"]["error"] == "PASSWORD_TOO_SHORT"
    assert auth2.t.query("auth:checkPasswordRecovery", link) == {"success": True}  # still usable
    done = _m(auth2, "completePasswordRecovery", **link, newPassword="new battery")
    assert done["status"] == "complete"
    # The sessions from before are over; the new password works, the old one does not.
    assert auth2.me(first["accessToken"]) is None
    assert auth2.me(done["tokens"]["accessToken"])["email"] == "ada@example.com"
    assert _sign_in(auth2, "ada@example.com", "correct horse") == INVALID_CREDENTIALS
    assert _sign_in(auth2, "ada@example.com", "new battery")["status"] == "complete"
    assert mail.last("ada@example.com").text == "Your password was reset"
    replay = _m(auth2, "completePasswordRecovery", **link, newPassword="third battery")
    assert replay["userError"] == {"error": "INVALID_CHALLENGE"}
    # Recovery links last ten minutes.
    secret = _m(auth2, "startPasswordRecovery", email="ada@example.com")["browserSecret"]
    code = mail.code("ada@example.com", "/reset-password")
    auth2.t.clock.advance(10 * 60 * 1000 + 1)
    late = {"emailCode": code, "browserSecret": secret}
    assert auth2.t.query("auth:checkPasswordRecovery", late)["userError"] == {
        "error": "INVALID_CHALLENGE"
    }


def test_change_password(auth2: AuthBackend, mail: Mailbox) -> None:
    tokens = _signed_up(auth2, mail, "ada@example.com", "correct horse")
    other = _sign_in(auth2, "ada@example.com", "correct horse")["tokens"]
    change = {"currentPassword": "correct horse", "newPassword": "new battery"}
    assert _m(auth2, "changePassword", **change)["userError"] == {"error": "NOT_LOGGED_IN"}
    wrong = {**change, "currentPassword": "wrong horse"}
    token = tokens["accessToken"]
    assert _m(auth2, "changePassword", token, **wrong)["userError"] == {
        "error": "INVALID_CREDENTIALS"
    }
    done = _m(auth2, "changePassword", token, **change, signOutOtherSessions=True)
    assert done == {"success": True}
    assert auth2.me(token)["email"] == "ada@example.com"  # this session lives on
    assert auth2.me(other["accessToken"]) is None  # the others are over
    assert _sign_in(auth2, "ada@example.com", "new battery")["status"] == "complete"
    assert mail.last("ada@example.com").text == "Your password was changed"


def test_change_email(auth2: AuthBackend, mail: Mailbox) -> None:
    token = _signed_up(auth2, mail, "ada@example.com", "correct horse")["accessToken"]
    bob = _signed_up(auth2, mail, "bob@example.com", "bob's horse")["accessToken"]
    start = {"newEmail": "Ada@New.example", "currentPassword": "correct horse"}
    assert _m(auth2, "startChangeEmail", **start)["userError"] == {"error": "NOT_LOGGED_IN"}
    wrong = {**start, "currentPassword": "wrong horse"}
    assert _m(auth2, "startChangeEmail", token, **wrong)["userError"] == {
        "error": "INVALID_CREDENTIALS"
    }
    secret = _m(auth2, "startChangeEmail", token, **start)["browserSecret"]
    link = {
        "emailCode": mail.code("ada@new.example", "/confirm-email-change"),
        "browserSecret": secret,
    }
    assert _m(auth2, "completeChangeEmail", bob, **link)["userError"] == {"error": "WRONG_USER"}
    assert _m(auth2, "completeChangeEmail", token, **link) == {"success": True}
    assert auth2.me(token)["email"] == "ada@new.example"
    assert _sign_in(auth2, "ada@new.example", "correct horse")["status"] == "complete"
    assert _sign_in(auth2, "ada@example.com", "correct horse") == INVALID_CREDENTIALS
    assert mail.last("ada@example.com").text == "Your email address was changed"
    # A taken address: the start answers alike, its owner gets a notice, completing is refused.
    taken = {"newEmail": "bob@example.com", "currentPassword": "correct horse"}
    assert _m(auth2, "startChangeEmail", token, **taken)["success"] is True
    assert mail.last("bob@example.com").text == "Email change attempt"


def test_mails_are_rate_limited_per_address(auth2: AuthBackend, mail: Mailbox) -> None:
    for _ in range(4):  # max_failed_attempts=4
        assert _m(auth2, "startPasswordRecovery", email="ada@example.com")["success"] is True
    limited = _m(auth2, "startPasswordRecovery", email="ada@example.com")["userError"]
    assert limited["error"] == "RATE_LIMITED" and limited["retryAfterMs"] > 0
    assert len([m for m in mail.all() if m.to == "ada@example.com"]) == 4
    assert _m(auth2, "startPasswordRecovery", email="bob@example.com")["success"] is True


def test_sign_in_failures_are_rate_limited(auth2: AuthBackend, mail: Mailbox) -> None:
    _signed_up(auth2, mail, "ada@example.com", "correct horse")
    for _ in range(4):
        assert _sign_in(auth2, "ada@example.com", "wrong horse") == INVALID_CREDENTIALS
    blocked = _sign_in(auth2, "ada@example.com", "correct horse")["userError"]
    assert blocked["error"] == "RATE_LIMITED"


def test_the_mail_action_must_be_bound(tmp_path: Path) -> None:
    source = AUTH_V2_EMAIL.replace("authMail = auth.v2.mail\n", "")
    with open_v2_backend(tmp_path, source) as backend, pytest.raises(ConvexError) as excinfo:
        _m(backend, "signUpWithEmailPassword", email="a@b.c", password="correct horse")
    assert "authMail = auth.v2.mail" in str(excinfo.value.data)
