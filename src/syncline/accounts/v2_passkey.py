"""The username + passkey functions ``@convex-dev/auth`` 2.x calls (``methods/username-passkey``).

In ``functions/auth.py``::

    (
        startSignInWithUsernamePasskey,
        startAutofillSignInWithUsernamePasskey,
        finishSignUpWithUsernamePasskey,
        finishSignInWithUsernamePasskey,
    ) = auth.v2.username_passkey()

``useSignInWithUsernamePasskey(api.auth)`` asks for a username and calls
``startSignInWithUsernamePasskey``: a free username gets the options of a
new passkey (``step: "register"``, then ``finishSignUpWithUsernamePasskey``
creates the user, its account and passkey, and a session), a taken one a
challenge for one of its passkeys (``step: "authenticate"``, then
``finishSignInWithUsernamePasskey``). Passkey autofill asks
``startAutofillSignInWithUsernamePasskey`` for a challenge bound to no user:
the passkey the user picks names the account.

Challenges are 32 random bytes kept as SHA-256 digests for ten minutes and
spent by their first use, right or wrong. The ceremonies are checked by
:mod:`syncline.accounts.webauthn`. The relying party is the app's site: by
default the RP ID is ``SITE_URL``'s host name and the accepted origin its
scheme, host and port.

The method is identifier-first: which step answers tells whether a username
has an account (as the username + password sign-up's ``USERNAME_TAKEN``
does); a passkey cannot be guessed, so that says nothing an attacker can use
to sign in.
"""

from __future__ import annotations

import hashlib
import secrets
import urllib.parse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from syncline.accounts.errors import auth_error
from syncline.accounts.tables import ACCOUNTS, PASSKEY_CHALLENGES, PASSKEYS
from syncline.accounts.user_errors import invalid_username
from syncline.accounts.webauthn import (
    ALGORITHMS,
    Registration,
    WebAuthnError,
    b64url,
    client_data,
    unb64url,
    verify_assertion,
    verify_registration,
)
from syncline.errors import FunctionDefinitionError
from syncline.functions.registration import FunctionKind, RegisteredFunction
from syncline.values.validators import v

if TYPE_CHECKING:
    from syncline.accounts.v2 import ConvexAuthV2

__all__ = ["CHALLENGE_LIFETIME_S", "PasskeyMethod", "passkey_functions", "passkey_method"]

#: the 2.x client refreshes autofill challenges two minutes before this
CHALLENGE_LIFETIME_S = 10 * 60
#: how long the browser's dialog may wait for the user, in the options
_CEREMONY_TIMEOUT_MS = 5 * 60 * 1000
#: expired challenges removed by each new one (they are also spent on use)
_SWEEP = 8

_REGISTER, _AUTHENTICATE = "register", "authenticate"


def _error(error: str) -> dict[str, Any]:
    return {"status": "error", "userError": {"error": error}}


class PasskeyMethod:
    """The passkey ceremonies of one username + passkey method (provider ``id``)."""

    def __init__(
        self,
        v2: ConvexAuthV2,
        id: str,
        rp_id: str | None,
        origins: tuple[str, ...],
        rp_name: str | None,
    ) -> None:
        self.v2 = v2
        self.id = id
        self._rp_id = rp_id
        self._origins = origins
        self._rp_name = rp_name

    # -- the relying party -------------------------------------------------------

    def _site(self, ctx: Any) -> urllib.parse.SplitResult:
        site = ctx.env.get("SITE_URL") or ""
        parts = urllib.parse.urlsplit(site)
        if not parts.scheme or not parts.hostname:
            raise auth_error(
                "SiteUrlNotSet",
                "Set the SITE_URL environment variable to the app's URL: passkeys belong to "
                "its host name (or give username_passkey(rp_id=..., origins=[...]))",
            )
        return parts

    def rp_id(self, ctx: Any) -> str:
        return self._rp_id or str(self._site(ctx).hostname)

    def origins(self, ctx: Any) -> tuple[str, ...]:
        if self._origins:
            return self._origins
        parts = self._site(ctx)
        return (f"{parts.scheme}://{parts.netloc}",)

    # -- challenges ------------------------------------------------------------------

    def challenge(
        self, ctx: Any, purpose: str, *, username: str | None = None, user_id: str | None = None
    ) -> str:
        now = float(ctx.now)
        for old in (
            ctx.db.query(PASSKEY_CHALLENGES)
            .with_index("expirationTime", lambda q: q.lt("expirationTime", now))
            .take(_SWEEP)
        ):
            ctx.db.delete(old["_id"])
        challenge = b64url(secrets.token_bytes(32))
        doc: dict[str, Any] = {
            "challengeHash": hashlib.sha256(challenge.encode()).hexdigest(),
            "purpose": purpose,
            "expirationTime": now + CHALLENGE_LIFETIME_S * 1000,
        }
        if username is not None:
            doc["username"] = username
        if user_id is not None:
            doc["userId"] = user_id
        ctx.db.insert(PASSKEY_CHALLENGES, doc)
        return challenge

    def _take_challenge(self, ctx: Any, challenge: str, purpose: str) -> dict[str, Any] | None:
        """The live challenge (spent now), or None: unknown, spent, expired or of another step."""
        digest = hashlib.sha256(challenge.encode()).hexdigest()
        doc = (
            ctx.db.query(PASSKEY_CHALLENGES)
            .with_index("challengeHash", lambda q: q.eq("challengeHash", digest))
            .first()
        )
        if doc is None:
            return None
        ctx.db.delete(doc["_id"])
        if doc["purpose"] != purpose or doc["expirationTime"] <= float(ctx.now):
            return None
        return dict(doc)

    def request_options(self, ctx: Any, challenge: str, passkeys: list[Any]) -> dict[str, Any]:
        return {
            "challenge": challenge,
            "timeout": _CEREMONY_TIMEOUT_MS,
            "rpId": self.rp_id(ctx),
            "allowCredentials": self._descriptors(passkeys),
            "userVerification": "required",
        }

    @staticmethod
    def _descriptors(passkeys: list[Any]) -> list[dict[str, Any]]:
        return [
            {
                "id": p["credentialId"],
                "type": "public-key",
                **({"transports": p["transports"]} if p.get("transports") else {}),
            }
            for p in passkeys
        ]

    # -- the functions ---------------------------------------------------------------

    def start_sign_in(self, ctx: Any, username: str) -> dict[str, Any]:
        problem = invalid_username(username)
        if problem is not None:
            return {"success": False, "userError": problem}
        account = self.v2.store(ctx).account(self.id, username)
        if account is not None:
            challenge = self.challenge(ctx, _AUTHENTICATE, user_id=account["userId"])
            passkeys = self.user_passkeys(ctx, account["userId"])
            return {
                "success": True,
                "step": _AUTHENTICATE,
                "options": self.request_options(ctx, challenge, passkeys),
            }
        challenge = self.challenge(ctx, _REGISTER, username=username)
        return {
            "success": True,
            "step": _REGISTER,
            "options": self.creation_options(ctx, challenge, username, []),
        }

    def start_autofill(self, ctx: Any) -> dict[str, Any]:
        return {"options": self.request_options(ctx, self.challenge(ctx, _AUTHENTICATE), [])}

    def finish_sign_up(self, ctx: Any, username: str, response: Any) -> dict[str, Any]:
        new = self.add_passkey(ctx, response, _REGISTER, username=username)
        if isinstance(new, str):
            return _error(new)
        store = self.v2.store(ctx)
        if store.account(self.id, username) is not None:
            return _error("USERNAME_TAKEN")
        account = store.create_account(self.id, username, {"name": username})
        self.store_passkey(ctx, account["userId"], new, response)
        session = store.create_session(account["userId"])
        return {"status": "complete", "tokens": self.v2.bundle(ctx, session)}

    def user_passkeys(self, ctx: Any, user_id: str) -> list[dict[str, Any]]:
        return list(
            ctx.db.query(PASSKEYS).with_index("userId", lambda q: q.eq("userId", user_id)).collect()
        )

    def check_assertion(
        self, ctx: Any, response: Any, purpose: str, *, user_id: str | None = None
    ) -> dict[str, Any] | str:
        """The passkey that signed a live challenge of ``purpose`` (its counter updated),
        or the client's error: ``CHALLENGE_EXPIRED``, ``UNKNOWN_CREDENTIAL``, ``PROTOCOL_ERROR``.

        A challenge bound to a user accepts only that user's passkeys; ``user_id``
        (the caller) must be the one it is bound to.
        """
        try:
            data = client_data(response.get("response", {}).get("clientDataJSON"))
            credential_id = b64url(unb64url(response.get("rawId")))
        except (WebAuthnError, AttributeError):
            return "PROTOCOL_ERROR"
        challenge = self._take_challenge(ctx, data.challenge, purpose)
        if challenge is None or (user_id is not None and challenge.get("userId") != user_id):
            return "CHALLENGE_EXPIRED"
        passkey = (
            ctx.db.query(PASSKEYS)
            .with_index("credentialId", lambda q: q.eq("credentialId", credential_id))
            .first()
        )
        bound = challenge.get("userId")
        if passkey is None or (bound is not None and passkey["userId"] != bound):
            return "UNKNOWN_CREDENTIAL"
        try:
            checked = verify_assertion(
                response,
                data,
                rp_id=self.rp_id(ctx),
                origins=self.origins(ctx),
                cose_key=unb64url(passkey["publicKey"]),
                stored_sign_count=int(passkey["signCount"]),
            )
        except WebAuthnError:
            return "PROTOCOL_ERROR"
        ctx.db.patch(
            passkey["_id"], {"signCount": checked.sign_count, "lastUsedTime": float(ctx.now)}
        )
        return dict(passkey)

    def add_passkey(
        self,
        ctx: Any,
        response: Any,
        purpose: str,
        *,
        username: str | None = None,
        user_id: str | None = None,
    ) -> Registration | str:
        """Check a registration for a live challenge of ``purpose`` bound to ``username``
        or ``user_id``: the new passkey, not stored yet, or the client's error."""
        try:
            data = client_data(response.get("response", {}).get("clientDataJSON"))
        except (WebAuthnError, AttributeError):
            return "PROTOCOL_ERROR"
        challenge = self._take_challenge(ctx, data.challenge, purpose)
        if (
            challenge is None
            or challenge.get("username") != username
            or challenge.get("userId") != user_id
        ):
            return "CHALLENGE_EXPIRED"
        try:
            new = verify_registration(
                response, data, rp_id=self.rp_id(ctx), origins=self.origins(ctx)
            )
        except WebAuthnError:
            return "PROTOCOL_ERROR"
        credential_id = b64url(new.credential_id)
        taken = (
            ctx.db.query(PASSKEYS)
            .with_index("credentialId", lambda q: q.eq("credentialId", credential_id))
            .first()
        )
        return "PROTOCOL_ERROR" if taken is not None else new

    def store_passkey(self, ctx: Any, user_id: str, new: Registration, response: Any) -> str:
        doc: dict[str, Any] = {
            "userId": user_id,
            "credentialId": b64url(new.credential_id),
            "publicKey": b64url(new.cose_key),
            "algorithm": new.algorithm,
            "signCount": new.sign_count,
            "lastUsedTime": float(ctx.now),
        }
        transports = response["response"].get("transports")
        if isinstance(transports, list) and all(isinstance(t, str) for t in transports):
            doc["transports"] = transports[:8]
        return str(ctx.db.insert(PASSKEYS, doc))

    def creation_options(
        self, ctx: Any, challenge: str, username: str, exclude: list[dict[str, Any]]
    ) -> dict[str, Any]:
        rp_id = self.rp_id(ctx)
        return {
            "rp": {"id": rp_id, "name": self._rp_name or rp_id},
            "user": {
                "id": b64url(secrets.token_bytes(32)),
                "name": username,
                "displayName": username,
            },
            "challenge": challenge,
            "pubKeyCredParams": [{"alg": alg, "type": "public-key"} for alg in ALGORITHMS],
            "timeout": _CEREMONY_TIMEOUT_MS,
            "excludeCredentials": self._descriptors(exclude),
            "authenticatorSelection": {
                "residentKey": "required",
                "requireResidentKey": True,
                "userVerification": "required",
            },
            "attestation": "none",
            "extensions": {},
        }

    def finish_sign_in(self, ctx: Any, response: Any) -> dict[str, Any]:
        passkey = self.check_assertion(ctx, response, _AUTHENTICATE)
        if isinstance(passkey, str):
            return _error(passkey)
        store = self.v2.store(ctx)
        user_id = passkey["userId"]
        account = (
            ctx.db.query(ACCOUNTS)
            .with_index(
                "userIdAndProvider", lambda q: q.eq("userId", user_id).eq("provider", self.id)
            )
            .first()
        )
        return {
            "status": "complete",
            "tokens": self.v2.bundle(ctx, store.create_session(user_id)),
            "username": None if account is None else account["providerAccountId"],
        }


def passkey_method(
    v2: ConvexAuthV2,
    *,
    id: str,
    rp_id: str | None,
    origins: Sequence[str] | None,
    rp_name: str | None,
) -> PasskeyMethod:
    if origins is not None and (
        isinstance(origins, str) or not all(isinstance(o, str) and "://" in o for o in origins)
    ):
        raise FunctionDefinitionError(
            f"username_passkey(origins=...) must be a list of origins such as "
            f"['https://app.example.com'], got {origins!r}"
        )
    return PasskeyMethod(v2, id, rp_id, tuple(origins or ()), rp_name)


def passkey_functions(v2: ConvexAuthV2, method: PasskeyMethod) -> tuple[RegisteredFunction, ...]:
    """The four functions, in the order of the module docstring."""
    any_response = v.any()
    return (
        v2.function(method.start_sign_in, FunctionKind.MUTATION, {"username": v.string()}),
        v2.function(method.start_autofill, FunctionKind.MUTATION, {}),
        v2.function(
            method.finish_sign_up,
            FunctionKind.MUTATION,
            {"username": v.string(), "response": any_response},
        ),
        v2.function(method.finish_sign_in, FunctionKind.MUTATION, {"response": any_response}),
    )
