"""No user enumeration: answers and timings do not tell whether an email has an account."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

import pytest

from syncline.errors import ConvexError

from .conftest import AuthBackend, error_code, from_address


def test_sign_up_with_a_taken_email_names_no_account_and_counts_against_the_address(
    auth: AuthBackend,
) -> None:
    auth.password("signUp", "ada@example.com", "correct horse")
    with from_address("203.0.113.7"), pytest.raises(ConvexError) as excinfo:
        auth.password("signUp", "ada@example.com", "another horse")
    assert error_code(excinfo) == "SignUpRefused"
    message = excinfo.value.data["message"].lower()
    assert "exist" not in message and "taken" not in message
    assert len(auth.table("users")) == 1
    [address] = auth.table("authRateLimits")
    assert address["identifier"] == "address:203.0.113.7"


def test_sign_up_with_verification_answers_a_taken_email_as_a_fresh_one(
    auth: AuthBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="syncline.accounts")
    params = {"flow": "signUp", "password": "correct horse"}
    fresh = auth.sign_in("verified", params={"email": "ada@example.com", **params})
    codes_before = auth.table("authVerificationCodes")
    caplog.clear()
    taken = auth.sign_in("verified", params={"email": "ada@example.com", **params})
    assert fresh == taken == {"started": True}
    # The owner is told by mail (no code in it); no account, user or code was made.
    [line] = [r.getMessage() for r in caplog.records if r.name == "syncline.accounts"]
    assert line.startswith("Mail to ada@example.com: Sign-up attempt")
    assert len(auth.table("users")) == 1
    assert auth.table("authVerificationCodes") == codes_before


def _median_s(call: Callable[[], object], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        with contextlib.suppress(ConvexError):
            call()
        times.append(time.perf_counter() - start)
    return sorted(times)[runs // 2]


def test_unknown_email_takes_as_long_as_a_wrong_password(auth: AuthBackend) -> None:
    """The dummy scrypt: without it an unknown email answers in about a millisecond."""
    auth.password("signUp", "ada@example.com", "correct horse")
    wrong = _median_s(lambda: auth.password("signIn", "ada@example.com", "wrong horse"))
    auth.t.clock.advance(2 * 60 * 60 * 1000)  # refill the rate limit (3 per hour in the app)
    unknown = _median_s(lambda: auth.password("signIn", "nobody@example.com", "wrong horse"))
    # Loose bounds (a loaded machine varies); without the dummy run the ratio is below 0.05.
    assert unknown > 0.25 * wrong, (unknown, wrong)
    assert unknown < 4.0 * wrong, (unknown, wrong)
