"""Each sign-in set-up says in the start-up banner who may sign in and where codes go."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from plugins.auth import AuthStage, auth_stage
from proxy_core.testing import make_app, stage

SECRET = "s" * 40


@pytest.mark.parametrize(
    ("options", "banner"),
    [
        ({}, "only existing users may sign in (add one: `shmastra-cloud users add EMAIL --admin`); "),
        ({"admins": ["Boss@Example.com"]}, "sign in as boss@example.com or an existing user; "),
        (
            {"allowed_domains": ["@example.com"], "allowed_emails": ["x@y.org"]},
            "sign in as x@y.org, anyone@example.com or an existing user; ",
        ),
    ],
)
def test_who_may_sign_in(options: dict[str, Any], banner: str, sqlite_url: str, tmp_path: Path) -> None:
    stage_of = _auth(sqlite_url, tmp_path, **options)
    assert stage_of.banner() == banner + "sign-in codes appear in this log"


@pytest.mark.parametrize(
    ("options", "where"),
    [
        (
            {"email_code": {"delivery": "mailbox", "mailbox_dir": "/srv/mail"}},
            "sign-in codes are written to /srv/mail",
        ),
        (
            {"email_code": {"delivery": "smtp", "smtp": {"host": "mail.example.com", "port": 25}}},
            "sign-in codes are emailed through mail.example.com:25",
        ),
        (
            {"provider": "workos", "cookie_secret": SECRET, "workos": {"client_id": "c", "api_key": "k"}},
            "through WorkOS",
        ),
        (
            {
                "provider": "oidc",
                "cookie_secret": SECRET,
                "oidc": {"issuer": "https://id.example.com/", "client_id": "c"},
            },
            "through https://id.example.com",
        ),
    ],
)
def test_where_sign_in_happens(options: dict[str, Any], where: str, sqlite_url: str, tmp_path: Path) -> None:
    assert _auth(sqlite_url, tmp_path, **options).banner().endswith(where)


def _auth(sqlite_url: str, tmp_path: Path, **options: Any) -> AuthStage:
    options.setdefault("cookie_secret", SECRET)
    options.setdefault("data_dir", str(tmp_path))
    app = make_app([stage(AuthStage, **options)], f'[database]\nurl = "{sqlite_url}"\n')
    return auth_stage(app)
