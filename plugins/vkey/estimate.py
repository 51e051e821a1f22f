"""Token estimates for the requests whose provider never gave its final count: a stream the client
aborted, a stream the provider cut off, a call whose answer carries no usage (Gemini embeddings).

Counts come from text, at :data:`BYTES_PER_TOKEN` UTF-8 bytes per token. That is OpenAI's published
rule of thumb for English (about four characters a token); counting bytes rather than characters
makes non-Latin scripts, which take more tokens per character, count more as well. An exact
tokenizer was weighed and left out: ``tiktoken`` downloads its encodings on first use (no network on
a proxy host must be assumed), and the one PyPI package that ships them (``bpe-openai``) weighs 40 MB
and takes seconds to load, for a figure that only has to keep budgets honest, not match an invoice.

* Input: the text of the request's JSON (every string value, the model name and binary payloads
  excepted), plus :data:`MEDIA_TOKENS` for each inline image, audio or file.
* Output: the generated text that streamed past (:attr:`UsageReport.text_bytes`).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from .errors import Shape
from .usage import Usage

BYTES_PER_TOKEN = 4
MEDIA_TOKENS = 258  # what Gemini charges per image; OpenAI's low-detail image is 85, a tile 170
_SKIPPED_KEYS = frozenset({"model", "type", "role", "mime_type", "mimeType", "media_type", "detail"})
_BINARY_KEYS = frozenset({"data", "file_data", "b64_json"})

# The calls a provider bills tokens for; other calls (listings, token counting) are never estimated.
_BILLABLE = {
    "openai": re.compile(r"/(chat/completions|responses|completions|embeddings)$"),
    "anthropic": re.compile(r"/messages$"),
    "gemini": re.compile(r":(generateContent|streamGenerateContent|embedContent|batchEmbedContents)$"),
}


def billable(shape: Shape, path: str) -> bool:
    """Whether a POST to ``path`` is a call the provider bills tokens for."""
    pattern = _BILLABLE.get(shape)
    return pattern is not None and pattern.search(path) is not None


def tokens_of(text_bytes: int) -> int:
    """Tokens in ``text_bytes`` bytes of text, rounded up."""
    return -(-text_bytes // BYTES_PER_TOKEN)


def request_tokens(body: bytes | None) -> int:
    """The estimated input tokens of a JSON request body (0 for anything else)."""
    if not body:
        return 0
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 0
    text, media = _walk(parsed, "")
    return tokens_of(text) + media * MEDIA_TOKENS


def _walk(value: Any, key: str) -> tuple[int, int]:
    """(text bytes, media items) inside ``value``, found under ``key``."""
    if isinstance(value, str):
        if key in _BINARY_KEYS or value.startswith("data:"):
            return 0, 1
        return (0, 0) if key in _SKIPPED_KEYS else (len(value.encode()), 0)
    text = media = 0
    if isinstance(value, dict):
        for name, item in value.items():
            t, m = _walk(item, name)
            text, media = text + t, media + m
    elif isinstance(value, list):
        for item in value:
            t, m = _walk(item, key)
            text, media = text + t, media + m
    return text, media


def completed(usage: Usage, streamed_text_bytes: int, body: bytes | None) -> Usage:
    """``usage`` (what the provider said before it stopped) completed with estimates: the input the
    provider reported, else the request's estimate; the output the provider reported or the streamed
    text's estimate, whichever is larger (Anthropic's opening count of 1 is a placeholder)."""
    input_tokens = usage.input_tokens or request_tokens(body)
    output_tokens = max(usage.output_tokens, tokens_of(streamed_text_bytes))
    return usage._replace(input_tokens=input_tokens, output_tokens=output_tokens, estimated=True)
