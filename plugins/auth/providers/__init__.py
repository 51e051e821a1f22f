"""Identity providers: ``workos`` (AuthKit), ``oidc`` (any OpenID Connect provider), ``email_code``."""

from __future__ import annotations

from proxy_core.db import Store

from ..codes import LoginCodes
from ..config import AuthConfig
from ..keys import Keys
from ..mail import Mailer
from .base import Provider
from .email_code import EmailCodeProvider
from .oidc import OIDCProvider
from .workos import WorkOSProvider


def build_provider(config: AuthConfig, keys: Keys, db: Store, mailer: Mailer) -> Provider:
    """The configured provider; ``email_code`` keeps its pending codes in ``db`` and sends them
    through ``mailer``."""
    if config.provider == "workos":
        assert config.workos is not None  # the config's validator requires the table
        return WorkOSProvider(config.workos)
    if config.provider == "oidc":
        assert config.oidc is not None
        return OIDCProvider(config.oidc)
    return EmailCodeProvider(config.email_code, keys.codes, mailer, LoginCodes(db), db)
