"""The secret behind the cookies and CSRF tokens: from the config, or (for the embedded
``email_code`` default) generated once and kept in the data directory so sessions survive restarts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SECRET_FILE = "auth_cookie_secret"


@dataclass(frozen=True, slots=True)
class Keys:
    """Purpose-bound keys derived from one secret (a leak of one use does not serve another)."""

    cookie: bytes
    """A Fernet key (url-safe base64 of 32 bytes) for the session and flow cookies."""
    csrf: bytes
    codes: bytes

    @classmethod
    def from_secret(cls, secret: str) -> Keys:
        root = hashlib.sha256(secret.encode()).digest()

        def sub(label: bytes) -> bytes:
            return hmac.new(root, label, hashlib.sha256).digest()

        return cls(base64.urlsafe_b64encode(sub(b"cookie")), sub(b"csrf"), sub(b"codes"))


def load_or_create_secret(data_dir: Path) -> str:
    """The secret stored in ``data_dir``, created (mode 0600) if absent. Safe when several workers
    start at once: the first one creates the file, the others read it."""
    path = data_dir / SECRET_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_urlsafe(48) + "\n")
    log.warning(
        "auth: no cookie_secret configured; generated one in %s (mode 0600). Sessions survive restarts "
        "as long as this file does; set cookie_secret from the environment to share it across hosts.",
        path,
    )
    return _read(path)


def existing_secret(data_dir: Path) -> str:
    """The secret stored in ``data_dir`` when there is one, else a throwaway one; writes nothing
    (for ``check``, which builds the stage without serving)."""
    path = data_dir / SECRET_FILE
    return _read(path) if path.is_file() else secrets.token_urlsafe(48)


def _read(path: Path) -> str:
    for _ in range(50):  # another worker may be between creating and writing the file
        secret = path.read_text(encoding="utf-8").strip()
        if secret:
            return secret
        time.sleep(0.01)
    raise OSError(f"{path} is empty; delete it to have a new secret generated")
