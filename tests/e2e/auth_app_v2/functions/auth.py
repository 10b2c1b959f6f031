from syncline.accounts import OIDC, Password, convex_auth

# The functions @convex-dev/auth 2.x calls: the session mutations of ConvexAuthProvider's
# api prop, the username-password method's, and the Google method's ("google" is the test's
# OpenID Connect provider: AUTH_GOOGLE_ISSUER, AUTH_GOOGLE_ID, AUTH_GOOGLE_SECRET).
auth = convex_auth(
    providers=[Password(), OIDC(id="google")],
    max_failed_attempts=5,
    max_failed_attempts_per_address=8,
)
refreshSession, signOut, isAuthenticated = auth.v2.session()
signUpWithUsernamePassword, signInWithUsernamePassword = auth.v2.username_password()
startSignInWithGoogle, completeSignInWithGoogle = auth.v2.oauth("google")
store = auth.store  # the OAuth callback route writes through it
