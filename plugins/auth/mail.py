"""Delivering auth's mail (sign-in codes, invitations): to the server log, to a mailbox directory
scripts can read, or by SMTP, as ``[pipeline.email_code] delivery`` says."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import smtplib
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from .config import EmailCodeConfig, SmtpConfig

log = logging.getLogger(__name__)

SUBJECT = "Your sign-in code"
INVITATION_SUBJECT = "You are invited to sign in"

_ADDRESS = re.compile(r"^[^@\s/\\]+@[^@\s/\\]+\.[^@\s/\\]+$")  # no path separators: see MailboxMailer


def valid_address(email: str) -> bool:
    """Whether ``email`` (stripped) is an address we send mail to."""
    return len(email) <= 254 and _ADDRESS.match(email) is not None


class DeliveryFailed(Exception):
    """The mail could not be handed to the mail server (or written to the mailbox directory)."""


@dataclass(frozen=True, slots=True)
class Mail:
    """One message: ``summary`` is its line in the server log (``log`` delivery), ``fields`` that
    line's structured fields."""

    to: str
    subject: str
    text: str
    summary: str
    fields: dict[str, str] = field(default_factory=dict)


def body(code: str, minutes: int) -> str:
    return (
        f"Your sign-in code is {code}\n\n"
        f"It is valid for {minutes} minutes. If you did not ask for it, ignore this message.\n"
    )


def code_mail(to: str, code: str, minutes: int) -> Mail:
    summary = f"Sign-in code for {to}: {code} (valid {minutes} minutes)"
    return Mail(to, SUBJECT, body(code, minutes), summary, {"event": "sign_in_code", "code": code})


def invitation_mail(to: str, sign_in_url: str, invited_by: str) -> Mail:
    text = (
        f"{invited_by} invited you to sign in at {sign_in_url}\n\n"
        f"Sign in there with this address ({to}): a sign-in code is emailed to you then.\n"
    )
    summary = f"Invitation for {to}: sign in at {sign_in_url}"
    return Mail(to, INVITATION_SUBJECT, text, summary, {"event": "invitation", "url": sign_in_url})


class Mailer(Protocol):
    async def send(self, mail: Mail) -> None:
        """Deliver ``mail``; raises :class:`DeliveryFailed`."""
        ...


def build_mailer(config: EmailCodeConfig, data_dir: Path) -> Mailer:
    """The delivery ``config`` names (``log`` unless told otherwise)."""
    if config.delivery == "mailbox":
        return MailboxMailer(config.mailbox_dir or data_dir / "mailbox")
    if config.delivery == "smtp":
        assert config.smtp is not None  # the config's validator requires the table
        return SmtpMailer(config.smtp)
    return LogMailer()


class LogMailer:
    """Prints the mail's summary in the server's log on a line of its own (``==> Sign-in code for …``
    on a terminal; a JSON line with ``"event": "sign_in_code"`` or ``"invitation"`` otherwise)."""

    async def send(self, mail: Mail) -> None:
        log.warning(
            "%s",
            mail.summary,
            extra={"fields": {"highlight": True, **mail.fields, "email": mail.to}},
        )


class MailboxMailer:
    """Writes ``<directory>/<address>`` (mode 0600), replacing the previous message to that address."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, mail: Mail) -> None:
        try:
            await asyncio.to_thread(self._write, mail.to.lower(), mail.text)
        except OSError as exc:
            log.warning("auth: cannot write mail to %s: %s", self.directory, exc)
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

    async def send(self, mail: Mail) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.config.sender, mail.to, mail.subject
        message.set_content(mail.text)
        try:
            await asyncio.to_thread(self._send, message)
        except (OSError, smtplib.SMTPException) as exc:
            where = f"{self.config.host}:{self.config.port}"
            log.warning("auth: cannot send mail through %s: %s", where, exc)
            raise DeliveryFailed(str(exc)) from None

    def _send(self, message: EmailMessage) -> None:
        config = self.config
        with smtplib.SMTP(config.host, config.port, timeout=config.timeout) as smtp:
            if config.starttls:
                smtp.starttls()
            if config.username and config.password:
                smtp.login(config.username, config.password.get_secret_value())
            smtp.send_message(message)
