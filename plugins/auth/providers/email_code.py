"""The embedded default: a 6-digit code, valid ten minutes, sent to the address typed in.

Pending codes live in the store's ``login_codes`` table (:class:`~plugins.auth.codes.LoginCodes`), so
any worker or replica can verify a code another one sent. Only a keyed hash of each code is kept. A
code is void after ``max_attempts`` wrong guesses, counted atomically in the table, so that limit is
global. Sends are also limited per address and per client IP, and guesses per client IP; those
counters are kept in the process, so with N workers (or replicas) each one counts on its own and the
effective limits are up to N times the configured ones.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets

from ..codes import LoginCodes
from ..config import EmailCodeConfig
from ..mail import Mailer
from ..ratelimit import RateLimit
from .base import SignedIn, SignInRefused

log = logging.getLogger(__name__)

EXPIRED = "This code expired or was used up. Ask for a new one."


class EmailCodeProvider:
    name = "email_code"

    def __init__(self, config: EmailCodeConfig, key: bytes, mailer: Mailer, codes: LoginCodes) -> None:
        self.config = config
        self._key = key
        self._mailer = mailer
        self.codes = codes
        self._sends_per_email = RateLimit(config.sends_per_email, config.rate_window)
        self._sends_per_ip = RateLimit(config.sends_per_ip, config.rate_window)
        self._verifies_per_ip = RateLimit(config.verifies_per_ip, config.rate_window)

    async def close(self) -> None:
        pass  # the store belongs to the app

    def _digest(self, email: str, code: str) -> str:
        return hmac.new(self._key, f"{email}\0{code}".encode(), hashlib.sha256).hexdigest()

    async def send_code(self, email: str, client_ip: str) -> None:
        email = email.lower()
        if not self._sends_per_ip.hit(client_ip) or not self._sends_per_email.hit(email):
            raise SignInRefused("Too many codes were asked for. Wait a while and try again.", 429)
        code = f"{secrets.randbelow(1_000_000):06d}"
        await self.codes.put(
            email, self._digest(email, code), ttl=self.config.code_ttl, attempts=self.config.max_attempts
        )
        await self._mailer.send(email, code, round(self.config.code_ttl / 60))

    async def verify_code(self, email: str, code: str, client_ip: str) -> SignedIn:
        email = email.lower()
        if not self._verifies_per_ip.hit(client_ip):
            raise SignInRefused("Too many attempts. Wait a while and try again.", 429)
        pending = await self.codes.get(email)
        if pending is None:
            raise SignInRefused(EXPIRED, 400)
        digest = self._digest(email, code.strip())
        if hmac.compare_digest(pending.digest, digest):
            # the DELETE decides: of concurrent verifications of this code, exactly one gets the row
            if await self.codes.consume(email, digest):
                return SignedIn(f"email:{email}", email)
            raise SignInRefused(EXPIRED, 400)
        left = await self.codes.miss(email)
        if left is None:
            raise SignInRefused(EXPIRED, 400)
        if left <= 0:
            log.warning("auth: sign-in code for %s voided after too many wrong guesses", email)
            raise SignInRefused("Too many wrong codes. Ask for a new one.", 400)
        raise SignInRefused(f"That code is not right. {left} attempts left.", 400)
