"""One-time login links: ``http://HOST:PORT/dashboard/#login=<token>``.

``syncline dev`` (and ``serve`` with the dashboard on) prints one at start;
the page trades the token for the admin key (``POST
/api/admin/dashboard/login``), so the user does not copy the key by hand.

A token is signed with a key derived from the admin key and carries its
expiry (:data:`LOGIN_TOKEN_VALIDITY_MS`): any process holding the admin key
(every worker, every node) can check it without shared state. It can be
used once: its use is recorded in the database, in the same store that
remembers used upload URLs (kept for an hour, past any token's expiry), in
the transaction that checks it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import TYPE_CHECKING

from syncline.errors import AuthError

if TYPE_CHECKING:
    from syncline.clock import Clock
    from syncline.database.database import Database
    from syncline.database.transaction import Transaction

__all__ = ["LOGIN_TOKEN_VALIDITY_MS", "InvalidLoginToken", "LoginTokens", "login_url"]

#: how long a login link works, once
LOGIN_TOKEN_VALIDITY_MS = 10 * 60 * 1000

_DOMAIN = b"syncline/dashboard-login/v1\x00"
_NONCE_BYTES = 16
_MAC_BYTES = 32
_TOKEN_BYTES = _NONCE_BYTES + 8 + _MAC_BYTES
#: what the use of a token is recorded as (among used upload tokens' storage ids)
_USED_BY = "dashboard-login"


class InvalidLoginToken(AuthError):
    """A login token that is forged, expired or used already."""

    code = "InvalidLoginToken"
    http_status = 401


def login_url(base_url: str, token: str) -> str:
    """The link that logs the dashboard at ``base_url`` in with ``token``."""
    return f"{base_url.rstrip('/')}/dashboard/#login={token}"


class LoginTokens:
    """Mints and redeems the login tokens of a deployment with ``admin_key``."""

    def __init__(self, admin_key: str, database: Database, clock: Clock) -> None:
        self._admin_key = admin_key
        self._mac_key = hashlib.sha256(_DOMAIN + admin_key.encode()).digest()
        self._database = database
        self._clock = clock

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._mac_key, payload, hashlib.sha256).digest()

    def issue(self) -> str:
        """A new token, valid for :data:`LOGIN_TOKEN_VALIDITY_MS` from now, once."""
        expires = int(self._clock.now_ms()) + LOGIN_TOKEN_VALIDITY_MS
        payload = os.urandom(_NONCE_BYTES) + expires.to_bytes(8, "big")
        return base64.urlsafe_b64encode(payload + self._mac(payload)).decode().rstrip("=")

    def _nonce(self, token: object) -> bytes:
        """The token's nonce if it is genuine and unexpired, else :class:`InvalidLoginToken`."""
        raw = b""
        if isinstance(token, str) and len(token) < 2 * _TOKEN_BYTES:
            try:
                raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            except ValueError:
                raw = b""
        payload, mac = raw[: _NONCE_BYTES + 8], raw[_NONCE_BYTES + 8 :]
        if len(raw) != _TOKEN_BYTES or not hmac.compare_digest(mac, self._mac(payload)):
            raise InvalidLoginToken(
                "This login link is not valid: log in with the admin key instead"
            )
        if int.from_bytes(payload[_NONCE_BYTES:], "big") < self._clock.now_ms():
            raise InvalidLoginToken(
                "This login link has expired (links work for 10 minutes): restart "
                "`syncline dev` for a new one, or log in with the admin key"
            )
        # Apart from upload tokens' nonces, which share the store of used ones.
        return hashlib.sha256(_DOMAIN + payload[:_NONCE_BYTES]).digest()[:_NONCE_BYTES]

    async def redeem(self, token: object) -> str:
        """The admin key, for a genuine, unexpired token used for the first time."""
        nonce = self._nonce(token)

        def use(tx: Transaction) -> None:
            if tx.upload_token_used(nonce):
                raise InvalidLoginToken(
                    "This login link was used already (each link works once): log in with "
                    "the admin key"
                )
            tx.record_upload_token(nonce, _USED_BY)

        await self._database.write(use)
        return self._admin_key
