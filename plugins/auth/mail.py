"""Delivering sign-in codes: to the server log, to a mailbox directory scripts can read, or by SMTP."""

from __future__ import annotations

import asyncio
import logging
import os
import smtplib
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from .config import SmtpConfig

log = logging.getLogger(__name__)

SUBJECT = "Your sign-in code"


class DeliveryFailed(Exception):
    """The code could not be handed to the mail server (or written to the mailbox directory)."""


def body(code: str, minutes: int) -> str:
    return (
        f"Your sign-in code is {code}\n\n"
        f"It is valid for {minutes} minutes. If you did not ask for it, ignore this message.\n"
    )


class Mailer(Protocol):
    async def send(self, to: str, code: str, minutes: int) -> None: ...


class LogMailer:
    """Prints the code in the server's log on a line of its own (``==> Sign-in code for …`` on a
    terminal; a JSON line with ``"event": "sign_in_code"`` otherwise)."""

    async def send(self, to: str, code: str, minutes: int) -> None:
        log.warning(
            "Sign-in code for %s: %s (valid %d minutes)",
            to,
            code,
            minutes,
            extra={"fields": {"highlight": True, "event": "sign_in_code", "email": to, "code": code}},
        )


class MailboxMailer:
    """Writes ``<directory>/<address>`` (mode 0600), replacing the previous message to that address."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, to: str, code: str, minutes: int) -> None:
        try:
            await asyncio.to_thread(self._write, to.lower(), body(code, minutes))
        except OSError as exc:
            log.warning("auth: cannot write the sign-in code to %s: %s", self.directory, exc)
            raise DeliveryFailed(str(exc)) from None

    def _write(self, to: str, text: str) -> None:
        if to in (".", "..") or "/" in to or "\\" in to or "\0" in to:
            raise OSError(f"not a file name: {to!r}")  # never write outside the mailbox directory
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.directory / to
        partial = path.with_name(path.name + ".tmp")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(partial, path)


class SmtpMailer:
    slow = True  # a network round trip: delivered after the answer, so its time and failures never show

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    async def send(self, to: str, code: str, minutes: int) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.config.sender, to, SUBJECT
        message.set_content(body(code, minutes))
        try:
            await asyncio.to_thread(self._send, message)
        except (OSError, smtplib.SMTPException) as exc:
            where = f"{self.config.host}:{self.config.port}"
            log.warning("auth: cannot send the sign-in code through %s: %s", where, exc)
            raise DeliveryFailed(str(exc)) from None

    def _send(self, message: EmailMessage) -> None:
        config = self.config
        with smtplib.SMTP(config.host, config.port, timeout=config.timeout) as smtp:
            if config.starttls:
                smtp.starttls()
            if config.username and config.password:
                smtp.login(config.username, config.password.get_secret_value())
            smtp.send_message(message)
