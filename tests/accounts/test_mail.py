"""Sending sign-in mail over SMTP (a small SMTP server on a real socket) and its settings."""

from __future__ import annotations

import asyncio
import socketserver
import threading
from collections.abc import Iterator

import pytest

from syncline.accounts.mail import Message, SmtpSettings, send_message
from syncline.errors import InvalidRequest


class _Smtp(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib: greeting, EHLO, MAIL, RCPT, DATA, QUIT."""

    def handle(self) -> None:
        server: _Server = self.server  # type: ignore[assignment]
        self.wfile.write(b"220 test ESMTP\r\n")
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.wfile.write(b"250 test\r\n")
            elif verb == b"DATA":
                self.wfile.write(b"354 go on\r\n")
                body = b""
                while (chunk := self.rfile.readline()) != b".\r\n":
                    body += chunk
                server.received.append(body.decode())
                self.wfile.write(b"250 queued\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                server.envelope.append(line.decode().strip())
                self.wfile.write(b"250 ok\r\n")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Smtp)
        self.received: list[str] = []
        self.envelope: list[str] = []


@pytest.fixture
def smtp() -> Iterator[_Server]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_a_code_is_sent_through_smtp(smtp: _Server) -> None:
    env = {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp.server_address[1]),
        "SMTP_SECURITY": "none",
        "SMTP_FROM": "login@app.test",
    }
    asyncio.run(
        send_message(
            env, Message("ada@example.com", "Sign in", "Your code is 12345678.", "12345678")
        )
    )
    [mail] = smtp.received
    assert "From: login@app.test" in mail and "To: ada@example.com" in mail
    assert "Subject: Sign in" in mail and "Your code is 12345678." in mail
    assert smtp.envelope[0].upper().startswith("MAIL FROM:<LOGIN@APP.TEST>")


def test_an_unreachable_smtp_server_is_a_clear_error() -> None:
    from syncline._devtools import free_ports

    [port] = free_ports(1)
    env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_SECURITY": "none"}
    with pytest.raises(InvalidRequest) as excinfo:
        asyncio.run(send_message(env, Message("a@b.co", "s", "t", "c")))
    assert excinfo.value.code == "EmailNotSent"
    assert f"127.0.0.1:{port}" in excinfo.value.message


def test_settings_defaults_and_checks() -> None:
    assert SmtpSettings.from_env({}) is None
    settings = SmtpSettings.from_env({"SMTP_HOST": "mail.test"})
    assert settings is not None
    assert (settings.port, settings.security, settings.sender) == (
        587,
        "starttls",
        "no-reply@mail.test",
    )
    implicit = SmtpSettings.from_env({"SMTP_HOST": "mail.test", "SMTP_SECURITY": "TLS"})
    assert implicit is not None and implicit.port == 465
    with pytest.raises(InvalidRequest, match="SMTP_SECURITY"):
        SmtpSettings.from_env({"SMTP_HOST": "mail.test", "SMTP_SECURITY": "ssl3"})
    with pytest.raises(InvalidRequest, match="SMTP_PORT"):
        SmtpSettings.from_env({"SMTP_HOST": "mail.test", "SMTP_PORT": "smtp"})
