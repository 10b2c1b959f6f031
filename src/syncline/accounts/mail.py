"""Sending sign-in codes by email: SMTP configured by environment variables.

Deployment environment variables (``syncline env set ...``):

| variable | meaning | default |
|---|---|---|
| ``SMTP_HOST`` | the SMTP server; unset: codes are written to the server log (dev) | unset |
| ``SMTP_PORT`` | its port | 587 (465 with ``SMTP_SECURITY=tls``) |
| ``SMTP_SECURITY`` | ``starttls``, ``tls`` (implicit TLS) or ``none`` | ``starttls`` |
| ``SMTP_USERNAME`` / ``SMTP_PASSWORD`` | login, when the server wants one | unset |
| ``SMTP_FROM`` | the From address | ``no-reply@<SMTP_HOST>`` |

``smtplib`` runs in a worker thread (with a timeout), so the event loop is
never blocked by a slow mail server. Without ``SMTP_HOST`` the code goes to
the ``syncline.accounts`` log, which ``syncline dev`` prints: convenient in
development, never configure production that way.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage

from syncline.errors import InvalidRequest

__all__ = ["Message", "SmtpSettings", "numeric_code", "random_code", "send_message"]

log = logging.getLogger("syncline.accounts")

_TIMEOUT_S = 20.0
_ALPHANUMERIC = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def random_code(length: int = 32) -> str:
    """A code for links: ``length`` characters of [0-9A-Za-z] from the OS's CSPRNG."""
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


def numeric_code(length: int = 8) -> str:
    """A code to type: ``length`` decimal digits."""
    return "".join(secrets.choice("0123456789") for _ in range(length))


@dataclass(frozen=True)
class Message:
    to: str
    subject: str
    text: str
    #: the secret part, for the dev log line ("" for a mail that carries none)
    code: str
    #: what the secret part is, for the dev log line
    kind: str = "Sign-in code"


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str
    username: str | None
    password: str | None
    sender: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SmtpSettings | None:
        host = env.get("SMTP_HOST") or None
        if host is None:
            return None
        security = (env.get("SMTP_SECURITY") or "starttls").lower()
        if security not in ("starttls", "tls", "none"):
            raise InvalidRequest(
                f"SMTP_SECURITY must be starttls, tls or none, got {security!r}",
                code="BadSmtpSettings",
            )
        port_text = env.get("SMTP_PORT") or ("465" if security == "tls" else "587")
        try:
            port = int(port_text)
        except ValueError:
            raise InvalidRequest(
                f"SMTP_PORT must be a port number, got {port_text!r}", code="BadSmtpSettings"
            ) from None
        return cls(
            host=host,
            port=port,
            security=security,
            username=env.get("SMTP_USERNAME") or None,
            password=env.get("SMTP_PASSWORD") or None,
            sender=env.get("SMTP_FROM") or f"no-reply@{host}",
        )


def _send_blocking(settings: SmtpSettings, message: Message) -> None:
    mail = EmailMessage()
    mail["From"] = settings.sender
    mail["To"] = message.to
    mail["Subject"] = message.subject
    mail.set_content(message.text)
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if settings.security == "tls":
        smtp = smtplib.SMTP_SSL(settings.host, settings.port, timeout=_TIMEOUT_S, context=context)
    else:
        smtp = smtplib.SMTP(settings.host, settings.port, timeout=_TIMEOUT_S)
    with smtp:
        if settings.security == "starttls":
            smtp.starttls(context=context)
        if settings.username is not None:
            smtp.login(settings.username, settings.password or "")
        smtp.send_message(mail)


async def send_message(env: Mapping[str, str], message: Message) -> None:
    """Send ``message`` as the deployment's SMTP settings say (or log it, without SMTP_HOST)."""
    settings = SmtpSettings.from_env(env)
    if settings is None and not message.code:
        log.warning(
            "Mail to %s: %s (SMTP_HOST is not set, so it is logged instead of sent)",
            message.to,
            message.subject,
        )
        return
    if settings is None:
        log.warning(
            "%s for %s: %s (SMTP_HOST is not set, so it is logged instead of sent)",
            message.kind,
            message.to,
            message.code,
        )
        return
    try:
        await asyncio.to_thread(_send_blocking, settings, message)
    except (OSError, smtplib.SMTPException) as e:
        raise InvalidRequest(
            f"Could not send the sign-in email through {settings.host}:{settings.port}: "
            f"{type(e).__name__}: {e}",
            code="EmailNotSent",
        ) from e
