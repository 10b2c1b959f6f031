"""The web dashboard's server side: system functions, static files, login links, health.

* The pages read and write through ``_system/dashboard/<page>:<name>``
  functions (``data``, ``functions``, ``schedules``, ``files``, ``env``):
  system functions (:mod:`syncline.functions.system`), for admin callers only,
  run by the same engine as the user's functions, so every view is live.
* :mod:`~syncline.dashboard.static` serves the built UI (``static/``) under
  ``/dashboard``; :mod:`~syncline.dashboard.login` mints the one-time login
  links ``syncline dev`` prints; :mod:`~syncline.dashboard.health` counts what
  the health page shows. The HTTP routes are ``server/dashboard_api.py``'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncline.dashboard import data, env, files, functions, schedules

if TYPE_CHECKING:
    from syncline.application import Application

__all__ = ["SYSTEM_MODULE_PREFIX", "install_system_functions"]

#: the module prefix of the dashboard's system functions
SYSTEM_MODULE_PREFIX = "_system/dashboard/"


def install_system_functions(app: Application) -> None:
    """Serve the dashboard's system functions to ``app``'s admin callers."""
    pages = {
        **data.functions(),
        **functions.functions(app),
        **schedules.functions(app),
        **files.functions(app),
        **env.functions(),
    }
    for path, fn in pages.items():
        app.executor.system.register(SYSTEM_MODULE_PREFIX + path, fn)
