"""Password hashing with scrypt (``hashlib.scrypt``, OpenSSL's implementation).

Why scrypt from the standard library: it is memory-hard (as argon2id, the
other hash OWASP recommends), needs no new dependency or compiled wheel, and
its parameters are stored with each hash so they can be raised later without
invalidating existing passwords. Format::

    scrypt$<log2 n>$<r>$<p>$<salt, base64>$<hash, base64>

Defaults: n = 2^15, r = 8, p = 1 (32 MiB, about 50-100 ms on one core),
a 16-byte random salt and a 32-byte hash. Hashing runs in a worker thread
(:func:`hash_password_async`) so the event loop keeps serving.

:func:`verify_password` compares in constant time, and :func:`dummy_verify`
spends the same time when there is no account, so the duration of a failed
sign-in does not tell whether the email is registered.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import secrets

__all__ = [
    "MAX_PASSWORD_BYTES",
    "dummy_verify",
    "hash_password",
    "hash_password_async",
    "verify_password",
    "verify_password_async",
]

#: longer passwords are refused (scrypt's cost does not depend on it, but the request size does)
MAX_PASSWORD_BYTES = 1024
_LOG2_N = 15
_R = 8
_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32
_MAXMEM = 256 * 1024 * 1024


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=1 << log2_n, r=r, p=p, maxmem=_MAXMEM, dklen=length
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(password, salt, _LOG2_N, _R, _P, _HASH_BYTES)
    return f"scrypt${_LOG2_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (a :func:`hash_password` result)."""
    try:
        scheme, log2_n, r, p, salt, expected = stored.split("$")
        if scheme != "scrypt" or not 1 <= int(log2_n) <= 20:
            return False
        want = _unb64(expected)
        got = _scrypt(password, _unb64(salt), int(log2_n), int(r), int(p), len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def dummy_verify(password: str) -> bool:
    """As long as :func:`verify_password` takes; always False (no such account)."""
    verify_password(password, _dummy_hash())
    return False


async def hash_password_async(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)


async def verify_password_async(password: str, stored: str | None) -> bool:
    if stored is None:
        return await asyncio.to_thread(dummy_verify, password)
    return await asyncio.to_thread(verify_password, password, stored)
