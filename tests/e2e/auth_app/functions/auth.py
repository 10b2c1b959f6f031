from syncline.accounts import OIDC, Password, convex_auth

# "fake": the test's OpenID Connect provider (AUTH_FAKE_ISSUER, AUTH_FAKE_ID, AUTH_FAKE_SECRET).
auth = convex_auth(
    providers=[Password(), OIDC(id="fake")],
    max_failed_attempts=5,
    max_failed_attempts_per_address=8,
)
signIn, signOut, store, isAuthenticated = auth
