"""The ``auth`` stage's table in ``proxy.toml``. Secrets come from the environment through ``${VAR}``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator, model_validator

from proxy_core import StageConfig
from proxy_core.paths import ConfigPath


class WorkOSConfig(StageConfig):
    """``[pipeline.workos]``: WorkOS AuthKit (User Management)."""

    client_id: str = Field(min_length=1)
    api_key: SecretStr
    base_url: AnyHttpUrl = AnyHttpUrl("https://api.workos.com")
    issuer: str | None = None
    """The access token's ``iss``; defaults to ``base_url`` with a trailing slash (a custom auth domain
    differs)."""
    organization_id: str | None = None
    """When set, sign-in happens in this organization and tokens for any other one are refused."""
    admin_roles: tuple[str, ...] = ("admin",)
    """Role slugs (token ``role`` or membership ``role.slug``) that make a user an admin here."""
    magic_auth: bool = False
    """Offer WorkOS Magic Auth (an emailed code) on the sign-in page besides the SSO button."""
    leeway: float = Field(30.0, ge=0, le=300)
    refresh_margin: float = Field(60.0, ge=0)
    """Refresh the access token this many seconds before it expires."""
    jwks_cache_seconds: float = Field(3600.0, gt=0)
    timeout: float = Field(10.0, gt=0)

    @property
    def expected_issuer(self) -> str:
        return self.issuer or str(self.base_url).rstrip("/") + "/"


class OIDCConfig(StageConfig):
    """``[pipeline.oidc]``: any OpenID Connect provider found through discovery."""

    issuer: AnyHttpUrl
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    token_auth: Literal["client_secret_basic", "client_secret_post", "none"] = "client_secret_basic"
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    admin_claim: str | None = None
    """An id_token claim (string or list) that makes a user an admin when it holds one of ``admin_values``."""
    admin_values: tuple[str, ...] = ("admin",)
    emails_verified: bool = False
    """This issuer verifies every email address it shares (a company directory, say): a missing
    ``email_verified`` claim then counts as true. Otherwise a missing claim counts as unverified, and an
    unverified address neither creates a user nor links one an operator added."""
    logout: bool = True
    """On sign-out, send the browser to the provider's ``end_session_endpoint`` (when it has one) so the
    provider's session ends too; it sends the browser back to our sign-in page."""
    leeway: float = Field(30.0, ge=0, le=300)
    discovery_cache_seconds: float = Field(3600.0, gt=0)
    timeout: float = Field(10.0, gt=0)
    """The total time any one call to the provider may take (connect, send, wait, read)."""
    health_timeout: float = Field(2.0, ge=0)
    """Before sending a browser to the provider with a cached discovery document, check it answers
    within this many seconds (0: no check); when it does not, our page says so."""

    @field_validator("scopes")
    @classmethod
    def _openid_scope(cls, scopes: tuple[str, ...]) -> tuple[str, ...]:
        return scopes if "openid" in scopes else ("openid", *scopes)

    @property
    def issuer_url(self) -> str:
        return str(self.issuer).rstrip("/")


class SmtpConfig(StageConfig):
    host: str
    port: int = Field(587, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = True
    sender: str = "sign-in@localhost"
    timeout: float = Field(10.0, gt=0)


class EmailCodeConfig(StageConfig):
    """``[pipeline.email_code]``: a 6-digit code sent to the address typed on the sign-in page."""

    delivery: Literal["log", "mailbox", "smtp"] = "log"
    mailbox_dir: ConfigPath | None = None
    """Where ``mailbox`` delivery writes one file per address; default ``<data_dir>/mailbox``."""
    smtp: SmtpConfig | None = None
    code_ttl: float = Field(600.0, gt=0)
    max_attempts: int = Field(5, ge=1)
    """Wrong codes accepted before the code is void and a new one must be asked for."""
    sends_per_email: int = Field(5, ge=1)
    """Codes one client IP may ask for one address per window (never a limit on the address alone)."""
    send_backoff: float = Field(30.0, ge=0)
    """After the first code for an address from an IP, the next waits this long, doubled each time."""
    sends_per_ip: int = Field(20, ge=1)
    verifies_per_ip: int = Field(30, ge=1)
    rate_window: float = Field(3600.0, gt=0)
    """The window (seconds) the limits above count over; counted in the store, for every replica."""

    @model_validator(mode="after")
    def _smtp_needs_server(self) -> EmailCodeConfig:
        if self.delivery == "smtp" and self.smtp is None:
            raise ValueError("delivery = 'smtp' needs an [smtp] table (host, port, ...)")
        return self


class AuthConfig(StageConfig):
    """The ``auth`` stage."""

    provider: Literal["email_code", "workos", "oidc"] = "email_code"
    workos: WorkOSConfig | None = None
    oidc: OIDCConfig | None = None
    email_code: EmailCodeConfig = EmailCodeConfig()

    cookie_secret: SecretStr | None = None
    """At least 32 characters. Optional only for ``email_code``: one is then generated in ``data_dir``."""
    cookie_name: str = Field("auth_session", pattern=r"^[A-Za-z0-9_\-]+$")
    cookie_secure: bool | None = None
    """``None``: Secure when the client reached us over https (after trusted proxies)."""
    data_dir: ConfigPath = Field(Path("data"), validate_default=True)
    """Relative to the config file's folder."""

    session_lifetime: float = Field(7 * 24 * 3600.0, gt=0)
    idle_timeout: float = Field(24 * 3600.0, gt=0)
    session_cache_seconds: float = Field(2.0, ge=0)
    """How long a worker trusts a session it read; a revocation elsewhere takes this long to land."""

    path_prefix: str = Field("/auth", pattern=r"^/[A-Za-z0-9_\-/]*[A-Za-z0-9_\-]$")
    public_paths: tuple[str, ...] = ()
    """Paths served without a session: exact (``/robots.txt``) or prefixes ending in ``*`` (``/static/*``)."""
    strip_headers: tuple[str, ...] = (
        "X-Auth-*",
        "X-Forwarded-User",
        "X-Forwarded-Email",
        "X-Forwarded-Preferred-Username",
        "X-Forwarded-Groups",
        "X-Forwarded-Access-Token",
        "Remote-User",
        "X-Remote-User",
        "X-User",
        "X-User-Id",
        "X-User-Email",
        "X-Email",
        "X-Webauth-*",
        "X-Authenticated-*",
        "X-Remote-*",
        "X-Role",
        "X-Roles",
        "X-Groups",
        "X-Forwarded-Role",
    )
    """Client headers that could pass for an identity; removed before any later stage sees the request
    (``_`` counts as ``-``). Every ``X-Shmastra-*`` header is removed too: the cloud's own identity
    headers live there."""

    menu: bool = True
    """Offer the cloud menu (signed-in email, sign out) to pages of forwarding stages that allow it."""

    admins: tuple[str, ...] = ()
    """Emails that are always admins (bootstrap)."""
    allowed_emails: tuple[str, ...] = ()
    allowed_domains: tuple[str, ...] = ()
    """When either is set, only these addresses (plus existing users and admins) may sign in. With
    ``email_code`` and both empty, only existing users and admins may."""

    @field_validator("admins", "allowed_emails", "allowed_domains")
    @classmethod
    def _lower(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v.strip().lower().lstrip("@") for v in values)

    @field_validator("public_paths")
    @classmethod
    def _absolute(cls, paths: tuple[str, ...]) -> tuple[str, ...]:
        for path in paths:
            if not path.startswith("/"):
                raise ValueError("public paths start with '/'")
        return paths

    @field_validator("cookie_secret")
    @classmethod
    def _long_enough(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and len(secret.get_secret_value()) < 32:
            raise ValueError("the cookie secret must be at least 32 characters")
        return secret

    @model_validator(mode="after")
    def _provider_table(self) -> AuthConfig:
        if self.provider == "workos" and self.workos is None:
            raise ValueError("provider = 'workos' needs a [workos] table (client_id, api_key)")
        if self.provider == "oidc" and self.oidc is None:
            raise ValueError("provider = 'oidc' needs an [oidc] table (issuer, client_id)")
        if self.provider != "email_code" and self.cookie_secret is None:
            raise ValueError(f"provider = '{self.provider}' needs cookie_secret (from the environment)")
        if self.session_lifetime < self.idle_timeout:
            raise ValueError("session_lifetime must not be shorter than idle_timeout")
        return self
