from syncline.accounts import OIDC, Password, convex_auth

# The functions @convex-dev/auth 2.x calls: the session mutations of ConvexAuthProvider's
# api prop, and those of the username-password, email-password, username-passkey and Google
# methods. ("google" is the test's OpenID Connect provider: AUTH_GOOGLE_ISSUER, AUTH_GOOGLE_ID,
# AUTH_GOOGLE_SECRET.)
auth = convex_auth(
    providers=[Password(), OIDC(id="google")],
    max_failed_attempts=5,
    max_failed_attempts_per_address=8,
)
refreshSession, signOut, isAuthenticated = auth.v2.session()
signUpWithUsernamePassword, signInWithUsernamePassword = auth.v2.username_password()
startSignInWithGoogle, completeSignInWithGoogle = auth.v2.oauth("google")
store = auth.store  # the OAuth callback route writes through it
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
) = auth.v2.email_password(
    sign_up_url="/?page=validate-email",
    recovery_url="/?page=reset-password",
    change_email_url="/?page=confirm-email-change",
)
authMail = auth.v2.mail  # sends the method's mails (logged: the test has no SMTP_HOST)
(
    startSignInWithUsernamePasskey,
    startAutofillSignInWithUsernamePasskey,
    finishSignUpWithUsernamePasskey,
    finishSignInWithUsernamePasskey,
) = auth.v2.username_passkey()  # the relying party is SITE_URL's host
