"""A software passkey authenticator for tests: the responses a browser would return.

It makes ES256 passkeys, answers registration options with a ``none``
attestation and request options with signed assertions, and counts its
signatures. CBOR is written by a small encoder (the subset WebAuthn uses).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def cbor(value: Any) -> bytes:
    def head(major: int, n: int) -> bytes:
        if n < 24:
            return bytes([major << 5 | n])
        for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
            if n < 1 << (8 * size):
                return bytes([major << 5 | info]) + n.to_bytes(size, "big")
        raise ValueError(n)

    if isinstance(value, bool):
        return bytes([0xF5 if value else 0xF4])
    if isinstance(value, int):
        return head(0, value) if value >= 0 else head(1, -1 - value)
    if isinstance(value, bytes):
        return head(2, len(value)) + value
    if isinstance(value, str):
        raw = value.encode()
        return head(3, len(raw)) + raw
    if isinstance(value, list):
        return head(4, len(value)) + b"".join(cbor(v) for v in value)
    if isinstance(value, dict):
        return head(5, len(value)) + b"".join(cbor(k) + cbor(v) for k, v in value.items())
    raise TypeError(type(value))


@dataclass
class Passkey:
    credential_id: bytes
    key: ec.EllipticCurvePrivateKey
    user_handle: str
    sign_count: int = 0

    def cose(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor(
            {
                1: 2,
                3: -7,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )


@dataclass
class SoftAuthenticator:
    origin: str
    passkeys: list[Passkey] = field(default_factory=list)
    #: flags of the authenticator data: user present (0x01) and verified (0x04)
    flags: int = 0x05

    def _client_data(self, kind: str, challenge: str, origin: str | None = None) -> bytes:
        data = {"type": kind, "challenge": challenge, "origin": origin or self.origin}
        return json.dumps(data).encode()

    def register(self, options: dict[str, Any], *, origin: str | None = None) -> dict[str, Any]:
        """``navigator.credentials.create()``'s answer, pruned as the 2.x client sends it."""
        passkey = Passkey(
            secrets.token_bytes(16), ec.generate_private_key(ec.SECP256R1()), options["user"]["id"]
        )
        self.passkeys.append(passkey)
        rp_hash = hashlib.sha256(options["rp"]["id"].encode()).digest()
        auth_data = (
            rp_hash
            + bytes([self.flags | 0x40])
            + struct.pack(">I", 0)
            + bytes(16)
            + struct.pack(">H", len(passkey.credential_id))
            + passkey.credential_id
            + passkey.cose()
        )
        attestation = cbor({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64url(passkey.credential_id),
            "rawId": b64url(passkey.credential_id),
            "response": {
                "clientDataJSON": b64url(
                    self._client_data("webauthn.create", options["challenge"], origin)
                ),
                "attestationObject": b64url(attestation),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
            "type": "public-key",
        }

    def authenticate(
        self, options: dict[str, Any], *, passkey: Passkey | None = None
    ) -> dict[str, Any]:
        """``navigator.credentials.get()``'s answer with ``passkey`` (default: the first allowed)."""
        if passkey is None:
            allowed = {c["id"] for c in options["allowCredentials"]}
            passkey = next(
                p for p in self.passkeys if not allowed or b64url(p.credential_id) in allowed
            )
        passkey.sign_count += 1
        rp_hash = hashlib.sha256(options["rpId"].encode()).digest()
        auth_data = rp_hash + bytes([self.flags]) + struct.pack(">I", passkey.sign_count)
        client_data = self._client_data("webauthn.get", options["challenge"])
        signature = passkey.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return {
            "id": b64url(passkey.credential_id),
            "rawId": b64url(passkey.credential_id),
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": passkey.user_handle,
            },
            "clientExtensionResults": {},
            "type": "public-key",
        }
