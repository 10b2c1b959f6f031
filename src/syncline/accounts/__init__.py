"""Built-in authentication, used unchanged by the Convex Auth React client.

::

    # functions/auth.py
    from syncline.accounts import Password, convex_auth

    auth = convex_auth(providers=[Password()])
    signIn, signOut, store, isAuthenticated = auth

The deployment signs its own access tokens (:mod:`syncline.accounts.issuer`,
keys in the data folder: :mod:`syncline.accounts.keys`), so
``ctx.auth.get_user_identity()`` and :func:`get_auth_user_id` work with no
``auth_config.py``. The tables are :data:`auth_tables`. A page using
``@convex-dev/auth`` 2.x binds the functions of ``auth.v2`` instead
(:mod:`syncline.accounts.v2`). See docs/built-in-auth.md.
"""

from syncline.accounts.anonymous import Anonymous
from syncline.accounts.email import Email
from syncline.accounts.helpers import get_auth_session_id, get_auth_user_id
from syncline.accounts.oauth import OIDC, Apple, GitHub, Google, OAuthProvider
from syncline.accounts.password import Password
from syncline.accounts.setup import ConvexAuth, convex_auth
from syncline.accounts.tables import auth_tables

__all__ = [
    "OIDC",
    "Anonymous",
    "Apple",
    "ConvexAuth",
    "Email",
    "GitHub",
    "Google",
    "OAuthProvider",
    "Password",
    "auth_tables",
    "convex_auth",
    "get_auth_session_id",
    "get_auth_user_id",
]
