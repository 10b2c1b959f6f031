from syncline.accounts import Password, convex_auth

auth = convex_auth(providers=[Password()], access_token_ttl_s=600, max_failed_attempts=3)
refreshSession, signOut, isAuthenticated = auth.v2.session()
signUpWithUsernamePassword, signInWithUsernamePassword = auth.v2.username_password()
