"""Sign-in for the web app (web/, @convex-dev/auth/react).

Password sign-up and sign-in work as they are. To add GitHub or Google, add
GitHub() / Google() below (from syncline.accounts) and set AUTH_GITHUB_ID and
AUTH_GITHUB_SECRET (syncline env set ...); for email codes add Email() and
set the SMTP_* variables. See the built-in auth guide.
"""

from syncline.accounts import Password, convex_auth

auth = convex_auth(providers=[Password()])
signIn, signOut, store, isAuthenticated = auth
