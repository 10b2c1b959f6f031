from syncline import HttpRouter

from .auth import auth

http = HttpRouter()
auth.add_http_routes(http)
