"""The embedded default: a 6-digit code, valid ten minutes, sent to the address typed in.

Pending codes live in the store's ``login_codes`` table (:class:`~plugins.auth.codes.LoginCodes`), so
any worker or replica can verify a code another one sent. Only a keyed hash of each code is kept. A
code is void after ``max_attempts`` wrong guesses, counted atomically in the table.

Nothing tells a known address from an unknown one: a stranger's request charges the same limits and
stores a decoy code nobody receives (so verifying it fails exactly as a wrong code does), and SMTP
delivery happens after the answer, so neither its time nor its failure shows.

Limits live in the store too (every worker and replica counts against one limit; a restart resets
nothing): sends per client IP, sends per address *from one IP* with an exponential back-off between
them, and guesses per client IP. No limit is per address alone, and a code belongs to the browser
flow that asked for it, so asking for codes to someone else's address from elsewhere neither locks
that person out nor voids the code they are about to type.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets

from proxy_core.db import Store, StoreRateLimiter
from proxy_core.ratelimit import Decision, Policy
from proxy_core.tasks import BackgroundJobs

from ..codes import LoginCodes
from ..config import EmailCodeConfig
from ..mail import DeliveryFailed, Mailer, code_mail
from .base import SignedIn, SignInRefused

log = logging.getLogger(__name__)

EXPIRED = "This code expired or was used up. Ask for a new one."


class EmailCodeProvider:
    name = "email_code"

    def __init__(
        self, config: EmailCodeConfig, key: bytes, mailer: Mailer, codes: LoginCodes, db: Store
    ) -> None:
        self.config = config
        self._key = key
        self._mailer = mailer
        self.codes = codes
        window = config.rate_window
        self._sends_per_ip = StoreRateLimiter(db, "auth.sends_per_ip", Policy(config.sends_per_ip, window))
        self._sends_per_address = StoreRateLimiter(
            db, "auth.sends_per_address_ip", Policy(config.sends_per_email, window, config.send_backoff)
        )
        self._verifies_per_ip = StoreRateLimiter(
            db, "auth.verifies_per_ip", Policy(config.verifies_per_ip, window)
        )
        self._deliveries = BackgroundJobs("auth email delivery")

    async def close(self) -> None:
        await self._deliveries.wait(10.0)
        await self._deliveries.stop()

    def _digest(self, email: str, code: str) -> str:
        return hmac.new(self._key, f"{email}\0{code}".encode(), hashlib.sha256).hexdigest()

    async def send_code(self, email: str, client_ip: str, flow: str) -> None:
        """Charge the limits, store a new code of ``flow`` for ``email`` and deliver it."""
        await self._issue(email, client_ip, flow, deliver=True)

    async def send_decoy(self, email: str, client_ip: str, flow: str) -> None:
        """What :meth:`send_code` does for an address that may not sign in, minus the delivery."""
        await self._issue(email, client_ip, flow, deliver=False)

    async def _issue(self, email: str, client_ip: str, flow: str, *, deliver: bool) -> None:
        email = email.lower()
        _refuse_unless(
            await self._sends_per_ip.hit(client_ip),
            await self._sends_per_address.hit(f"{email}\0{client_ip}"),
            "Too many codes were asked for.",
        )
        code = f"{secrets.randbelow(1_000_000):06d}"
        await self.codes.put(
            email,
            flow,
            self._digest(email, code),
            ttl=self.config.code_ttl,
            attempts=self.config.max_attempts,
        )
        if not deliver:
            return
        mail = code_mail(email, code, round(self.config.code_ttl / 60))
        if not getattr(self._mailer, "slow", False):  # the log or a mailbox: quick, and readable at once
            await self._mailer.send(mail)
            return

        async def deliver_now() -> None:
            try:
                await self._mailer.send(mail)
            except DeliveryFailed:
                log.error("auth: the sign-in code for %s could not be sent (see the warning above)", email)

        self._deliveries.start("send", deliver_now, restart=False)

    async def verify_code(self, email: str, code: str, client_ip: str, flow: str) -> SignedIn:
        email = email.lower()
        _refuse_unless(await self._verifies_per_ip.hit(client_ip), Decision(True), "Too many attempts.")
        pending = await self.codes.get(email, flow)
        if pending is None:
            raise SignInRefused(EXPIRED, 400)
        digest = self._digest(email, code.strip())
        if hmac.compare_digest(pending.digest, digest):
            # the DELETE decides: of concurrent verifications of this code, exactly one gets the row
            if await self.codes.consume(email, flow, digest):
                return SignedIn(f"email:{email}", email)
            raise SignInRefused(EXPIRED, 400)
        left = await self.codes.miss(email, flow)
        if left is None:
            raise SignInRefused(EXPIRED, 400)
        if left <= 0:
            log.warning("auth: sign-in code for %s voided after too many wrong guesses", email)
            raise SignInRefused("Too many wrong codes. Ask for a new one.", 400)
        raise SignInRefused(f"That code is not right. {left} attempts left.", 400)


def _refuse_unless(first: Decision, second: Decision, what: str) -> None:
    if first.allowed and second.allowed:
        return
    wait = max(first.retry_after, second.retry_after)
    if wait <= 120:
        raise SignInRefused(f"{what} Wait {math.ceil(wait)} seconds and try again.", 429)
    raise SignInRefused(f"{what} Wait a while and try again.", 429)
