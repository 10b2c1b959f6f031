"""HTTP routes: the token issuer's discovery documents, and OAuth callbacks when enabled."""

from syncline import HttpRouter

from .auth import auth

http = HttpRouter()
auth.add_http_routes(http)
