"""The embedded default: a 6-digit code, valid ten minutes, sent to the address typed in.

Only a keyed hash of each pending code is kept. A code is void after ``max_attempts`` wrong guesses;
sends are limited per address and per client IP, guesses per client IP.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass

from ..config import EmailCodeConfig
from ..mail import Mailer
from ..ratelimit import RateLimit
from .base import SignedIn, SignInRefused

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pending:
    digest: bytes
    expires: float
    attempts_left: int


class EmailCodeProvider:
    name = "email_code"

    def __init__(self, config: EmailCodeConfig, key: bytes, mailer: Mailer) -> None:
        self.config = config
        self._key = key
        self._mailer = mailer
        self._pending: dict[str, _Pending] = {}
        self._sends_per_email = RateLimit(config.sends_per_email, config.rate_window)
        self._sends_per_ip = RateLimit(config.sends_per_ip, config.rate_window)
        self._verifies_per_ip = RateLimit(config.verifies_per_ip, config.rate_window)

    async def close(self) -> None:
        self._pending.clear()

    def _digest(self, email: str, code: str) -> bytes:
        return hmac.new(self._key, f"{email}\0{code}".encode(), hashlib.sha256).digest()

    async def send_code(self, email: str, client_ip: str) -> None:
        email = email.lower()
        if not self._sends_per_ip.hit(client_ip) or not self._sends_per_email.hit(email):
            raise SignInRefused("Too many codes were asked for. Wait a while and try again.", 429)
        code = f"{secrets.randbelow(1_000_000):06d}"
        now = time.monotonic()
        self._pending = {k: p for k, p in self._pending.items() if p.expires > now}
        self._pending[email] = _Pending(
            self._digest(email, code), now + self.config.code_ttl, self.config.max_attempts
        )
        await self._mailer.send(email, code, round(self.config.code_ttl / 60))

    async def verify_code(self, email: str, code: str, client_ip: str) -> SignedIn:
        email = email.lower()
        if not self._verifies_per_ip.hit(client_ip):
            raise SignInRefused("Too many attempts. Wait a while and try again.", 429)
        pending = self._pending.get(email)
        if pending is None or pending.expires <= time.monotonic():
            self._pending.pop(email, None)
            raise SignInRefused("This code expired or was used up. Ask for a new one.", 400)
        if not hmac.compare_digest(pending.digest, self._digest(email, code.strip())):
            pending.attempts_left -= 1
            if pending.attempts_left <= 0:
                del self._pending[email]
                log.warning("auth: sign-in code for %s voided after too many wrong guesses", email)
                raise SignInRefused("Too many wrong codes. Ask for a new one.", 400)
            raise SignInRefused(f"That code is not right. {pending.attempts_left} attempts left.", 400)
        del self._pending[email]
        return SignedIn(f"email:{email}", email)
