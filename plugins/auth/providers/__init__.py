"""Identity providers: ``workos`` (AuthKit), ``oidc`` (any OpenID Connect provider), ``email_code``."""

from __future__ import annotations

from proxy_core.db import Store

from ..codes import LoginCodes
from ..config import AuthConfig
from ..keys import Keys
from ..mail import LogMailer, MailboxMailer, Mailer, SmtpMailer
from .base import Provider
from .email_code import EmailCodeProvider
from .oidc import OIDCProvider
from .workos import WorkOSProvider


def build_provider(config: AuthConfig, keys: Keys, db: Store) -> Provider:
    """The configured provider; ``email_code`` keeps its pending codes in ``db``."""
    if config.provider == "workos":
        assert config.workos is not None  # the config's validator requires the table
        return WorkOSProvider(config.workos)
    if config.provider == "oidc":
        assert config.oidc is not None
        return OIDCProvider(config.oidc)
    settings = config.email_code
    mailer: Mailer
    if settings.delivery == "mailbox":
        mailer = MailboxMailer(settings.mailbox_dir or config.data_dir / "mailbox")
    elif settings.delivery == "smtp":
        assert settings.smtp is not None
        mailer = SmtpMailer(settings.smtp)
    else:
        mailer = LogMailer()
    return EmailCodeProvider(settings, keys.codes, mailer, LoginCodes(db), db)
