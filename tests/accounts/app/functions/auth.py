from syncline.accounts import OIDC, Anonymous, Email, Password, convex_auth

auth = convex_auth(
    providers=[
        Password(reset=True),
        Password(id="verified", verify=True),
        Email(),
        Email(id="otp", magic_link=False),
        OIDC(id="fake"),
        Anonymous(max_per_address=2),
    ],
    access_token_ttl_s=600,
    max_failed_attempts=3,
    max_failed_attempts_per_address=6,
)
signIn, signOut, store, isAuthenticated = auth
