"""Where provider clients carry their key, and how the virtual key is swapped for the real one.

OpenAI clients send ``Authorization: Bearer``, Anthropic and Composio ``x-api-key``, Google
``x-goog-api-key`` or the ``?key=`` query parameter. The real key goes exactly where the virtual key
was found; every other trace of the virtual key (another header, another query parameter) is removed.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import quote, unquote

from multidict import CIMultiDict, CIMultiDictProxy

KEY_HEADERS = ("x-api-key", "x-goog-api-key")
QUERY_PARAM = "key"

# Never sent to a provider: our own session cookies and the chain of addresses inside our network.
PRIVATE_HEADERS = (
    "cookie",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
)


class ConflictingKeys(Exception):
    """The request carries two different keys: refused rather than guessing which one counts."""


class Presented(NamedTuple):
    """The key a request carries and every place it was found in (a tuple: one per gateway request)."""

    key: str
    in_authorization: bool
    headers: tuple[str, ...]
    in_query: bool


def find_key(headers: CIMultiDictProxy[str], query_string: str) -> Presented | None:
    """The key presented in ``headers`` / the raw ``query_string``; ``None`` when there is none."""
    found: list[str] = []
    in_authorization = False
    auth = headers.get("Authorization")
    if auth is not None:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            found.append(token.strip())
            in_authorization = True
    names = []
    for name in KEY_HEADERS:
        value = headers.get(name)
        if value is not None and value.strip():
            found.append(value.strip())
            names.append(name)
    in_query = False
    if query_string and f"{QUERY_PARAM}=" in query_string:
        for value in _query_values(query_string, QUERY_PARAM):
            if value:
                found.append(value)
                in_query = True
    if not found:
        return None
    if any(value != found[0] for value in found):
        raise ConflictingKeys()
    return Presented(found[0], in_authorization, tuple(names), in_query)


def swap_headers(headers: CIMultiDict[str], presented: Presented, real_key: str) -> None:
    """Put ``real_key`` where the virtual key was and drop anything else that still mentions it."""
    for name in PRIVATE_HEADERS:
        headers.popall(name, None)
    key = presented.key
    for name in [name for name, value in headers.items() if key in value]:
        headers.popall(name, None)
    if presented.in_authorization:
        headers["Authorization"] = f"Bearer {real_key}"
    for name in presented.headers:
        headers[name] = real_key


def swap_query(query_string: str, presented: Presented, real_key: str) -> str:
    """The raw query string with ``key=<virtual>`` replaced by the real key (when that is where it
    was) and any other parameter that mentions the virtual key removed."""
    if not query_string:
        return ""
    kept: list[str] = []
    for part in query_string.split("&"):
        name, _, value = part.partition("=")
        decoded = unquote(value.replace("+", " "))
        if presented.key not in decoded and presented.key not in unquote(name):
            kept.append(part)
        elif presented.in_query and unquote(name) == QUERY_PARAM and decoded == presented.key:
            kept.append(f"{QUERY_PARAM}={quote(real_key, safe='')}")
    return "&".join(kept)


def _query_values(query_string: str, wanted: str) -> list[str]:
    values = []
    for part in query_string.split("&"):
        name, _, value = part.partition("=")
        if unquote(name) == wanted:
            values.append(unquote(value.replace("+", " ")).strip())
    return values
