"""Where sign-in flows send the browser back to: the app's ``SITE_URL``.

``SITE_URL`` (a deployment environment variable, as in Convex Auth) is the
app's own URL. A ``redirectTo`` parameter may be a path (``/inbox``), which is
joined to ``SITE_URL``, or an absolute URL that starts with ``SITE_URL``;
anything else is refused, so a sign-in link cannot carry its code to another
site (an open redirect).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from syncline.accounts.errors import auth_error

__all__ = ["redirect_target", "with_query_param"]


def redirect_target(env: Mapping[str, str], redirect_to: Any) -> str:
    """The absolute URL to send the browser to after sign-in."""
    configured = env.get("SITE_URL") or ""
    site = configured.rstrip("/")
    if not site:
        raise auth_error(
            "SiteUrlNotSet",
            "Set the SITE_URL environment variable to the app's URL (syncline env set SITE_URL "
            "https://app.example.com): sign-in links and OAuth redirects go back to it",
        )
    if redirect_to is None or redirect_to == "":
        return configured
    if not isinstance(redirect_to, str):
        raise auth_error("InvalidRedirect", "params.redirectTo must be a string")
    if redirect_to.startswith("/") and not redirect_to.startswith("//"):
        return site + redirect_to
    if (
        redirect_to == site
        or redirect_to.startswith(site + "/")
        or redirect_to.startswith(site + "?")
    ):
        return redirect_to
    raise auth_error(
        "InvalidRedirect",
        f"params.redirectTo must be a path or a URL under SITE_URL ({site}), got {redirect_to!r}",
    )


def with_query_param(url: str, name: str, value: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = [
        (k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k != name
    ]
    query.append((name, value))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
