from syncline.accounts import Password, convex_auth

# The functions @convex-dev/auth 2.x calls: the session mutations of ConvexAuthProvider's
# api prop, and the username-password method's.
auth = convex_auth(providers=[Password()], max_failed_attempts=5, max_failed_attempts_per_address=8)
refreshSession, signOut, isAuthenticated = auth.v2.session()
signUpWithUsernamePassword, signInWithUsernamePassword = auth.v2.username_password()
