from syncline.accounts import Password, convex_auth

auth = convex_auth(providers=[Password()], max_failed_attempts=5)
signIn, signOut, store, isAuthenticated = auth
