"""The tables built-in authentication keeps, named and shaped as Convex Auth's.

An app adds them to its schema::

    from syncline import define_schema
    from syncline.accounts import auth_tables

    schema = define_schema({**auth_tables, "messages": ...})

``users`` may be replaced by the app's own definition (more fields), as long
as it keeps the optional fields below and the ``email`` index.

| table | one document per | fields |
|---|---|---|
| users | user | name, image, email, emailVerificationTime, phone, phoneVerificationTime, isAnonymous |
| authAccounts | sign-in method of a user | userId, provider, providerAccountId, secret (password hash), emailVerified |
| authSessions | signed-in device | userId, expirationTime |
| authRefreshTokens | refresh token | sessionId, expirationTime, firstUsedTime, parentRefreshToken, tokenHash |
| authVerificationCodes | pending code (email, OAuth) | accountId, provider, code (SHA-256), expirationTime, verifier, emailVerified |
| authVerifiers | OAuth sign-in in progress | signature (SHA-256 of the state), provider, codeVerifier (PKCE), redirectTo, expirationTime, clientState (SHA-256 of a 2.x client's state) |
| authRateLimits | account or address with failures | identifier, lastAttemptTime, attemptsLeft |
| authChallenges | emailed link of a 2.x flow in progress | kind, provider, email, codeHash, secretHash, passwordHash, userId, expirationTime |
| authPasskeys | passkey (WebAuthn credential) | userId, credentialId, publicKey (COSE), algorithm, signCount, transports, lastUsedTime, name |
| authPasskeyChallenges | passkey ceremony in progress | challengeHash, purpose, username, userId, expirationTime |
"""

from __future__ import annotations

from syncline.schema import TableDefinition, define_table
from syncline.values.validators import v

__all__ = [
    "ACCOUNTS",
    "CHALLENGES",
    "PASSKEYS",
    "PASSKEY_CHALLENGES",
    "RATE_LIMITS",
    "REFRESH_TOKENS",
    "SESSIONS",
    "USERS",
    "VERIFICATION_CODES",
    "VERIFIERS",
    "auth_tables",
]

USERS = "users"
ACCOUNTS = "authAccounts"
SESSIONS = "authSessions"
REFRESH_TOKENS = "authRefreshTokens"
VERIFICATION_CODES = "authVerificationCodes"
VERIFIERS = "authVerifiers"
RATE_LIMITS = "authRateLimits"
CHALLENGES = "authChallenges"
PASSKEYS = "authPasskeys"
PASSKEY_CHALLENGES = "authPasskeyChallenges"


def _tables() -> dict[str, TableDefinition]:
    return {
        USERS: define_table(
            {
                "name": v.optional(v.string()),
                "image": v.optional(v.string()),
                "email": v.optional(v.string()),
                "emailVerificationTime": v.optional(v.number()),
                "phone": v.optional(v.string()),
                "phoneVerificationTime": v.optional(v.number()),
                "isAnonymous": v.optional(v.boolean()),
            }
        )
        .index("email", ["email"])
        .index("phone", ["phone"]),
        ACCOUNTS: define_table(
            {
                "userId": v.id(USERS),
                "provider": v.string(),
                "providerAccountId": v.string(),
                "secret": v.optional(v.string()),
                "emailVerified": v.optional(v.string()),
                "phoneVerified": v.optional(v.string()),
            }
        )
        .index("userIdAndProvider", ["userId", "provider"])
        .index("providerAndAccountId", ["provider", "providerAccountId"]),
        SESSIONS: define_table({"userId": v.id(USERS), "expirationTime": v.number()}).index(
            "userId", ["userId"]
        ),
        REFRESH_TOKENS: define_table(
            {
                "sessionId": v.id(SESSIONS),
                "expirationTime": v.number(),
                "firstUsedTime": v.optional(v.number()),
                "parentRefreshToken": v.optional(v.id(REFRESH_TOKENS)),
                "tokenHash": v.string(),
            }
        ).index("sessionId", ["sessionId"]),
        VERIFICATION_CODES: define_table(
            {
                "accountId": v.id(ACCOUNTS),
                "provider": v.string(),
                "code": v.string(),
                "expirationTime": v.number(),
                "verifier": v.optional(v.string()),
                "emailVerified": v.optional(v.string()),
                "phoneVerified": v.optional(v.string()),
            }
        )
        .index("accountId", ["accountId"])
        .index("code", ["code"]),
        VERIFIERS: define_table(
            {
                "sessionId": v.optional(v.id(SESSIONS)),
                "signature": v.optional(v.string()),
                "provider": v.optional(v.string()),
                "codeVerifier": v.optional(v.string()),
                "redirectTo": v.optional(v.string()),
                "expirationTime": v.optional(v.number()),
                "clientState": v.optional(v.string()),
            }
        )
        .index("signature", ["signature"])
        .index("expirationTime", ["expirationTime"]),
        RATE_LIMITS: define_table(
            {"identifier": v.string(), "lastAttemptTime": v.number(), "attemptsLeft": v.number()}
        ).index("identifier", ["identifier"]),
        CHALLENGES: define_table(
            {
                "kind": v.string(),
                "provider": v.string(),
                "email": v.string(),
                "codeHash": v.string(),
                "secretHash": v.string(),
                "passwordHash": v.optional(v.string()),
                "userId": v.optional(v.id(USERS)),
                "expirationTime": v.number(),
            }
        )
        .index("secretHash", ["secretHash"])
        .index("email", ["email"]),
        PASSKEYS: define_table(
            {
                "userId": v.id(USERS),
                "credentialId": v.string(),
                "publicKey": v.string(),
                "algorithm": v.number(),
                "signCount": v.number(),
                "transports": v.optional(v.array(v.string())),
                "lastUsedTime": v.optional(v.number()),
                "name": v.optional(v.string()),
            }
        )
        .index("credentialId", ["credentialId"])
        .index("userId", ["userId"]),
        PASSKEY_CHALLENGES: define_table(
            {
                "challengeHash": v.string(),
                "purpose": v.string(),
                "username": v.optional(v.string()),
                "userId": v.optional(v.id(USERS)),
                "expirationTime": v.number(),
            }
        )
        .index("challengeHash", ["challengeHash"])
        .index("expirationTime", ["expirationTime"]),
    }


#: the auth tables, to spread into ``define_schema({**auth_tables, ...})``
auth_tables: dict[str, TableDefinition] = _tables()
