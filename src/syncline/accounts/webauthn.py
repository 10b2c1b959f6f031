"""Checking WebAuthn (passkey) ceremonies: registrations and assertions, W3C WebAuthn level 2.

Only what a relying party that asks for no attestation needs
(``attestation: "none"``): the attestation statement is not checked, so a
registration proves that the browser's authenticator holds the new key and
that the user was verified, not which make of authenticator it is. Checked:

* ``clientDataJSON``: the ceremony ``type``, the ``challenge`` (looked up by
  the caller) and the ``origin`` (one of the configured origins);
* ``authenticatorData``: the SHA-256 of the RP ID, the user-present and
  user-verified flags, and (registration) the attested credential, whose id
  must be the response's ``rawId``;
* assertions: the signature over ``authenticatorData || SHA-256(clientDataJSON)``
  with the stored public key (ES256 or RS256), and the signature counter,
  which must grow when the authenticator keeps one (a counter that does not
  is the sign of a cloned authenticator).

The attestation object and COSE keys are CBOR: :func:`_cbor` decodes the
subset WebAuthn uses (integers, byte and text strings, arrays, maps, simple
values; definite lengths only), with bounds on length and depth.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ALGORITHMS",
    "Assertion",
    "ClientData",
    "Registration",
    "WebAuthnError",
    "b64url",
    "client_data",
    "unb64url",
    "verify_assertion",
    "verify_registration",
]

#: COSE algorithms accepted for new passkeys, in order of preference: ES256, RS256
ALGORITHMS = (-7, -257)

_FLAG_UP = 0x01
_FLAG_UV = 0x04
_FLAG_AT = 0x40
_MAX_INPUT = 64 * 1024
_MAX_DEPTH = 8


class WebAuthnError(ValueError):
    """The response is malformed or does not verify (the client is told ``PROTOCOL_ERROR``)."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: Any) -> bytes:
    if not isinstance(text, str) or len(text) > _MAX_INPUT:
        raise WebAuthnError("expected a base64url string")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise WebAuthnError("not base64url") from None


# -- CBOR (RFC 8949), the subset WebAuthn uses -------------------------------


def _cbor(data: bytes, pos: int = 0, depth: int = 0) -> tuple[Any, int]:
    """The item at ``pos`` and the offset after it."""
    if depth > _MAX_DEPTH:
        raise WebAuthnError("CBOR nested too deep")
    if pos >= len(data):
        raise WebAuthnError("CBOR truncated")
    major, info = data[pos] >> 5, data[pos] & 0x1F
    pos += 1
    if info < 24:
        arg = info
    elif info in (24, 25, 26, 27):
        size = 1 << (info - 24)
        if pos + size > len(data):
            raise WebAuthnError("CBOR truncated")
        arg = int.from_bytes(data[pos : pos + size], "big")
        pos += size
    else:
        raise WebAuthnError("CBOR indefinite lengths and reserved values are not accepted")
    if major == 0:
        return arg, pos
    if major == 1:
        return -1 - arg, pos
    if major in (2, 3):
        if pos + arg > len(data):
            raise WebAuthnError("CBOR truncated")
        raw = data[pos : pos + arg]
        pos += arg
        if major == 2:
            return bytes(raw), pos
        try:
            return raw.decode(), pos
        except UnicodeDecodeError:
            raise WebAuthnError("CBOR text is not UTF-8") from None
    if major == 4:
        items = []
        for _ in range(min(arg, len(data))):
            item, pos = _cbor(data, pos, depth + 1)
            items.append(item)
        if len(items) != arg:
            raise WebAuthnError("CBOR truncated")
        return items, pos
    if major == 5:
        mapping: dict[Any, Any] = {}
        for _ in range(min(arg, len(data))):
            key, pos = _cbor(data, pos, depth + 1)
            if not isinstance(key, int | str):
                raise WebAuthnError("CBOR map keys must be integers or text")
            mapping[key], pos = _cbor(data, pos, depth + 1)
        if len(mapping) != arg:
            raise WebAuthnError("CBOR truncated or duplicate map keys")
        return mapping, pos
    if major == 7 and info in (20, 21, 22):
        return {20: False, 21: True, 22: None}[info], pos
    raise WebAuthnError("CBOR tags and floats are not accepted")


# -- COSE keys ---------------------------------------------------------------


def _public_key(cose: dict[Any, Any]) -> tuple[int, Any]:
    """The COSE key's algorithm and its ``cryptography`` public key."""
    # Imported here: a server that verifies no passkey never loads ``cryptography``.
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    alg, kty = cose.get(3), cose.get(1)
    try:
        if alg == -7 and kty == 2 and cose.get(-1) == 1:
            x, y = cose[-2], cose[-3]
            if not (isinstance(x, bytes) and isinstance(y, bytes) and len(x) == len(y) == 32):
                raise WebAuthnError("bad EC2 key coordinates")
            numbers = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
            )
            return alg, numbers.public_key()
        if alg == -257 and kty == 3:
            n, e = cose[-1], cose[-2]
            if not (isinstance(n, bytes) and isinstance(e, bytes) and len(n) >= 256):
                raise WebAuthnError("bad RSA key (2048 bits at least)")
            rsa_numbers = rsa.RSAPublicNumbers(int.from_bytes(e, "big"), int.from_bytes(n, "big"))
            return alg, rsa_numbers.public_key()
    except (KeyError, ValueError) as e:
        raise WebAuthnError(f"bad COSE key: {e}") from None
    raise WebAuthnError(f"unsupported COSE key (alg {alg!r}, kty {kty!r})")


def _verify_signature(cose_key: bytes, signature: bytes, signed: bytes) -> None:
    cose, _ = _cbor(cose_key)
    if not isinstance(cose, dict):
        raise WebAuthnError("bad COSE key")
    alg, key = _public_key(cose)
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding

    try:
        if alg == -7:
            key.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
        else:
            key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        raise WebAuthnError("the signature does not verify") from None


# -- the ceremonies ------------------------------------------------------------


@dataclass(frozen=True)
class ClientData:
    """The parts of ``clientDataJSON`` checked, and its raw bytes (signed over)."""

    type: str
    challenge: str
    origin: str
    raw: bytes


def client_data(encoded: Any) -> ClientData:
    """``response.clientDataJSON`` (base64url) parsed; its challenge is for the caller to look up."""
    raw = unb64url(encoded)
    try:
        data = json.loads(raw)
    except ValueError:
        raise WebAuthnError("clientDataJSON is not JSON") from None
    if not isinstance(data, dict):
        raise WebAuthnError("clientDataJSON is not an object")
    kind, challenge, origin = (data.get(k) for k in ("type", "challenge", "origin"))
    if not (isinstance(kind, str) and isinstance(challenge, str) and isinstance(origin, str)):
        raise WebAuthnError("clientDataJSON lacks type, challenge or origin")
    return ClientData(kind, challenge, origin, raw)


def _check(
    data: ClientData, kind: str, origins: tuple[str, ...], auth_data: bytes, rp_id: str
) -> int:
    """Checks shared by both ceremonies; the authenticator data's flags."""
    if data.type != kind:
        raise WebAuthnError(f"clientDataJSON.type is {data.type!r}, expected {kind!r}")
    if data.origin not in origins:
        raise WebAuthnError(f"origin {data.origin!r} is not one of {', '.join(origins)}")
    if len(auth_data) < 37:
        raise WebAuthnError("authenticatorData is too short")
    if auth_data[:32] != hashlib.sha256(rp_id.encode()).digest():
        raise WebAuthnError("authenticatorData is for another RP ID")
    flags = auth_data[32]
    if not flags & _FLAG_UP or not flags & _FLAG_UV:
        raise WebAuthnError("the user was not present and verified")
    return flags


@dataclass(frozen=True)
class Registration:
    """A verified new passkey."""

    credential_id: bytes
    cose_key: bytes
    algorithm: int
    sign_count: int


def verify_registration(
    response: Any, data: ClientData, *, rp_id: str, origins: tuple[str, ...]
) -> Registration:
    """Check a registration response (``navigator.credentials.create``) whose challenge matched."""
    if not isinstance(response, dict) or not isinstance(response.get("response"), dict):
        raise WebAuthnError("not a registration response")
    attestation, _ = _cbor(unb64url(response["response"].get("attestationObject")))
    if not isinstance(attestation, dict) or not isinstance(attestation.get("authData"), bytes):
        raise WebAuthnError("bad attestationObject")
    auth_data = attestation["authData"]
    flags = _check(data, "webauthn.create", origins, auth_data, rp_id)
    if not flags & _FLAG_AT or len(auth_data) < 55:
        raise WebAuthnError("authenticatorData has no attested credential")
    (sign_count,) = struct.unpack(">I", auth_data[33:37])
    (length,) = struct.unpack(">H", auth_data[53:55])
    credential_id = auth_data[55 : 55 + length]
    if len(credential_id) != length or credential_id != unb64url(response.get("rawId")):
        raise WebAuthnError("the credential id differs from rawId")
    key_start = 55 + length
    cose, key_end = _cbor(auth_data, key_start)
    if not isinstance(cose, dict):
        raise WebAuthnError("bad credential public key")
    algorithm, _ = _public_key(cose)
    return Registration(credential_id, auth_data[key_start:key_end], algorithm, sign_count)


@dataclass(frozen=True)
class Assertion:
    """A verified sign-in: the authenticator's new signature counter."""

    sign_count: int


def verify_assertion(
    response: Any,
    data: ClientData,
    *,
    rp_id: str,
    origins: tuple[str, ...],
    cose_key: bytes,
    stored_sign_count: int,
) -> Assertion:
    """Check an assertion (``navigator.credentials.get``) of a known passkey."""
    if not isinstance(response, dict) or not isinstance(response.get("response"), dict):
        raise WebAuthnError("not an authentication response")
    auth_data = unb64url(response["response"].get("authenticatorData"))
    signature = unb64url(response["response"].get("signature"))
    _check(data, "webauthn.get", origins, auth_data, rp_id)
    _verify_signature(cose_key, signature, auth_data + hashlib.sha256(data.raw).digest())
    (sign_count,) = struct.unpack(">I", auth_data[33:37])
    if (sign_count or stored_sign_count) and sign_count <= stored_sign_count:
        raise WebAuthnError("the signature counter did not grow (a cloned authenticator?)")
    return Assertion(sign_count)
