"""Random values and the PKCE pair for the sign-in flows."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets


def random_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def pkce_pair() -> tuple[str, str]:
    """``(verifier, S256 challenge)``; the verifier only ever travels in the encrypted flow cookie
    and the back-channel token request, never in a URL."""
    verifier = secrets.token_urlsafe(64)  # 86 characters, within RFC 7636's 43..128
    return verifier, s256(verifier)


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def same(a: str, b: str) -> bool:
    """Constant-time string comparison."""
    return hmac.compare_digest(a.encode(), b.encode())
